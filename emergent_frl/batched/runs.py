"""S `LanguageRun`s of one shape trained as one batch: `BatchedLanguageRuns`, `run_language_batched`.

Each run ("member") is a `LanguageRun` that keeps its configs, strategy, generator, records and run
directory; the batch trains them all and hands each member its generation's stats, and at every
evaluation and generation boundary the member's own code evaluates, records, forgets and
checkpoints on its own modules (copied from and back into the stack).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from emergent_frl.compiling import compile_mode
from emergent_frl.batched.memory import keep_freed_memory
from emergent_frl.relearn import (
    LanguageRun,
    NonFiniteError,
    RelearnConfig,
    flat_config,
    interruption_at,
    run_generations,
    split_config,
)
from emergent_frl.stacked import StackedGames
from emergent_frl.trainers import ENGINES, StackedTrainer
from emergent_frl.footprint import check_fits_in_memory
from emergent_frl.knobs import shape_fields
from emergent_frl.runs import CONFIG_FILE, RunDirectory, software_versions
from emergent_frl.training import LanguageGameConfig

# Fields that must agree between the runs of one batch (they fix tensor shapes or the loop): the
# knobs declared with shape=True.
SHAPE_FIELDS = shape_fields(LanguageGameConfig)
RELEARN_SHAPE_FIELDS = shape_fields(RelearnConfig)
# How a run trains. "batched": this package (stacked parameters, fused Adam, the loss under
# torch.compile where it works), the fast one; "reference": emergent_frl.relearn.LanguageRun (the
# agents' own modules and torch optimizers), what run_language runs. The two follow a seed in
# distribution, not bit for bit; run directories made before the choice existed are reference runs.
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


class BatchedLanguageRuns:
    """S language runs of one shape (seeds, strategies, learning rates may differ), trained together.

    Each run is a `LanguageRun` (its configs, strategy, generator, optimizers, records and run
    directory); the generational loop (`run_generations`) trains them as one computation with a
    `StackedTrainer` and lets each score, forget, record and checkpoint itself, so every run writes
    what `LanguageRun` writes and can be resumed or extended alone. `run()` returns each run's
    records. Runs whose training diverges (nan/inf) stop there, as a single run would; the others
    go on, and `run()` then raises NonFiniteError naming the stopped runs.

    resume: continue every run from its directory's checkpoint (runs left at different
    generations are brought level, batched too). compile: see `emergent_frl.compiling`.
    tune_malloc: call `keep_freed_memory()` (CPU only).
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
        on_evaluation: Callable[[int, dict[str, Any]], None] | None = None,
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
        self.trainer = StackedTrainer(compile=compile, progress=progress)
        self.members = [
            LanguageRun(g, r, d, progress=False, trainer=self.trainer,
                        on_record=None if on_record is None else (lambda rec, i=i: on_record(i, rec)),
                        on_evaluation=None if on_evaluation is None else (lambda rec, i=i: on_evaluation(i, rec)))
            for i, (g, r, d) in enumerate(zip(game_configs, relearns, run_dirs))
        ]
        self.relearn = self.members[0].relearn
        self.failed: dict[int, NonFiniteError] = {}
        if tune_malloc and self.members[0].game.device.type == "cpu":
            keep_freed_memory()
        if resume:
            for member in self.members:
                member.resume()

    @property
    def n_runs(self) -> int:
        return len(self.members)

    @property
    def generators(self) -> list[torch.Generator]:
        return [m.generator for m in self.members]

    @property
    def stacked(self) -> StackedGames:
        """The runs' games as one computation (built on first use)."""
        return self.trainer.stacked_for([m for m in self.members])

    def train_step(self, only: str | None = None) -> torch.Tensor:
        """One iteration of every run (no evaluation); the per-run stats [S, 4] (no host sync)."""
        optimizers = [m.optimizers if only is None else {only: m.optimizers[only]} for m in self.members]
        return self.stacked.train_step(self.generators, optimizers, only)

    def run(self, until: int | None = None) -> list[list[dict[str, Any]]]:
        """Run the remaining generations of every run (or stop after generation `until` - 1)."""
        alone = self.members[0].run_dir if self.n_runs == 1 else None
        with interruption_at(lambda: (min(m.generation for m in self.members), self.members[0].iteration), alone):
            self.failed.update(run_generations(self.members, self.trainer, until))
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
    on_evaluation: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[list[dict[str, Any]]]:
    """`run_language` for many runs: the runs that share a shape train as one batch.

    values_list[i]: run i's flat config (as for `run_language`); outs[i]: its run directory (or
    None). Runs are grouped by `batch_key` (at most `max_batch` per batch). `on_record(i, record)`
    is called for run i's records, `on_evaluation(i, record)` for its evaluations.
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
                           on_record=on_record, until=until, max_batch=max_batch, compile=compile,
                           on_evaluation=on_evaluation)
    finally:
        for run_dir in run_dirs:
            if run_dir is not None:
                run_dir.close()


def _run_groups(configs, run_dirs, launches, groups, values_list, *, resume, progress, on_record, until,
                max_batch, compile, on_evaluation=None) -> list[list[dict[str, Any]]]:
    """`run_language_batched` once every run directory is open: each group trains as batches."""
    # config.json as run_language writes it; written once the run's own resume check has passed.
    launch_configs = []
    versions = software_versions()
    for (game_config, relearn), run_dir, run_launch in zip(configs, run_dirs, launches):
        saved = (run_dir.read_config() or {}) if (resume and run_dir is not None) else {}
        total = {"iterations": relearn.generations * relearn.iterations_per_generation}
        launch_configs.append({"versions": versions, **(run_launch or {}), **saved, **flat_config(game_config, relearn),
                               **total})
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
                on_evaluation=None if on_evaluation is None else (
                    lambda j, rec, chunk=chunk: on_evaluation(chunk[j], rec)),
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
