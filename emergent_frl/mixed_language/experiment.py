"""One language-forgetting run: a `Sender` imitates a mixed language; every `measure_every`
iterations forgetting is applied to copies and both halves are scored before and after.

    run = LanguageForgettingRun(config)
    while not run.finished:
        record = run.advance()       # train measure_every iterations, measure, maybe relearn
    run.state_dict()                 # continue later with load_state_dict: the same records follow

Randomness, all from the run's seed, none global: the speaker's initial weights (a forked RNG),
the batches (`--batch sample`, its own generator, checkpointed), and every forgetting draw from a
generator keyed by (seed, purpose, iteration, draw), so a resumed run draws exactly what the
uninterrupted one would. The trained speaker is never touched by a measurement (each draw
forgets a deep copy); with `relearn_every` the speaker itself is forgotten in place every N
iterations (Adam state kept, as the reference code keeps its optimizer) and relearns.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from emergent_frl.agents import Sender

from .config import LanguageForgettingConfig
from .readout import imitation_loss, per_object, summarize

STATE_FORMAT = 1
BATCHES, PREPARE, MEASURE, RELEARN = 0, 1, 2, 3  # independent random streams of one seed


def keyed_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from `key` (numpy's SeedSequence: stable across processes and
    versions, and nearby keys give unrelated streams)."""
    high, low = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(high) << 31) ^ int(low))


def mean_summary(summaries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Average half summaries (exact match, loss, per-position entropy) over forgetting draws."""
    if not summaries or summaries[0] is None:
        return None
    return {"exact_match": float(np.mean([s["exact_match"] for s in summaries])),
            "loss": float(np.mean([s["loss"] for s in summaries])),
            "entropy": [float(v) for v in np.mean([s["entropy"] for s in summaries], axis=0)]}


class LanguageForgettingRun:
    """The speaker, its optimizer, the operator and the target language of one seed."""

    def __init__(self, config: LanguageForgettingConfig):
        self.config = config.validate()
        self.space = config.space()
        self.language = config.language()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.sender = Sender(self.space.input_size, config.vocab_size, config.max_len,
                                 config.hidden_size, cell=config.cell)
        self.optimizer = torch.optim.Adam(self.sender.parameters(), lr=config.lr)
        self.operator = config.operator()
        self.operator.prepare(self.sender, generator=keyed_generator(config.seed, PREPARE))
        self.batches = keyed_generator(config.seed, BATCHES)
        self.inputs = self.space.encode_index(torch.arange(self.space.n_objects))
        self.halves = {**self.language.halves, "all": torch.arange(self.space.n_objects)}
        self.iteration = 0

    @property
    def finished(self) -> bool:
        return self.iteration >= self.config.iterations

    # -- training -----------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        """Object indices of the next batch: every object once, or a sample with repetition."""
        if self.config.batch == "all":
            return torch.arange(self.space.n_objects)
        return torch.randint(self.space.n_objects, (self.config.batch_size,), generator=self.batches)

    def train_step(self) -> float:
        objects = self.batch()
        self.sender.train()
        loss = imitation_loss(self.sender, self.inputs[objects], self.language.messages[objects],
                              self.config.feedback)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return float(loss.detach())

    # -- measurement --------------------------------------------------------------------------
    def score(self, sender: Sender) -> dict[str, Any]:
        """Per half ("compositional", "permuted", "all"): exact match, loss, per-position entropy
        of the greedy speaker (None for an empty half)."""
        readout = per_object(sender, self.inputs, self.language.messages)
        return {name: summarize(readout, objects) for name, objects in self.halves.items()}

    def forgotten_copy(self, generator: torch.Generator) -> Sender:
        """A deep copy of the speaker with the operator applied; the speaker stays as it was."""
        clone = copy.deepcopy(self.sender)
        self.operator.apply(clone, generator=generator)
        return clone

    def measure(self) -> dict[str, Any]:
        """Both halves before forgetting and after it (the mean over `draws` forgotten copies)."""
        draws = [self.score(self.forgotten_copy(keyed_generator(self.config.seed, MEASURE, self.iteration, d)))
                 for d in range(self.config.draws)]
        return {"iteration": self.iteration, "before": self.score(self.sender),
                "after": {half: mean_summary([d[half] for d in draws]) for half in self.halves},
                "draws": self.config.draws}

    def relearn_due(self) -> bool:
        every = self.config.relearn_every
        return every > 0 and self.iteration % every == 0 and not self.finished

    def forget_in_place(self) -> dict[str, Any]:
        """Forget-and-relearn: the speaker itself becomes a forgotten copy; its scores right after."""
        self.operator.apply(self.sender, generator=keyed_generator(self.config.seed, RELEARN, self.iteration))
        return self.score(self.sender)

    def advance(self) -> dict[str, Any]:
        """Train to the next measurement, measure, and forget in place when relearning is due."""
        losses = [self.train_step() for _ in range(self.config.measure_every)]
        record = {**self.measure(), "train_loss": float(np.mean(losses))}
        if self.relearn_due():
            record["relearn"] = self.forget_in_place()
        return record

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain Python only (torch.load(weights_only=True) reads it)."""
        return {"format": STATE_FORMAT, "config": self.config.to_dict(), "iteration": self.iteration,
                "sender": self.sender.state_dict(), "optimizer": self.optimizer.state_dict(),
                "operator": self.operator.state_dict(), "batches": self.batches.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`; a ValueError when it was saved under other settings."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"checkpoint format {state.get('format')!r}; this version reads {STATE_FORMAT}")
        mine = self.config.to_dict()
        differing = sorted(k for k in mine if mine[k] != state["config"].get(k))
        if differing:
            raise ValueError(f"the checkpoint was saved with other settings ({', '.join(differing)})")
        self.sender.load_state_dict(state["sender"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.operator.load_state_dict(state["operator"])
        self.batches.set_state(state["batches"])
        self.iteration = int(state["iteration"])
