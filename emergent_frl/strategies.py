"""Named forget-and-relearn strategies for language games, each a preset of forgetting operators.

A strategy decides what happens at a generation boundary (after a generation's training, before the
next one): which agent loses what, and whether the optimizers start afresh. Every strategy built
from weights uses the shared operators in `emergent_frl.forgetting`; none has mask code of its own.

| strategy | at each boundary |
|---|---|
| no_reset | nothing (the compute-matched control) |
| reset_receiver | listener fully re-initialized, fresh optimizers (Li & Bowling 2019) |
| reset_sender | speaker fully re-initialized, fresh optimizers |
| pbf | both agents keep 10 % (largest magnitude at init, same mask), 90 % re-initialized; Adam kept (Zhou et al. 2022) |
| partial | user-set keep fraction, mask kind, timing and reset value per agent |
| iterated_learning | new speaker imitates the old one's lexicon, new listener, listener-only warm-up (Ren et al. 2020) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from emergent_frl.forgetting import (
    ForgettingOperator,
    MaskCriterion,
    ParameterSelection,
    ResetValue,
    full_reset,
    partial_forgetting,
    reset_module,
)
from emergent_frl.games import LanguageGame
from emergent_frl.imitation import Imitation, lexicon

STRATEGIES = ("no_reset", "reset_receiver", "reset_sender", "pbf", "partial", "iterated_learning")
AGENTS = ("sender", "receiver")


@dataclass
class BoundaryResult:
    """What a boundary changed: whether optimizers must be rebuilt, and fields for the record.
    `imitations`: work `begin_forgetting` leaves for the trainer (which may carry out many runs'
    at once); the boundary is done when they are, and their fields join the record."""

    fresh_optimizers: bool
    fields: dict[str, Any]
    imitations: list[Imitation] = field(default_factory=list)


class Strategy:
    """Base: no forgetting. Subclasses override `forget`."""

    name = "no_reset"
    listener_only_iterations = 0  # iterations at the start of every generation (the first too) that update only the listener

    def __init__(self, operators: dict[str, ForgettingOperator] | None = None):
        self.operators = operators or {}

    def prepare(self, game: LanguageGame) -> None:
        """Called once on the freshly initialized agents, before any training."""
        for agent, operator in self.operators.items():
            operator.prepare(getattr(game, agent))

    def forget(self, game: LanguageGame, optimizers: dict[str, torch.optim.Optimizer],
               generator: torch.Generator) -> BoundaryResult:
        return BoundaryResult(False, {})

    def begin_forgetting(self, game: LanguageGame, optimizers: dict[str, torch.optim.Optimizer],
                         generator: torch.Generator) -> BoundaryResult:
        """`forget`, possibly leaving `imitations` for the trainer (what the generational loop
        calls). Override `forget`; only a strategy with work a trainer can batch overrides this."""
        return self.forget(game, optimizers, generator)

    def _apply_operators(self, game, optimizers) -> dict[str, Any]:
        fields = {}
        for agent, operator in self.operators.items():
            report = operator.apply(getattr(game, agent), optimizers=[optimizers[agent]])
            fields[f"{agent}_forgotten_fraction"] = report.fraction
        return fields

    def state_dict(self) -> dict:
        return {agent: op.state_dict() for agent, op in self.operators.items()}

    def load_state_dict(self, state: dict) -> None:
        for agent, operator in self.operators.items():
            operator.load_state_dict(state[agent])


class OperatorStrategy(Strategy):
    """Apply one operator per named agent; optionally rebuild both optimizers afterwards."""

    def __init__(self, name: str, operators: dict[str, ForgettingOperator], fresh_optimizers: bool):
        super().__init__(operators)
        self.name = name
        self.fresh_optimizers = fresh_optimizers

    def forget(self, game, optimizers, generator) -> BoundaryResult:
        return BoundaryResult(self.fresh_optimizers, self._apply_operators(game, optimizers))


class IteratedLearning(Strategy):
    """Ren et al. (2020): imitation by a new speaker, a new listener, listener-only warm-up.

    At each boundary the trained speaker's greedy lexicon over the training objects is the only
    thing passed on: a freshly initialized speaker imitates it for `imitation_iterations` steps,
    and a fresh listener replaces the old one. The next generation first updates only the listener
    for `listener_only_iterations` steps, then both agents.
    """

    name = "iterated_learning"

    def __init__(self, *, imitation_iterations: int, listener_only_iterations: int,
                 imitation_batch_size: int, imitation_lr: float):
        super().__init__()
        self.imitation_iterations = imitation_iterations
        self.listener_only_iterations = listener_only_iterations
        self.imitation_batch_size = imitation_batch_size
        self.imitation_lr = imitation_lr

    def begin_forgetting(self, game, optimizers, generator) -> BoundaryResult:
        """New agents, and the new speaker's imitation left for the trainer (which teaches a batch's
        speakers together)."""
        objects = game.split.train
        taught = lexicon(game.sender, game.space, objects)
        init = _fork_generator(generator)
        reset_module(game.sender, init)
        reset_module(game.receiver, init)
        imitation = Imitation(game.sender, game.space, objects, taught, iterations=self.imitation_iterations,
                              batch_size=self.imitation_batch_size, lr=self.imitation_lr, generator=generator)
        return BoundaryResult(True, {}, [imitation])

    def forget(self, game, optimizers, generator) -> BoundaryResult:
        boundary = self.begin_forgetting(game, optimizers, generator)
        for imitation in boundary.imitations:
            boundary.fields.update(imitation.run())
        return BoundaryResult(boundary.fresh_optimizers, boundary.fields)


def _fork_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator seeded from the run's stream: re-initialization draws stay reproducible."""
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


