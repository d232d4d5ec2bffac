"""The generational loop for language games: train, score, forget, score again, checkpoint.

    for generation in range(G):
        train N iterations                      (training.train_iterations)
        record greedy metrics                   (accuracy, entropy, topsim, posdis, bosdis ...)
        [optional] ease of teaching             (fresh listener vs the frozen greedy speaker)
        apply the strategy's forgetting         (strategies.py; not after the last generation)
        record topsim after forgetting
        write the record, language.json, checkpoint.pt

Resume: the checkpoint is written after the record, and holds the number of records it covers;
records past it (a crash between the two writes) are dropped and redone, so a resumed run writes
exactly the records an uninterrupted one would (CPU, same seed).
"""

from __future__ import annotations

import contextlib
import functools
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from emergent_frl.footprint import check_fits_in_memory
from emergent_frl.games import LanguageGame
from emergent_frl.imitation import Imitation
from emergent_frl.knobs import check_knobs, knob
from emergent_frl.runs import CHECKPOINT_FILE, RunDirectory, describe_load_error, software_versions
from emergent_frl.protocols import ImitatingSender, check_agent
from emergent_frl.teaching import ease_of_teaching
from emergent_frl.trainers import ReferenceTrainer, Trainer
from emergent_frl.strategies import (STRATEGIES, BoundaryResult, IteratedLearning, PartialForgetting, Strategy,
                                     build_strategy)
from emergent_frl.settings_history import saved_game_settings
from emergent_frl.training import (
    ConfigError,
    Interrupted,
    LanguageGameConfig,
    build_game,
    build_optimizers,
    dataclass_from_dict,
    evaluate,
    make_generator,
    train_iterations,
)

MASKS = ("magnitude", "bernoulli")
TIMINGS = ("once_init", "once_trained", "each")
RESETS = ("reinit", "zero", "rewind")
EVALUATIONS_FILE = "evaluations.jsonl"
# Every generation's object -> message table, and the one right after its forgetting (one JSON
# object per line: language.json's fields plus "when"); language.json keeps the last one.
LANGUAGES_FILE = "languages.jsonl"
CHECKPOINT_FORMAT = 1
MAX_ITERATIONS = 2**53
# The argument group of the game scripts' flags (games/cli.py) the knobs below go in.
GENERATIONS = "generations and forgetting"
# The generation knobs: every error text names type and range at once ("must be an integer >= 1").
relearn_knob = functools.partial(knob, combined_message=True, flag_group=GENERATIONS)


class NonFiniteError(RuntimeError):
    """Training produced nan/inf; the message names the generation and iteration."""


