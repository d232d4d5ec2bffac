"""How a generation's iterations are trained, for one run or many: one interface, two engines.

The generational loop (`emergent_frl.relearn.run_generations`) asks a trainer to train a group of
runs that stand at the same point for `n` iterations, then lets each run score, forget, record
and checkpoint itself. A trainer only trains; it never drives the loop.

- `ReferenceTrainer` ("reference"): each run alone, one batch at a time: `train_iterations` over
  the agents' modules and the run's own optimizers. The plainest loop, what `run_language` runs.
- `StackedTrainer` ("batched"): the group as one computation (`emergent_frl.stacked`): the same
  modules with their parameters stacked under vmap, each run's batch and noise from its own
  generator, its own optimizers stepped by torch's functional Adam; iterated learning's new
  speakers imitate together too. The game scripts' default.

Both call each run's `record_evaluation` every `eval_every` iterations with its greedy scores, and
both consume each run's random stream exactly as the run alone would; they agree to float
rounding, not bit for bit (tests/test_stacked.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from emergent_frl.games import TRAINING_STATS
from emergent_frl.imitation import Imitation, JointImitation
from emergent_frl.stacked import StackedGames
from emergent_frl.training import Interrupted, TrainingStats, evaluation_record, train_iterations

if TYPE_CHECKING:
    from emergent_frl.relearn import LanguageRun, NonFiniteError

ENGINES = ("batched", "reference")


class Trainer(Protocol):
    """Trains a group of runs (same generation, same phase) for `n` iterations.

    Returns, per run, {"iterations", train_* means since the last evaluation, "evaluations"},
    and the runs (by position in `runs`) whose evaluation found them diverged; their records
    stop there and the loop drops them."""

    name: str
    bar: Any  # the whole run's progress bar (set by the loop), advanced once per iteration

    def train(self, runs: Sequence["LanguageRun"], n: int, only: str | None
              ) -> tuple[list[dict[str, Any]], dict[int, "NonFiniteError"]]: ...

    def boundary_done(self) -> None:
        """The runs' own code ran (forgetting, fresh optimizers, a resume): pick up its changes."""

    def imitate(self, imitations: Sequence[Imitation]) -> None:
        """Carry out the imitations the runs' boundaries left (iterated learning's new speakers)."""


def _optimizers_for(run: "LanguageRun", only: str | None) -> dict[str, torch.optim.Optimizer]:
    return dict(run.optimizers) if only is None else {only: run.optimizers[only]}


class ReferenceTrainer:
    """Each run trained alone by `train_iterations` (the agents' modules, the run's optimizers)."""

    name = "reference"

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.bar = None

    def train(self, runs, n, only):
        from emergent_frl.relearn import NonFiniteError

        results, failed = [], {}
        for i, run in enumerate(runs):
            if n == 0:
                results.append({})
                continue
            try:
                out = train_iterations(run.game, _optimizers_for(run, only), n, generator=run.generator,
                                       eval_every=run.config.eval_every or None, on_eval=run.record_evaluation,
                                       progress=self.progress and run.progress, iteration_offset=run.iteration,
                                       bar=self.bar)
            except NonFiniteError as error:
                if len(runs) == 1:
                    raise
                failed[i] = error
                out = {}
            run.iteration += n
            results.append(out)
        return results, failed

    def boundary_done(self) -> None:
        pass

    def imitate(self, imitations):
        for imitation in imitations:
            imitation.run()


class StackedTrainer:
    """The group trained as one computation over its games' stacked parameters (`StackedGames`).
    `compile`: see `emergent_frl.compiling`. The stack is rebuilt when the group changes
    (runs that lagged behind after a resume, or a run that diverged and left)."""

    name = "batched"

    def __init__(self, *, compile: bool | str = False, progress: bool = True):
        self.compile = compile
        self.progress = progress
        self.bar = None
        self._stacked: StackedGames | None = None
        self._members: tuple[int, ...] = ()
        self._imitation = JointImitation(compile)

    def stacked_for(self, runs: Sequence["LanguageRun"]) -> StackedGames:
        key = tuple(id(run.game) for run in runs)
        if self._stacked is None or key != self._members:
            self._stacked = StackedGames([run.game for run in runs], compile=self.compile)
            self._members = key
        return self._stacked

    def boundary_done(self) -> None:
        if self._stacked is not None:
            self._stacked.link()

    def imitate(self, imitations):
        """The runs' new speakers taught together: their stacked parameters under vmap, compiled
        as the training step is (`emergent_frl.imitation.JointImitation`)."""
        self._imitation(imitations)

    def train(self, runs, n, only):
        from emergent_frl.relearn import NonFiniteError

        runs = list(runs)
        if n == 0:
            return [{} for _ in runs], {}
        stacked = self.stacked_for(runs)
        generators = [run.generator for run in runs]
        optimizers = [_optimizers_for(run, only) for run in runs]
        eval_every = runs[0].config.eval_every or None
        stats = TrainingStats(stacked.device, len(runs))
        failed: dict[int, NonFiniteError] = {}
        evaluations: list[list[dict[str, Any]]] = [[] for _ in runs]
        last = [dict.fromkeys(TRAINING_STATS, float("nan")) for _ in runs]
        offsets = [run.iteration for run in runs]
        own_bar = self.bar is None
        bar = tqdm(total=n, disable=None if self.progress else True, desc=f"{stacked.template.kind} x{len(runs)}",
                   leave=False) if own_bar else self.bar
        done = 0
        try:
            for step in range(1, n + 1):
                stats.add(stacked.train_step(generators, optimizers, only))
                done = step
                bar.update(1)
                if eval_every and step % eval_every == 0:
                    last = stats.read()
                    for i, run in enumerate(runs):
                        if i in failed:
                            continue
                        record = evaluation_record(run.game, offsets[i] + step, last[i])
                        try:
                            run.record_evaluation(record)
                        except NonFiniteError as error:
                            failed[i] = error
                            continue
                        evaluations[i].append(record)
        except KeyboardInterrupt:
            if own_bar:
                bar.close()
            raise Interrupted(None, offsets[0] + done) from None
        if own_bar:
            bar.close()
        if stats.count:
            last = stats.read()
        for run in runs:
            run.iteration += n
        return [{"iterations": n, **last[i], "evaluations": evaluations[i]} for i in range(len(runs))], failed