@dataclass
class PartialForgetting:
    """One agent's operator for the `partial` strategy (keep_fraction 1 = leave the agent alone)."""

    keep_fraction: float = 0.1
    mask: str = "magnitude"
    timing: str = "once_init"
    reset: str = "reinit"

    def operator(self, seed: int) -> ForgettingOperator:
        return ForgettingOperator(ParameterSelection(),
                                  MaskCriterion(self.mask, self.keep_fraction, timing=self.timing),
                                  ResetValue(self.reset), seed=seed)


def build_strategy(
    name: str,
    *,
    seed: int,
    sender: PartialForgetting | None = None,
    receiver: PartialForgetting | None = None,
    imitation_iterations: int = 1200,
    listener_only_iterations: int = 200,
    imitation_batch_size: int = 100,
    imitation_lr: float = 1e-3,
    fresh_optimizers: bool = False,
) -> Strategy:
    """The named strategy; operators are seeded from the run's seed (one stream per agent).

    `sender`/`receiver` and `fresh_optimizers` configure the `partial` strategy only.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r}: must be one of {list(STRATEGIES)}")
    seeds = {"sender": seed * 2 + 1, "receiver": seed * 2 + 2}
    if name == "no_reset":
        return Strategy()
    if name in ("reset_receiver", "reset_sender"):
        agent = name.split("_")[1]
        return OperatorStrategy(name, {agent: full_reset(seed=seeds[agent])}, fresh_optimizers=True)
    if name == "pbf":
        operators = {a: partial_forgetting(0.1, mask="magnitude", timing="once_init", reset="reinit",
                                           seed=seeds[a]) for a in AGENTS}
        return OperatorStrategy(name, operators, fresh_optimizers=False)
    if name == "partial":
        chosen = {a: spec for a, spec in (("sender", sender), ("receiver", receiver))
                  if spec is not None and spec.keep_fraction < 1.0}
        return OperatorStrategy(name, {a: spec.operator(seeds[a]) for a, spec in chosen.items()},
                                fresh_optimizers=fresh_optimizers)
    return IteratedLearning(
        imitation_iterations=imitation_iterations, listener_only_iterations=listener_only_iterations,
        imitation_batch_size=imitation_batch_size, imitation_lr=imitation_lr,
    )