@dataclass
class RelearnConfig:
    """How generations are run and what is forgotten between them.

    Defaults: the paper's partial balanced forgetting period (3,000 iterations per generation).
    The `*_keep_fraction`, `mask`, `mask_timing`, `reset_value` and `fresh_optimizers` fields
    configure the `partial` strategy; `imitation_*` and `listener_only_iterations` configure
    `iterated_learning`; `ease_of_teaching*` add a fresh-listener probe after every generation.
    Each field is a `knob` (emergent_frl.knobs), like LanguageGameConfig's.
    """

    strategy: str = relearn_knob("no_reset", kind=str, choices=STRATEGIES,
                                 help="what is forgotten between generations")
    generations: int = relearn_knob(10, minimum=1, shape=True, help="number of generations")
    iterations_per_generation: int = relearn_knob(3000, minimum=1, shape=True,
                                                  help="training batches per generation")
    sender_keep_fraction: float = relearn_knob(
        1.0, kind=float, minimum=0, maximum=1,
        help="partial: fraction of the sender's weights kept (default 1: sender untouched)")
    receiver_keep_fraction: float = relearn_knob(0.1, kind=float, minimum=0, maximum=1,
                                                 help="partial: fraction of the receiver's weights kept")
    mask: str = relearn_knob("magnitude", kind=str, choices=MASKS, help="partial: which entries are kept")
    mask_timing: str = relearn_knob(
        "once_init", kind=str, choices=TIMINGS,
        help="partial: mask from the initial weights once, from the trained weights once, or anew each "
             "generation")
    reset_value: str = relearn_knob(
        "reinit", kind=str, choices=RESETS,
        help="partial: forgotten entries become a fresh draw, zero, or their initial value")
    fresh_optimizers: bool = relearn_knob(False, kind=bool,
                                          help="partial: new Adam state after forgetting (default: keep it)")
    imitation_iterations: int = relearn_knob(1200, minimum=0,
                                             help="iterated_learning: imitation steps of each new speaker")
    listener_only_iterations: int = relearn_knob(
        200, minimum=0, help="iterated_learning: listener-only steps opening each generation")
    ease_of_teaching: bool = relearn_knob(
        False, kind=bool, help="after each generation, train a fresh listener against the frozen speaker "
                               "and record its learning curve")
    ease_of_teaching_iterations: int = relearn_knob(1000, minimum=1, help="iterations of that fresh listener")
    ease_of_teaching_eval_every: int = relearn_knob(
        100, minimum=1, help="greedy evaluation of that fresh listener every N of its iterations (plus step 0 "
                             "and the log-spaced steps 1, 2, 5, 10, ... below N)")
    ease_of_teaching_protocol: str = relearn_knob(
        "single", kind=str, choices=("single", "li_bowling"),
        help="single: one fresh listener; li_bowling: Li & Bowling's, several fresh listeners averaged")
    ease_of_teaching_listeners: int = relearn_knob(
        30, minimum=1, help="li_bowling: fresh listeners, each its own seed stream, whose curves are averaged "
                            "(Li & Bowling: 30)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RelearnConfig":
        return dataclass_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "RelearnConfig":
        """Raise ConfigError naming the first bad field: each field against its knob, then the
        rules that tie fields together."""
        check_knobs(self)
        if self.generations * self.iterations_per_generation > MAX_ITERATIONS:
            raise ConfigError("iterations_per_generation", self.iterations_per_generation,
                              f"generations x iterations per generation must be at most 2**53 "
                              f"({MAX_ITERATIONS:,}: iteration numbers stay exact in every reader of the records)")
        if self.strategy == "iterated_learning" and self.listener_only_iterations > self.iterations_per_generation:
            raise ConfigError("listener_only_iterations", self.listener_only_iterations,
                              f"must be <= iterations_per_generation ({self.iterations_per_generation})")
        if self.ease_of_teaching and self.ease_of_teaching_eval_every > self.ease_of_teaching_iterations:
            raise ConfigError("ease_of_teaching_eval_every", self.ease_of_teaching_eval_every,
                              f"must be <= ease_of_teaching_iterations ({self.ease_of_teaching_iterations}): "
                              "the probe's curve needs one evaluation at least")
        return self


def split_config(values: dict[str, Any]) -> tuple[LanguageGameConfig, RelearnConfig]:
    """A flat dict (config.json, a YAML preset, a sweep entry) -> (game config, relearn config)."""
    game_keys = {f.name for f in dataclasses.fields(LanguageGameConfig)}
    relearn_keys = {f.name for f in dataclasses.fields(RelearnConfig)}
    unknown = sorted(set(values) - game_keys - relearn_keys)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(game_keys | relearn_keys)}")
    game = LanguageGameConfig.from_dict({k: v for k, v in values.items() if k in game_keys})
    relearn = RelearnConfig.from_dict({k: v for k, v in values.items() if k in relearn_keys})
    return game, relearn


def flat_config(game: LanguageGameConfig, relearn: RelearnConfig) -> dict[str, Any]:
    return {**game.to_dict(), **relearn.to_dict()}


