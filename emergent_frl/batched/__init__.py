"""Many language-game runs of one shape in one process, trained as one computation.

    runs = BatchedLanguageRuns([game_config_0, ...], [relearn_0, ...], [RunDirectory(...), ...])
    runs.run()                                 # every generation of every run, per-run run dirs
    run_language_batched([values_0, ...], ["runs/s0", ...])   # the same from flat configs (CLI)

Each run is a `LanguageRun`; the generational loop (`emergent_frl.relearn.run_generations`)
trains them together with a `StackedTrainer` (`emergent_frl.trainers`), which runs the games' own
modules with their parameters stacked (`emergent_frl.stacked`), so there is no second copy of the
agents, games or losses here. This package holds what is about many runs: grouping flat configs
into batches (`batch_key`), `--seeds` parsing, the engine a run directory records, `torch.compile`
settings (compiling.py) and an allocator setting for CPU steps (memory.py).

Batched run i consumes the random stream of single-run seed i (its batches from its game's own
`sample_batch`, its sampling noise from its own generator, in the same order), and its loss and
gradients equal the single run's to float rounding (tests/test_stacked.py); trajectories are not
bit-identical, since Adam turns ~1e-7 differences into ~lr weight differences and sampled symbols
eventually flip. Runs in one batch do not influence each other.
"""

from emergent_frl.batched.memory import keep_freed_memory
from emergent_frl.batched.runs import (
    ENGINES, LEGACY_ENGINE, BatchedLanguageRuns, DivergedRuns, batch_key, parse_seeds, recorded_engine,
    run_language_batched,
)
from emergent_frl.stacked import StackedBatch, StackedGames

__all__ = [
    "ENGINES",
    "LEGACY_ENGINE",
    "BatchedLanguageRuns",
    "DivergedRuns",
    "StackedBatch",
    "StackedGames",
    "batch_key",
    "keep_freed_memory",
    "parse_seeds",
    "recorded_engine",
    "run_language_batched",
]
