"""Drawing a batch for S runs: each run's draws from its own generator, assembled for all at once.

`StackedSampler.sample` makes the calls, shapes and order of the single-run game per run, so run i
consumes exactly the random stream `LanguageRun` with the same seed consumes; the candidate sets,
one-hot codes and labels are then built for every run in one go, by table lookup where the tables
are small enough (`OBJECT_TABLE_LIMIT`, `RELATION_TABLE_LIMIT`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from emergent_frl.agents import exponential_noise
from emergent_frl.games import LanguageGame, ReferentialGame
from emergent_frl.objects import CandidateSampler, ObjectSpace, sample_objects

RELATION_TABLE_LIMIT = 1 << 24  # target x distractor pairs up to which the relation masks are tabulated
OBJECT_TABLE_LIMIT = 1 << 24  # objects x input size up to which the one-hot codes are tabulated


@dataclass
class StackedBatch:
    """One training step's inputs for all runs: game inputs [S, B, ...] and sampling noise.

    sender_noise: Exp(1) draws [T, S, B, V] (one [B, V] draw per run and position, as the single-
    run sender makes them); receiver_noise: [S, B, K] (referential game) or None.
    objects: the target objects' indices [S, B].
    """

    sender_input: torch.Tensor
    labels: torch.Tensor
    receiver_input: torch.Tensor | None
    sender_noise: torch.Tensor
    receiver_noise: torch.Tensor | None
    objects: torch.Tensor


def object_tables(space: ObjectSpace, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(one-hot codes [n_objects, input_size], attributes [n_objects, n_attributes]) of every
    object, so that encoding a batch is one gather; (None, None) above `OBJECT_TABLE_LIMIT`."""
    if space.n_objects * space.input_size > OBJECT_TABLE_LIMIT:
        return None, None
    everything = torch.arange(space.n_objects, device=device)
    return space.encode_index(everything), space.attributes_of(everything)