@contextlib.contextmanager
def interruption_at(where: Callable[[], tuple[int, int]], run_dir: RunDirectory | None):
    """Turn Ctrl-C inside the block into `Interrupted` saying the generation and iteration reached
    (`where()`, unless training already said a later iteration) and the run directory to resume."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        generation, iteration = where()
        if isinstance(interrupt, Interrupted):
            iteration = max(iteration, interrupt.iteration or 0)
            if interrupt.generation is not None:
                raise
        path = None if run_dir is None else str(run_dir.path)
        raise Interrupted(generation, iteration, path) from None


def _check_finite(game: LanguageGame, stats: dict[str, Any], generation: int, iteration: int) -> None:
    bad_params = [n for n, p in game.named_parameters() if not torch.isfinite(p).all()]
    loss = stats.get("train_loss")
    if bad_params or (loss is not None and not math.isfinite(loss)):
        what = f"parameters {bad_params[:5]}" if bad_params else f"train_loss={loss}"
        raise NonFiniteError(f"non-finite values in generation {generation} by iteration {iteration}: "
                             f"{what}; records up to the previous generation are kept")


class LanguageRun:
    """One seed of one strategy: builds everything from the configs, runs, resumes."""

    def __init__(self, game_config: LanguageGameConfig, relearn: RelearnConfig,
                 run_dir: RunDirectory | None = None, *, progress: bool = True,
                 on_record: Callable[[dict[str, Any]], None] | None = None,
                 strategy: Strategy | None = None, trainer: Trainer | None = None,
                 on_evaluation: Callable[[dict[str, Any]], None] | None = None):
        """`strategy`: a strategy object of your own (any `Strategy`: your operators per agent, your
        boundary) instead of the one `relearn.strategy` names; records and config.json name it by
        its `name`. The run's generations, warm-up and records are otherwise as for a named one.
        `trainer`: how its iterations are trained (`emergent_frl.trainers`; default: the reference
        loop, this run alone)."""
        self.config = game_config.validate()
        self.relearn = relearn.validate()
        self.run_dir = run_dir
        self.progress = progress
        self.on_record = on_record
        self.on_evaluation = on_evaluation  # called with every evaluation record once it is written
        self.trainer = trainer if trainer is not None else ReferenceTrainer(progress=progress)
        self.game = build_game(self.config)
        self.strategy = strategy if strategy is not None else build_strategy(
            relearn.strategy, seed=self.config.seed,
            sender=PartialForgetting(relearn.sender_keep_fraction, relearn.mask, relearn.mask_timing,
                                     relearn.reset_value),
            receiver=PartialForgetting(relearn.receiver_keep_fraction, relearn.mask, relearn.mask_timing,
                                       relearn.reset_value),
            imitation_iterations=relearn.imitation_iterations,
            listener_only_iterations=relearn.listener_only_iterations,
            imitation_batch_size=self.config.batch_size, imitation_lr=self.config.lr_sender,
            fresh_optimizers=relearn.fresh_optimizers,
        )
        if isinstance(self.strategy, IteratedLearning) and self.config.agents is not None:
            try:  # imitation teaches the sender its predecessor's lexicon
                check_agent(self.game.sender, ImitatingSender, "sender")
            except ValueError as error:
                raise ConfigError("agents", self.config.agents, f"{error} (iterated_learning)") from None
        self.strategy.prepare(self.game)
        self.optimizers = build_optimizers(self.game, self.config)
        self.generator = make_generator(self.config)
        self.generation = 0
        self.iteration = 0
        self.records: list[dict[str, Any]] = []
        self.n_evaluations = 0
        self.boundary_pending = False  # the last finished generation was the final one: no forgetting after it
        self._finishing: tuple[dict[str, Any], BoundaryResult | None, float] | None = None  # begin_finishing's

    # -- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "generation": self.generation,
            "iteration": self.iteration,
            "n_records": len(self.records),
            "n_evaluations": self.n_evaluations,
            # Copies: the game's tensors may be views into a batch's stacked tensors, and saving a
            # view would write the whole stack into this run's checkpoint.
            "game": {k: v.clone() for k, v in self.game.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "strategy": self.strategy.state_dict(),
            "boundary_pending": self.boundary_pending,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; one that does not fit this run (another shape, missing entries) is a
        ValueError, raised before any file of the run directory is touched."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}; this version reads {CHECKPOINT_FORMAT}")
        try:
            self.game.load_state_dict(state["game"])
            self.optimizers = build_optimizers(self.game, self.config)
            for name, optimizer in self.optimizers.items():
                optimizer.load_state_dict(state["optimizers"][name])
            self.generator.set_state(state["generator"])
            self.strategy.load_state_dict(state["strategy"])
            self.generation = int(state["generation"])
            self.iteration = int(state["iteration"])
            self.n_evaluations = int(state["n_evaluations"])
        except (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError) as error:
            where = CHECKPOINT_FILE if self.run_dir is None else self.run_dir.path / CHECKPOINT_FILE
            raise ValueError(f"{where}: does not fit this run's settings ({describe_load_error(error)})") from None
        self.boundary_pending = bool(state.get("boundary_pending", False))
        if self.run_dir is not None:
            self.run_dir.truncate_records(int(state["n_records"]))
            self.run_dir.truncate_records(self.n_evaluations, EVALUATIONS_FILE)
            self.records = self.run_dir.records()
            # runs made before the file existed hold fewer lines: theirs stay as they are
            self.run_dir.truncate_records(self._language_lines(), LANGUAGES_FILE, fewer_ok=True)

    def resume(self) -> None:
        """Continue from the run directory's checkpoint (the configs must match the saved ones)."""
        if self.run_dir is None:
            raise ValueError("resume needs a run directory")
        saved = self.run_dir.read_config()
        saved = None if saved is None else saved_game_settings(saved)
        mine = {**flat_config(self.config, self.relearn), "strategy": self.strategy.name}
        if saved is not None:
            differing = sorted(k for k in mine if k in saved and saved[k] != mine[k]
                               and k != "generations" and k != "device")
            if differing:
                raise ValueError(f"--resume: the run in {self.run_dir.path} was made with other settings "
                                 f"({', '.join(f'{k}={saved[k]!r}' for k in differing)})")
        state = self.run_dir.load_checkpoint(map_location=self.game.device)
        if state is not None:
            done = state.get("generation")
            if isinstance(done, int) and done > self.relearn.generations:
                raise ConfigError("generations", self.relearn.generations,
                                  f"{self.run_dir.path} already holds {done} generations; "
                                  f"give at least {done} (more extends the run)")
            self.load_state_dict(state)
        else:
            self.run_dir.truncate_records(0)
            self.run_dir.truncate_records(0, EVALUATIONS_FILE)
            self.run_dir.truncate_records(0, LANGUAGES_FILE)

    # -- the loop ---------------------------------------------------------------------------------
    def record_evaluation(self, record: dict[str, Any]) -> None:
        """Record one evaluation (after checking that training is still finite, so a divergence is
        named at the evaluation where it is first seen); extension point for engines that train a
        run's iterations elsewhere."""
        _check_finite(self.game, record, self.generation, int(record.get("iteration", self.iteration)))
        self.n_evaluations += 1
        if self.run_dir is not None:
            self.run_dir.append_record({"generation": self.generation, **record}, EVALUATIONS_FILE)
        if self.on_evaluation is not None:
            self.on_evaluation({"generation": self.generation, **record})

    def phases(self) -> list[tuple[int, str | None]]:
        """How a generation's iterations are trained: (iterations, only this agent's optimizer or
        None for all). Iterated learning opens every generation with listener-only steps."""
        warmup = min(self.strategy.listener_only_iterations, self.relearn.iterations_per_generation)
        return [(n, only) for n, only in ((warmup, "receiver"), (self.relearn.iterations_per_generation - warmup, None))
                if n > 0]

    def begin_finishing(self, stats: dict[str, Any], training_seconds: float = 0.0) -> list[Imitation]:
        """The generation's iterations are trained (`stats`: the trainer's result for its last
        phase): score it and begin forgetting (unless it is the last). Returns the imitations
        the boundary leaves: carry them out (alone, or a batch's together: `Trainer.imitate`),
        then `end_finishing` completes the boundary and writes the generation (record, language,
        checkpoint)."""
        started = time.perf_counter()
        g = self.generation
        _check_finite(self.game, stats, g, self.iteration)
        metrics = evaluate(self.game)
        messages = metrics.pop("messages")
        record: dict[str, Any] = {
            "generation": g,
            "iteration": self.iteration,
            "strategy": self.strategy.name,
            "seed": self.config.seed,
            **metrics,
            **{k: v for k, v in stats.items() if k.startswith("train_")},
        }
        if self.relearn.ease_of_teaching:
            record.update(ease_of_teaching(self.game, self.config, self.relearn,
                                           seed=self.config.seed * 100_003 + g))
        self.boundary_pending = g == self.relearn.generations - 1
        self._languages = [{**self._language_table(messages), "when": "before_forgetting"}]
        boundary = None
        if not self.boundary_pending:
            boundary = self.strategy.begin_forgetting(self.game, self.optimizers, self.generator)
        else:
            record["topsim_after_forgetting"] = None
            record["accuracy_after_forgetting"] = None
        self._finishing = (record, boundary, started - training_seconds)
        return [] if boundary is None else boundary.imitations

    def end_finishing(self) -> None:
        """The rest of `begin_finishing`'s generation, once the boundary's imitations are done."""
        record, boundary, started = self._finishing
        self._finishing = None
        if boundary is not None:
            self._end_forgetting(record, boundary)
        record["seconds"] = time.perf_counter() - started
        self._write_generation(record)

    def _forget_into(self, record: dict[str, Any]) -> None:
        """Apply the strategy's boundary and add what it did, and the scores right after, to `record`."""
        boundary = self.strategy.begin_forgetting(self.game, self.optimizers, self.generator)
        for imitation in boundary.imitations:
            imitation.run()
        self._end_forgetting(record, boundary)

    def _end_forgetting(self, record: dict[str, Any], boundary: BoundaryResult) -> None:
        """After the strategy's boundary and its imitations: fresh optimizers if it asks, and what
        it did and the scores right after, into `record`."""
        for imitation in boundary.imitations:
            boundary.fields.update(imitation.fields)
        if boundary.fresh_optimizers:
            self.optimizers = build_optimizers(self.game, self.config)
        if type(self.strategy) is not Strategy and self.game.baseline is not None:
            # The running mean of the loss describes the agents before forgetting; it restarts with
            # them (as EGG interop's reset_baselines does), instead of biasing the next advantages.
            with torch.no_grad():
                self.game.baseline.mean.zero_()
                self.game.baseline.count.zero_()
        after = evaluate(self.game)
        self._languages.append({**self._language_table(after.pop("messages")), "generation": record["generation"],
                                "when": "after_forgetting"})
        record.update(boundary.fields)
        record["topsim_after_forgetting"] = after["topsim"]
        record["accuracy_after_forgetting"] = after["accuracy"]
        record.update({f"{k}_after_forgetting": v for k, v in after.items() if k.startswith("probe_")})

    def extend_finished_run(self) -> None:
        """A finished run resumed with more generations: its last generation was not followed by
        forgetting; apply that boundary now and rewrite the last record, as an uninterrupted run
        with the larger --generations would have written it (the checkpoint holds the same RNG state).
        Extension point for engines that train a run's iterations elsewhere."""
        record = dict(self.records[-1])
        self._languages = []
        self._forget_into(record)
        self.boundary_pending = False
        self.records[-1] = record
        if self.run_dir is not None:
            self.run_dir.truncate_records(len(self.records) - 1)
            self.run_dir.append_record(record)
            for table in self._languages:
                self.run_dir.append_record(table, LANGUAGES_FILE)
            self.run_dir.save_checkpoint(self.state_dict())

    def _language_lines(self) -> int:
        """Lines of languages.jsonl the checkpoint covers: each generation's table, and the one
        after its forgetting for every generation followed by a boundary."""
        return 2 * self.generation - int(self.boundary_pending)

    def _language_table(self, messages: torch.Tensor) -> dict[str, Any]:
        attributes = self.game.space.objects().tolist()
        return {
            "generation": self.generation,
            "n_values": list(self.game.space.n_values),
            "vocab_size": self.config.vocab_size,
            "eos": self.config.eos,
            "objects": attributes,
            "messages": messages.tolist(),
        }

    def run(self, until: int | None = None) -> list[dict[str, Any]]:
        """Run the remaining generations (or stop after generation `until` - 1, as an interruption
        would) on this run's trainer; every finished generation is on disk before the next starts."""
        with interruption_at(lambda: (self.generation, self.iteration), self.run_dir):
            failed = run_generations([self], self.trainer, until)
        if failed:
            raise failed[0]
        return self.records

    def _write_generation(self, record: dict[str, Any]) -> None:
        """Keep and write one finished generation (record, language, checkpoint)."""
        self.records.append(record)
        self.generation += 1
        if self.run_dir is not None:
            self.run_dir.append_record(record)
            for table in self._languages:
                self.run_dir.append_record(table, LANGUAGES_FILE)
            self.run_dir.write_json("language.json", {k: v for k, v in self._languages[0].items() if k != "when"})
            self.run_dir.save_checkpoint(self.state_dict())
        if self.on_record is not None:
            self.on_record(record)


