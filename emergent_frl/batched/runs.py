"""S `LanguageRun`s of one shape trained as one batch: `BatchedLanguageRuns`, `run_language_batched`.

Each run ("member") is a `LanguageRun` that keeps its configs, strategy, generator, records and run
directory; the batch trains them all and hands each member its generation's stats, and at every
evaluation and generation boundary the member's own code evaluates, records, forgets and
checkpoints on its own modules (copied from and back into the stack).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from emergent_frl.batched.adam import StackedAdam
from emergent_frl.batched.compiling import compile_mode
from emergent_frl.batched.game import BatchedGame
from emergent_frl.batched.memory import keep_freed_memory
from emergent_frl.relearn import (
    LanguageRun,
    NonFiniteError,
    RelearnConfig,
    flat_config,
    interruption_at,
    split_config,
)
from emergent_frl.footprint import check_fits_in_memory
from emergent_frl.knobs import shape_fields
from emergent_frl.runs import CONFIG_FILE, RunDirectory
from emergent_frl.training import Interrupted, LanguageGameConfig, evaluate

# Fields that must agree between the runs of one batch (they fix tensor shapes or the loop): the
# knobs declared with shape=True.
SHAPE_FIELDS = shape_fields(LanguageGameConfig)
RELEARN_SHAPE_FIELDS = shape_fields(RelearnConfig)
# How a run trains. "batched": this package (stacked parameters, fused Adam, the loss under
# torch.compile where it works), the fast one; "reference": emergent_frl.relearn.LanguageRun (the
# agents' own modules and torch optimizers), what run_language runs. The two follow a seed in
# distribution, not bit for bit; run directories made before the choice existed are reference runs.
ENGINES = ("batched", "reference")
LEGACY_ENGINE = "reference"


def recorded_engine(saved: dict[str, Any], compile: bool | str = "auto",
                    source: str = CONFIG_FILE) -> tuple[str, bool | str]:
    """(engine, compile setting) a started run was made with, from its config.json `saved`, so
    it resumes as it began; `compile` where none is recorded. Runs that record no engine were made
    before the choice existed: reference runs."""
    engine, compiled = saved.get("engine", LEGACY_ENGINE), saved.get("compile", compile)
    if engine not in ENGINES:
        raise ValueError(f"{source}: engine {str(engine)[:40]!r} is not one of {list(ENGINES)}; "
                         "the file was edited or comes from another program")
    if compiled not in (True, False, "auto"):
        raise ValueError(f"{source}: compile {str(compiled)[:40]!r} is not one of [true, false, 'auto']")
    return engine, compiled
STAT_NAMES = ("train_accuracy", "train_loss", "train_sender_entropy", "train_receiver_entropy")
MAX_SEEDS = 4096


def listener_only_warmup(relearn: RelearnConfig) -> int:
    """Iterations at the start of every generation that update only the listener (iterated
    learning's warm-up; 0 for every other strategy)."""
    if relearn.strategy != "iterated_learning":
        return 0
    return min(relearn.listener_only_iterations, relearn.iterations_per_generation)


def batch_key(values: dict[str, Any]) -> tuple:
    """Runs with equal keys can share one batch: same shapes, generation length and listener-only
    warm-up (every strategy batches)."""
    game, relearn = split_config(values)
    g, r = game.to_dict(), relearn.to_dict()
    g["n_values"] = game.space().n_values  # 3 and [3, 3] are one shape
    return (tuple(g[k] for k in SHAPE_FIELDS) + tuple(r[k] for k in RELEARN_SHAPE_FIELDS)
            + (listener_only_warmup(relearn),))


def parse_seeds(text: str) -> list[int]:
    """'0-15' -> [0..15]; '0,3,7' -> [0, 3, 7]; '0-3,8' -> [0, 1, 2, 3, 8] (for --seeds)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(f"--seeds {text}: expected integers, ranges like 0-15, or a comma list") from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds {text}: {part!r} is not a range of seeds >= 0")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ValueError(f"--seeds {text}: at most {MAX_SEEDS} seeds in one process")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"--seeds {text}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text}: a seed is given twice")
    return seeds


class _TrainingStats:
    """Per-run sums of per-batch means [S, 4], on the device: no host sync until `read()`."""

    def __init__(self, runs: int, device: torch.device):
        self.sums = torch.zeros(runs, len(STAT_NAMES), device=device)
        self.count = 0

    def add(self, stats: torch.Tensor) -> None:
        self.sums += stats
        self.count += 1

    def read(self) -> list[dict[str, float]]:
        values = (self.sums / max(self.count, 1)).tolist()
        self.sums.zero_()
        self.count = 0
        return [dict(zip(STAT_NAMES, row)) for row in values]


class _Member(LanguageRun):
    """One run of a batch: a `LanguageRun` whose training is done by the batch. When the batch
    hands it a generation's stats (`hand_over`), `train` returns them (and the record's "seconds"
    include the batch's training time); otherwise it trains alone, as usual."""

    _pending: tuple[dict[str, Any], ...] = ()
    _pending_seconds = 0.0

    def hand_over(self, stats: Sequence[dict[str, Any]], seconds: float) -> None:
        """The batch's training of this run's next generation, one stats dict per `train` call the
        generation makes (the listener-only warm-up, then the rest), and the batch's wall time."""
        self._pending, self._pending_seconds = tuple(stats), seconds

    def train(self, n: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        if not self._pending or n == 0:
            return super().train(n, optimizers)
        stats, self._pending = self._pending[0], self._pending[1:]
        if stats["iterations"] != n:
            raise RuntimeError(f"batched training ran {stats['iterations']} iterations, the run expected {n}")
        self.iteration += n
        return stats

    def run_generation(self) -> dict[str, Any]:
        record = super().run_generation()
        record["seconds"] += self._pending_seconds
        self._pending_seconds = 0.0
        return record


class BatchedLanguageRuns:
    """S language runs of one shape (seeds, strategies, learning rates may differ), trained together.

    Every run writes the run directory, records and checkpoints `LanguageRun` would (its own code
    does it); `run()` returns each run's records. Runs whose training diverges (nan/inf) stop
    there, as a single run would; the others go on, and `run()` then raises NonFiniteError naming
    the stopped runs.

    resume: continue every run from its directory's checkpoint (runs left at different
    generations are first brought level, batched too). compile: see `BatchedGame`. tune_malloc:
    call `keep_freed_memory()` (CPU only).
    """

    def __init__(
        self,
        game_configs: Sequence[LanguageGameConfig],
        relearns: Sequence[RelearnConfig],
        run_dirs: Sequence[RunDirectory | None] | None = None,
        *,
        resume: bool = False,
        progress: bool = True,
        on_record: Callable[[int, dict[str, Any]], None] | None = None,
        compile: bool | str = False,
        tune_malloc: bool = True,
    ):
        if len(game_configs) != len(relearns) or not game_configs:
            raise ValueError("BatchedLanguageRuns: give one relearn config per game config (at least one)")
        run_dirs = [None] * len(game_configs) if run_dirs is None else list(run_dirs)
        if len(run_dirs) != len(game_configs):
            raise ValueError("BatchedLanguageRuns: give one run directory (or None) per run")
        keys = [batch_key(flat_config(g, r)) for g, r in zip(game_configs, relearns)]
        for i, key in enumerate(keys):
            if key != keys[0]:
                fields = SHAPE_FIELDS + RELEARN_SHAPE_FIELDS + ("listener-only warm-up",)
                differing = [f for f, a, b in zip(fields, key, keys[0]) if a != b]
                raise ValueError(f"BatchedLanguageRuns: run {i} differs from run 0 in {differing}; "
                                 "only runs of one shape can share a batch")
        self.progress = progress
        self.on_record = on_record
        self.members = [
            _Member(g, r, d, progress=False,
                    on_record=None if on_record is None else (lambda rec, i=i: on_record(i, rec)))
            for i, (g, r, d) in enumerate(zip(game_configs, relearns, run_dirs))
        ]
        self.failed: dict[int, NonFiniteError] = {}
        if resume:
            for member in self.members:
                member.resume()
            self._bring_level(compile)
        self._stack(compile, tune_malloc)

    @classmethod
    def _of(cls, members: Sequence[_Member], *, progress: bool, compile: bool | str) -> "BatchedLanguageRuns":
        """A batch of runs whose members exist already (the laggards of a resumed batch)."""
        runs = cls.__new__(cls)
        runs.progress, runs.on_record, runs.members, runs.failed = progress, None, list(members), {}
        runs._stack(compile, tune_malloc=False)
        return runs

    def _stack(self, compile: bool | str, tune_malloc: bool) -> None:
        """Stack the members' modules and optimizer states into one game and one Adam."""
        self.relearn = self.members[0].relearn
        if tune_malloc and self.members[0].game.device.type == "cpu":
            keep_freed_memory()
        self.game = BatchedGame([m.game for m in self.members], compile=compile)
        lrs = {slot.name: [getattr(m.config, f"lr_{slot.name.split('.')[0]}") for m in self.members]
               for slot in self.game.slots}
        self.optimizer = StackedAdam(self.game.leaves, self.game.slots, lrs)
        self._names = [{id(p): n for n, p in m.game.named_parameters()} for m in self.members]
        for i in range(len(self.members)):
            self._load(i)

    def _bring_level(self, compile: bool | str) -> None:
        """Runs interrupted at different generations (a sweep's batch killed while its runs wrote
        their checkpoints): the furthest behind catch up to the next ones as a batch of their own,
        on this engine, until all stand at one generation. A run that diverges meanwhile stops."""
        while True:
            live = [i for i in range(len(self.members)) if i not in self.failed]
            generations = sorted({self.members[i].generation for i in live})
            if len(generations) < 2:
                return
            behind = [i for i in live if self.members[i].generation == generations[0]]
            laggards = BatchedLanguageRuns._of([self.members[i] for i in behind], progress=self.progress,
                                               compile=compile)
            try:
                laggards.run(until=generations[1])
            except NonFiniteError:
                self.failed.update({behind[j]: error for j, error in laggards.failed.items()})

    @property
    def n_runs(self) -> int:
        return len(self.members)

    @property
    def generators(self) -> list[torch.Generator]:
        return [m.generator for m in self.members]

    # -- moving state between the stack and the members --------------------------------------------
    def _store(self, run: int) -> None:
        """Stack -> member `run`: weights, baseline and optimizer state (for its own code)."""
        member = self.members[run]
        self.game.store(run, member.game)
        for optimizer in member.optimizers.values():
            self.optimizer.export_run(run, optimizer, self._names[run])

    def _load(self, run: int) -> None:
        """Member `run` -> stack, after its own code changed it (forgetting, fresh optimizers, resume)."""
        member = self.members[run]
        self.game.load(run, member.game)
        for optimizer in member.optimizers.values():
            self.optimizer.import_run(run, optimizer, self._names[run])

    # -- training -----------------------------------------------------------------------------------
    def train_step(self, only: str | None = None) -> torch.Tensor:
        """One iteration of every run; returns the per-run stats [S, 4] (on the device, no sync).
        only="receiver": step only the listener's Adam, as a single run passing only its optimizer."""
        batch = self.game.sample(self.generators)
        loss, stats = self.game.losses(batch)
        leaves = self.game.leaves
        # A weight that met only zero inputs (e.g. max_len 1) gets a zero gradient, as in a single run.
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True, materialize_grads=True)
        self.optimizer.step(dict(zip(leaves, grads)), only=only)
        return stats

    def train(self, n_iterations: int, *, eval_every: int | None = None,
              only: str | None = None) -> list[dict[str, Any]]:
        """Train every run `n_iterations` iterations (as `train_iterations` trains one; `only`: see
        `train_step`): every
        `eval_every` iterations each live run is evaluated by `evaluate` on its own modules and the
        record goes to its member's `record_evaluation` (evaluations.jsonl). Returns per run {"iterations",
        train_* since the last evaluation, "evaluations"}."""
        stats = _TrainingStats(self.n_runs, self.game.device)
        offsets = [m.iteration for m in self.members]
        evaluations: list[list[dict[str, Any]]] = [[] for _ in self.members]
        last = stats.read()
        bar = tqdm(total=n_iterations, disable=None if self.progress else True,
                   desc=f"{self.game.template.kind} x{self.n_runs}", leave=False)
        done = 0
        try:
            for step in range(1, n_iterations + 1):
                stats.add(self.train_step(only))
                done = step
                bar.update(1)
                if eval_every and step % eval_every == 0:
                    last = stats.read()
                    for i, member in enumerate(self.members):
                        if i not in self.failed:
                            self._evaluate_member(i, {"iteration": offsets[i] + step, **last[i]}, evaluations[i])
        except KeyboardInterrupt:
            bar.close()
            raise Interrupted(None, offsets[0] + done) from None
        bar.close()
        if stats.count:
            last = stats.read()
        return [{"iterations": n_iterations, **last[i], "evaluations": evaluations[i]}
                for i in range(self.n_runs)]

    def _evaluate_member(self, i: int, record: dict[str, Any], evaluations: list[dict[str, Any]]) -> None:
        """Run i's greedy evaluation on its own modules, recorded by its own code; a run found
        diverged there stops (its records up to the previous generation stay) and the others go on."""
        member = self.members[i]
        self.game.store(i, member.game)
        metrics = evaluate(member.game)
        metrics.pop("messages")
        record.update(metrics)
        try:
            member.record_evaluation(record)
        except NonFiniteError as error:
            self.failed[i] = error
            return
        evaluations.append(record)

    def run(self, until: int | None = None) -> list[list[dict[str, Any]]]:
        """Run the remaining generations of every run (or stop after generation `until` - 1)."""
        alone = self.members[0].run_dir if self.n_runs == 1 else None
        with interruption_at(lambda: (min(m.generation for m in self.members), self.members[0].iteration), alone):
            return self._run(until)

    def _run(self, until: int | None) -> list[list[dict[str, Any]]]:
        stop = self.relearn.generations if until is None else min(until, self.relearn.generations)
        for i, member in enumerate(self.members):
            if member.boundary_pending and member.generation < stop:
                # A finished run extended with more generations: its last boundary comes first.
                self._store(i)
                member.extend_finished_run()
                self._load(i)
        # as LanguageRun.run_generation splits a generation; one value per batch (batch_key)
        warmup = min(self.members[0].strategy.listener_only_iterations, self.relearn.iterations_per_generation)
        phases = [(n, only) for n, only in ((warmup, "receiver"), (self.relearn.iterations_per_generation - warmup, None))
                  if n > 0]
        while any(m.generation < stop for i, m in enumerate(self.members) if i not in self.failed):
            started = time.perf_counter()
            results = [self.train(n, eval_every=self.members[0].config.eval_every or None, only=only)
                       for n, only in phases]
            seconds = time.perf_counter() - started
            for i, member in enumerate(self.members):
                if i in self.failed:
                    continue  # diverged now or earlier: its records up to the previous generation stay
                self._store(i)
                member.hand_over([phase[i] for phase in results], seconds)
                try:
                    member.run(until=member.generation + 1)
                except NonFiniteError as error:
                    self.failed[i] = error  # its records up to the previous generation are kept
                self._load(i)
        if self.failed:
            if self.n_runs == 1:
                raise self.failed[0]
            raise NonFiniteError("; ".join(f"run {i} (seed {self.members[i].config.seed}): {e}"
                                           for i, e in sorted(self.failed.items())))
        return [m.records for m in self.members]


def run_language_batched(
    values_list: Sequence[dict[str, Any]],
    outs: Sequence[str | None] | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_record: Callable[[int, dict[str, Any]], None] | None = None,
    until: int | None = None,
    launch: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    max_batch: int | None = None,
    compile: bool | str = False,
) -> list[list[dict[str, Any]]]:
    """`run_language` for many runs: the runs that share a shape train as one batch.

    values_list[i]: run i's flat config (as for `run_language`); outs[i]: its run directory (or
    None). Runs are grouped by `batch_key` (at most `max_batch` per batch). `on_record(i, record)`
    is called for run i's records.
    `launch`: config.json keys saying how the runs were started, one dict for all or one per run.
    Every run's directory holds what `run_language` writes (config.json with `launch`, records,
    language.json, checkpoint.pt), so each can be resumed alone. Returns the records, per run.
    compile: see `BatchedGame` ("auto": compile where the backend works).
    """
    compile_mode(compile)  # a bad value is an error before any work
    values_list = list(values_list)
    outs = [None] * len(values_list) if outs is None else list(outs)
    if len(outs) != len(values_list):
        raise ValueError(f"run_language_batched: {len(values_list)} configs but {len(outs)} run directories")
    named = [o for o in outs if o is not None]
    if len(set(map(str, named))) != len(named):
        raise ValueError("run_language_batched: two runs share a run directory")
    launches = [launch] * len(values_list) if launch is None or isinstance(launch, dict) else list(launch)
    if len(launches) != len(values_list):
        raise ValueError(f"run_language_batched: {len(values_list)} configs but {len(launches)} launch dicts")
    configs = []
    for values in values_list:
        game_config, relearn = split_config(values)
        configs.append((game_config.validate(), relearn.validate()))
        if game_config.agents is not None:
            raise ValueError(f"agents={game_config.agents!r}: the batched engine stacks the built-in agents "
                             "only; train your own agents with run_language (the reference engine)")
    groups: dict[Any, list[int]] = {}
    for i, values in enumerate(values_list):
        groups.setdefault(batch_key(values), []).append(i)
    for members in groups.values():
        check_fits_in_memory(configs[members[0]][0], min(len(members), max_batch or len(members)))
    run_dirs: list[RunDirectory | None] = []
    try:
        for o in outs:
            run_dirs.append(RunDirectory(o, resume=resume) if o is not None else None)
        return _run_groups(configs, run_dirs, launches, groups, values_list, resume=resume, progress=progress,
                           on_record=on_record, until=until, max_batch=max_batch, compile=compile)
    finally:
        for run_dir in run_dirs:
            if run_dir is not None:
                run_dir.close()


def _run_groups(configs, run_dirs, launches, groups, values_list, *, resume, progress, on_record, until,
                max_batch, compile) -> list[list[dict[str, Any]]]:
    """`run_language_batched` once every run directory is open: each group trains as batches."""
    # config.json as run_language writes it; written once the run's own resume check has passed.
    launch_configs = []
    for (game_config, relearn), run_dir, run_launch in zip(configs, run_dirs, launches):
        saved = (run_dir.read_config() or {}) if (resume and run_dir is not None) else {}
        total = {"iterations": relearn.generations * relearn.iterations_per_generation}
        launch_configs.append({**(run_launch or {}), **saved, **flat_config(game_config, relearn), **total})
    records: list[list[dict[str, Any]] | None] = [None] * len(values_list)
    diverged: dict[int, NonFiniteError] = {}
    for members in groups.values():
        chunks = [members] if max_batch is None else [members[k:k + max_batch]
                                                      for k in range(0, len(members), max_batch)]
        for chunk in chunks:
            runs = BatchedLanguageRuns(
                [configs[i][0] for i in chunk], [configs[i][1] for i in chunk], [run_dirs[i] for i in chunk],
                resume=resume, progress=progress, compile=compile,
                on_record=None if on_record is None else (lambda j, rec, chunk=chunk: on_record(chunk[j], rec)),
            )
            for i in chunk:
                if run_dirs[i] is not None:
                    run_dirs[i].write_config(launch_configs[i])
            try:
                for i, member_records in zip(chunk, runs.run(until)):
                    records[i] = member_records
            except NonFiniteError:
                for j, member in enumerate(runs.members):
                    records[chunk[j]] = member.records
                diverged.update({chunk[j]: error for j, error in runs.failed.items()})
    if diverged:
        if len(values_list) == 1:
            raise diverged[0]
        raise DivergedRuns(diverged, [values["seed"] for values in values_list])
    return records  # type: ignore[return-value]


class DivergedRuns(NonFiniteError):
    """Some runs of `run_language_batched` diverged (the others finished): `errors[i]` is run i's."""

    def __init__(self, errors: dict[int, NonFiniteError], seeds: Sequence[int]):
        self.errors = dict(sorted(errors.items()))
        super().__init__("; ".join(f"run {i} (seed {seeds[i]}): {error}" for i, error in self.errors.items()))