def relation_table(sampler: CandidateSampler) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The sampler's (different, easy) masks [targets, distractors] for every target row, looked
    up per batch; None above `RELATION_TABLE_LIMIT` target x distractor pairs."""
    if sampler.targets.numel() * sampler.distractors.numel() > RELATION_TABLE_LIMIT:
        return None
    return sampler.distractor_relations(sampler.target_attributes, sampler.distractor_attributes)


def common_candidate_sampler(games: Sequence[LanguageGame], device: torch.device) -> CandidateSampler | None:
    """The candidate sampler every (referential) game shares (same pools, same easy_limit), else None."""
    if not isinstance(games[0], ReferentialGame):
        return None
    samplers = [g.sampler_for(device) for g in games]
    first = samplers[0]
    for s in samplers[1:]:
        if (s.easy_limit != first.easy_limit or not torch.equal(s.targets, first.targets)
                or not torch.equal(s.distractors, first.distractors)):
            return None
    return first


def arrange_candidates(sampler: CandidateSampler, rows: torch.Tensor, keys: torch.Tensor, position: torch.Tensor,
                       relations: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """`CandidateSampler.sample` for given random draws (target rows [N], distractor keys [N, P],
    target positions [N]): the same candidate sets [N, K] it makes from the same draws, for many
    runs' draws at once. `relations`: the sampler's (different, easy) masks for every target row,
    precomputed. Keep in step with CandidateSampler._draw (tests compare the two)."""
    target = sampler.targets[rows]
    k = sampler.n_candidates
    if relations is None:
        different, easy = sampler.distractor_relations(sampler.target_attributes[rows],
                                                       sampler.distractor_attributes)
    else:
        different, easy = relations[0][rows], relations[1][rows]
    keys = keys.masked_fill(~different, -1.0)
    if sampler.easy_limit is not None:
        order = keys.argsort(dim=1, descending=True)
        easy_sorted = easy.gather(1, order)
        excluded_sorted = easy_sorted & (easy_sorted.cumsum(1) > sampler.easy_limit)
        excluded = torch.zeros_like(excluded_sorted).scatter_(1, order, excluded_sorted)
        keys = keys.masked_fill(excluded, -1.0)
    drawn = sampler.distractors[keys.topk(k - 1, dim=1).indices]
    slot = torch.arange(k, device=keys.device).unsqueeze(0)
    source = (slot - (slot > position.unsqueeze(1)).long()).clamp(max=k - 2)
    return torch.where(slot == position.unsqueeze(1), target.unsqueeze(1), drawn.gather(1, source))


class StackedSampler:
    """The batches and sampling noise of S games of one shape (see `BatchedGame`), one
    `StackedBatch` per training step, with the lookup tables that assemble it."""

    def __init__(self, games: Sequence[LanguageGame], device: torch.device):
        self.games = list(games)
        self.n_runs = len(self.games)
        self.template = self.games[0]
        self.device = device
        self.codes, self.attributes = object_tables(self.template.space, device)
        self.shared = common_candidate_sampler(self.games, device)
        self.relations = None if self.shared is None else relation_table(self.shared)

    def sample(self, generators: Sequence[torch.Generator]) -> StackedBatch:
        """Each run's batch and noise from its own generator, with the calls, shapes and order of
        the single-run game: `game.sample_batch` (a target row, distractor keys, a target position),
        then one Exp(1) draw [B, V] per message position, then the referential receiver's [B, K]
        draw. The batch is then put together for all runs at once."""
        game, device = self.template, self.device
        batch, steps, vocab = game.batch_size, game.sender.max_len, game.sender.vocab_size
        referential = isinstance(game, ReferentialGame)
        shared = self.shared
        like_sender = torch.empty(batch, vocab, device=device)
        like_receiver = torch.empty(batch, game.n_candidates, device=device) if referential else None
        drawn, sender_noise, receiver_noise = [], [], []
        for g, generator in zip(self.games, generators):
            if shared is not None:
                drawn.append((
                    torch.randint(shared.targets.numel(), (batch,), generator=generator, device=device),
                    torch.rand(batch, shared.distractors.numel(), generator=generator, device=device),
                    torch.randint(game.n_candidates, (batch,), generator=generator, device=device),
                ))
            elif referential:
                drawn.append(g.sampler_for(device).sample(batch, generator))
            else:
                drawn.append(sample_objects(g.train_pool, batch, generator))
            sender_noise.append(torch.stack([exponential_noise(like_sender, generator) for _ in range(steps)]))
            if referential:
                receiver_noise.append(exponential_noise(like_receiver, generator))
        noise = torch.stack(sender_noise, 1)  # [T, S, B, V]
        if not referential:
            objects = torch.stack(drawn)
            return StackedBatch(self.encode(objects), self.attributes_of(objects), None, noise, None, objects)
        if shared is not None:
            rows, keys, position = (torch.stack(parts) for parts in zip(*drawn))
            candidates = arrange_candidates(shared, rows.flatten(), keys.flatten(0, 1), position.flatten(),
                                            self.relations)
            candidates = candidates.view(self.n_runs, batch, -1)
        else:
            candidates = torch.stack([c for c, _ in drawn])  # [S, B, K]
            position = torch.stack([p for _, p in drawn])  # [S, B]
        target = candidates.gather(2, position.unsqueeze(2)).squeeze(2)
        return StackedBatch(self.encode(target), position, self.encode(candidates), noise,
                            torch.stack(receiver_noise), target)

    def encode(self, objects: torch.Tensor) -> torch.Tensor:
        """Object indices [...] -> one-hot codes [..., input_size]."""
        return self.template.space.encode_index(objects) if self.codes is None else self.codes[objects]

    def attributes_of(self, objects: torch.Tensor) -> torch.Tensor:
        """Object indices [...] -> attribute values [..., n_attributes]."""
        return self.template.space.attributes_of(objects) if self.attributes is None else self.attributes[objects]