def run_generations(runs: Sequence[LanguageRun], trainer: Trainer, until: int | None = None
                    ) -> dict[int, NonFiniteError]:
    """The generational loop, for one run or many:

        for each generation: trainer trains the runs' iterations (one run or many, one interface)
                             each run scores, forgets, records and checkpoints itself

    Runs that stand at different generations (a resumed batch whose runs were interrupted at
    different points) are brought level first: the furthest behind train as a group of their own.
    A run that diverges stops there (its records up to the previous generation stay) and the
    others go on; returns those runs' errors by position in `runs`.
    """
    runs = list(runs)
    stops = [r.relearn.generations if until is None else min(until, r.relearn.generations) for r in runs]
    failed: dict[int, NonFiniteError] = {}
    # One progress bar for the whole run (every generation's iterations, with an ETA); a batch's
    # runs train in step, so its length is one run's remaining iterations.
    remaining = max((stop - run.generation) * run.relearn.iterations_per_generation
                    for run, stop in zip(runs, stops)) if runs else 0
    label = f"{runs[0].game.kind}" + (f" x{len(runs)}" if len(runs) > 1 else "") if runs else ""
    show = bool(runs) and getattr(trainer, "progress", True) and (len(runs) > 1 or runs[0].progress)
    bar = tqdm(total=max(remaining, 0), unit="it", desc=label, disable=None if show else True, dynamic_ncols=True)
    trainer.bar = bar
    try:
        return _generations(runs, trainer, stops, failed, bar)
    finally:
        bar.close()
        trainer.bar = None


