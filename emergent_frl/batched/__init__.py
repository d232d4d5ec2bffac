"""Many language-game runs of one shape, trained as one batched computation in one process.

Forget-and-relearn science needs many seeds x many strategies x long runs of tiny networks. One
run's iteration is ~115 MFLOP in a few hundred tiny ops, so an eager loop is bound by per-op
overhead, not arithmetic. Here S runs whose games have the same shape (architecture, batch size,
channel, ...; seeds, strategies, learning rates and entropy coefficients may differ) share every
op: each parameter is the S runs' parameters stacked along a leading run dimension, every Linear /
RNN-cell matmul is one `torch.baddbmm` over the S runs, and Adam is torch's fused kernel on the
per-run slices.

    runs = BatchedLanguageRuns([game_config_0, ...], [relearn_0, ...], [RunDirectory(...), ...])
    runs.run()                                 # every generation of every run, per-run run dirs
    run_language_batched([values_0, ...], ["runs/s0", ...])   # the same from flat configs (CLI)

The pieces, bottom up, one file each:
- layout.py: `Slot`, `parameter_layout`: where each single-run parameter lives in the stack.
- cells.py: `stacked_linear`, `fast_tanh`, `StackedCell`: per-run Linear and recurrent cells.
- sampling.py: `StackedSampler` draws each run's batch and sampling noise from that run's own
  `torch.Generator` with exactly the calls, shapes and order of the single-run game, so run i sees
  the batches and noise `LanguageRun` with the same seed sees; the `StackedBatch` is then
  assembled for all runs at once (one vectorised candidate draw, one-hot codes by table lookup).
- game.py: `BatchedGame`: the stacked parameters of S `LanguageGame`s and the batched training
  forward (sender, receiver, the game's own per-sample loss, EGG's REINFORCE / Gumbel loss with
  entropy bonuses and optional running-mean baseline); `store`/`load` copy one run's slice.
- adam.py: `StackedAdam`: one Adam per (run, agent), state per (run, parameter), so any run's
  state can be reset alone; a step is torch's fused Adam on the per-run views.
- memory.py: `keep_freed_memory` (malloc tuning for CPU steps).
- runs.py: `BatchedLanguageRuns`: S `LanguageRun`s ("members") that keep their own configs,
  strategies and forgetting operators, generators, records and run directories. The batch trains
  them all; at every evaluation and generation boundary run i's slice is copied into its member's
  modules (weights, baseline, Adam state), the member's own code evaluates, records, forgets and
  checkpoints, and the result is copied back. A member's run directory is what `LanguageRun`
  writes, so a batched run can be resumed or extended singly. A record's "seconds" include the
  (shared) wall time of the batch's training of that generation. `run_language_batched` groups
  flat configs into batches (`batch_key`); `parse_seeds` reads --seeds.

How the computation differs from the single-run modules, all exact up to float rounding: Linear
and cell weights are stored transposed (gradients come out contiguous for the fused Adam);
products with the zero initial receiver state and the zero start token are skipped; the sender's
first step uses (objects @ W_enc) @ W_hh = objects @ (W_enc @ W_hh) (matrix-chain order); the
referential scores use candidate . (W_c @ message) instead of encoding every candidate; tanh is
2 sigmoid(2x) - 1 (torch.tanh is slow on CPU). So given identical weights, batch and noise, each
run's loss and gradients equal the unbatched game's to rounding (tests/test_batched.py), but
trajectories are not bit-identical to `LanguageRun`'s: Adam's first steps turn ~1e-7 gradient
differences into ~lr weight differences and sampled symbols eventually flip. Batched run i follows
single-run seed i in distribution, on the same random stream. Runs in one batch do not influence
each other: run i's records do not change when another run's seed changes.

Every strategy batches. Iterated learning's phases fit as follows: the imitation of the old
speaker's lexicon happens at the generation boundary in the member's own code (as forgetting
does), and the listener-only warm-up opening each generation is a stretch of batched steps that
step only the listeners' Adam (`StackedAdam.step(only="receiver")`), so runs batch only with runs
of the same warm-up length (`batch_key`).
Devices: written for CPU and CUDA alike (no host sync in the training step; `compile=
"reduce-overhead"` gives CUDA graphs), but exercised on CPU only so far.
"""

from emergent_frl.batched.adam import StackedAdam
from emergent_frl.batched.cells import StackedCell, fast_tanh, stacked_linear
from emergent_frl.batched.game import BatchedGame
from emergent_frl.batched.layout import Slot, parameter_layout
from emergent_frl.batched.memory import keep_freed_memory
from emergent_frl.batched.runs import (
    ENGINES, LEGACY_ENGINE, BatchedLanguageRuns, DivergedRuns, batch_key, parse_seeds, recorded_engine,
    run_language_batched,
)
from emergent_frl.batched.sampling import StackedBatch, StackedSampler, arrange_candidates

_arrange_candidates = arrange_candidates  # its name before the split into a package

__all__ = [
    "ENGINES",
    "LEGACY_ENGINE",
    "BatchedGame",
    "BatchedLanguageRuns",
    "DivergedRuns",
    "Slot",
    "StackedAdam",
    "StackedBatch",
    "StackedCell",
    "StackedSampler",
    "arrange_candidates",
    "batch_key",
    "fast_tanh",
    "keep_freed_memory",
    "parameter_layout",
    "parse_seeds",
    "recorded_engine",
    "run_language_batched",
    "stacked_linear",
]