def _generations(runs: list[LanguageRun], trainer: Trainer, stops: list[int], failed: dict[int, NonFiniteError],
                 bar) -> dict[int, NonFiniteError]:
    """The body of `run_generations`."""
    for i, run in enumerate(runs):
        if run.boundary_pending and run.generation < stops[i]:
            run.extend_finished_run()  # a finished run extended: its last boundary comes first
    trainer.boundary_done()
    while True:
        live = [i for i, run in enumerate(runs) if i not in failed and run.generation < stops[i]]
        if not live:
            return failed
        generation = min(runs[i].generation for i in live)
        bar.set_postfix_str(f"generation {generation + 1}/{max(stops)}")
        group = [i for i in live if runs[i].generation == generation]
        phases = runs[group[0]].phases()
        group = [i for i in group if runs[i].phases() == phases]
        started = time.perf_counter()
        stats: list[dict[str, Any]] = [{} for _ in group]
        for n, only in phases:
            stats, diverged = trainer.train([runs[i] for i in group], n, only)
            failed.update({group[j]: error for j, error in diverged.items()})
        seconds = time.perf_counter() - started
        finishing = []  # each run scores and forgets; the imitations its boundary leaves are taught together
        imitations = []
        for j, i in enumerate(group):
            if i in failed:
                continue
            try:
                imitations += runs[i].begin_finishing(stats[j], seconds)
            except NonFiniteError as error:
                if len(runs) == 1:
                    raise
                failed[i] = error
                continue
            finishing.append(i)
        if hasattr(trainer, "imitate"):
            trainer.imitate(imitations)
        else:  # a trainer of your own written before `Trainer.imitate`: each run's alone
            for imitation in imitations:
                imitation.run()
        for i in finishing:
            runs[i].end_finishing()
        trainer.boundary_done()


def run_language(values: dict[str, Any], out: str | None = None, *, resume: bool = False,
                 progress: bool = True, on_record=None, until: int | None = None, on_evaluation=None,
                 launch: dict[str, Any] | None = None, strategy: Strategy | None = None) -> list[dict[str, Any]]:
    """Validate a flat config, run every generation, return the records (the library entry point).

    `launch`: extra keys for config.json that say how the run was started (e.g. the command line);
    on resume the saved ones are kept, so config.json keeps describing the original launch.
    `strategy`: a strategy object of your own (see `LanguageRun`); config.json and the records
    name it (pass the same one again to resume).
    """
    game_config, relearn = split_config(values)
    game_config.validate()
    relearn.validate()
    check_fits_in_memory(game_config)
    run_dir = RunDirectory(out, resume=resume) if out is not None else None
    try:
        run = LanguageRun(game_config, relearn, run_dir, progress=progress, on_record=on_record, strategy=strategy,
                          on_evaluation=on_evaluation)
        if run_dir is not None:
            if resume:
                run.resume()
            saved = (run_dir.read_config() or {}) if resume else {}
            total = {"iterations": relearn.generations * relearn.iterations_per_generation}
            named = {} if strategy is None else {"strategy": strategy.name}
            run_dir.write_config({"versions": software_versions(), **(launch or {}), **saved,
                                  **flat_config(game_config, relearn), **total, **named})
        return run.run(until)
    finally:
        if run_dir is not None:
            run_dir.close()
