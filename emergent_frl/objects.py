"""Attribute-value object spaces: enumeration, one-hot encoding, splits and candidate sampling.

An object is a tuple of attribute values, e.g. (color, shape) in the paper's 8 x 4 space. Agents see
objects as concatenated one-hot vectors (the paper's 12-dim vectors); games index objects by their
position in the lexicographic enumeration, so a batch is a small Long tensor until it is encoded.

Everything random takes an explicit `torch.Generator` and runs on the generator's device, so a
training loop can draw batches without host synchronisation and a seed fixes the draw.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch


TABLE_LIMIT = 1 << 22  # entries of one-hot codes an ObjectSpace keeps as a table (16 MiB of float32)


@dataclass(frozen=True)
class Split:
    """Indices (into `ObjectSpace.objects()`) of the training objects and the held-out objects."""

    train: torch.Tensor
    holdout: torch.Tensor


class ObjectSpace:
    """All objects with `n_attributes` attributes; attribute i takes `n_values[i]` values.

    `n_values` is an int (every attribute has that many values) or one count per attribute.
    """

    def __init__(self, n_attributes: int, n_values: int | Sequence[int]):
        if isinstance(n_attributes, bool) or not isinstance(n_attributes, int) or n_attributes < 1:
            raise ValueError(f"n_attributes={n_attributes!r}: must be an integer >= 1")
        if isinstance(n_values, int) and not isinstance(n_values, bool):
            values = (n_values,) * n_attributes
        else:
            values = tuple(n_values)
            if len(values) != n_attributes:
                raise ValueError(
                    f"n_values={list(values)!r}: needs one count per attribute ({n_attributes}), "
                    f"got {len(values)}"
                )
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"n_values={list(values)!r}: every count must be an integer >= 1")
        self.n_attributes = n_attributes
        self.n_values: tuple[int, ...] = values
        self.n_objects = math.prod(values)
        self.input_size = sum(values)
        # Offset of each attribute's block inside the one-hot vector.
        self._offsets = torch.tensor([0, *itertools.accumulate(values)][:-1], dtype=torch.long)
        # Mixed-radix place values: index = sum(attr[i] * stride[i]) (last attribute varies fastest).
        strides = [math.prod(values[i + 1 :]) for i in range(n_attributes)]
        self._strides = torch.tensor(strides, dtype=torch.long)
        self._tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"ObjectSpace(n_attributes={self.n_attributes}, n_values={list(self.n_values)})"

    # enumeration -------------------------------------------------------------------------------
    def objects(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All objects as attribute values, Long [n_objects, n_attributes], lexicographic order."""
        return self.attributes_of(torch.arange(self.n_objects, device=device))

    def keep_tables(self, device: torch.device | str) -> None:
        """Keep every object's attribute values and one-hot code on `device`, so that
        `attributes_of` and `encode_index` there are one lookup. Why: a training step encodes
        every batch, and under torch.compile on a CPU the lookup is about 25x faster than the
        integer arithmetic and scatter it replaces (the values are the same). Spaces of more than
        `TABLE_LIMIT` code entries compute instead."""
        device = torch.device(device)
        if device not in self._tables and self.n_objects * self.input_size <= TABLE_LIMIT:
            attributes = self._attributes_of(torch.arange(self.n_objects, device=device))
            self._tables[device] = (attributes, self._encode(attributes))

    def attributes_of(self, index: torch.Tensor) -> torch.Tensor:
        """Object indices [...] -> attribute values [..., n_attributes]."""
        table = self._tables.get(index.device)
        return self._attributes_of(index) if table is None else table[0][index]

    def _attributes_of(self, index: torch.Tensor) -> torch.Tensor:
        strides = self._strides.to(index.device)
        values = torch.tensor(self.n_values, dtype=torch.long, device=index.device)
        return torch.div(index.unsqueeze(-1), strides, rounding_mode="floor") % values

    def index_of(self, attributes: torch.Tensor) -> torch.Tensor:
        """Attribute values [..., n_attributes] -> object indices [...]."""
        return (attributes.long() * self._strides.to(attributes.device)).sum(-1)

    # one-hot encoding --------------------------------------------------------------------------
    def encode(self, attributes: torch.Tensor) -> torch.Tensor:
        """Attribute values [..., n_attributes] -> concatenated one-hot vectors [..., input_size]."""
        if attributes.shape[-1] != self.n_attributes:
            raise ValueError(
                f"attributes: last dimension must be n_attributes={self.n_attributes}, "
                f"got shape {tuple(attributes.shape)}"
            )
        return self._encode(attributes)

    def _encode(self, attributes: torch.Tensor) -> torch.Tensor:
        positions = attributes.long() + self._offsets.to(attributes.device)
        out = torch.zeros(*attributes.shape[:-1], self.input_size, device=attributes.device)
        return out.scatter_(-1, positions, 1.0)

    def encode_index(self, index: torch.Tensor) -> torch.Tensor:
        """Object indices [...] -> one-hot vectors [..., input_size]."""
        table = self._tables.get(index.device)
        return self.encode(self._attributes_of(index)) if table is None else table[1][index]

    def decode(self, vectors: torch.Tensor) -> torch.Tensor:
        """One-hot (or score) vectors [..., input_size] -> attribute values (argmax per block)."""
        if vectors.shape[-1] != self.input_size:
            raise ValueError(
                f"vectors: last dimension must be input_size={self.input_size}, "
                f"got shape {tuple(vectors.shape)}"
            )
        blocks = torch.split(vectors, list(self.n_values), dim=-1)
        return torch.stack([block.argmax(-1) for block in blocks], dim=-1)

    def shared_attributes(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Number of attributes on which objects `a` and `b` (indices, broadcastable) agree."""
        return (self.attributes_of(a) == self.attributes_of(b)).sum(-1)

    # splits ------------------------------------------------------------------------------------
    def _n_holdout(self, fraction: float) -> int:
        if not (0.0 <= fraction < 1.0):
            raise ValueError(f"holdout fraction={fraction!r}: must be in [0, 1)")
        n = round(fraction * self.n_objects)
        if n >= self.n_objects:
            raise ValueError(
                f"holdout fraction={fraction!r}: leaves no training object out of {self.n_objects}"
            )
        return n

    def random_split(self, fraction: float, seed: int) -> Split:
        """Hold out round(fraction * n_objects) objects chosen uniformly at random."""
        n = self._n_holdout(fraction)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.n_objects, generator=generator)
        return Split(train=order[n:].sort().values, holdout=order[:n].sort().values)

    def systematic_split(self, fraction: float, seed: int) -> Split:
        """Hold out value *combinations* while every attribute value still occurs in training.

        Compositional generalisation (Chaabouni et al. 2020 style): a held-out object is a new
        combination of values that each were seen during training. Objects are visited in a seeded
        random order and held out as long as each of their values keeps at least one training
        object, until round(fraction * n_objects) are held out. Needs >= 2 attributes.
        """
        n = self._n_holdout(fraction)
        if self.n_attributes < 2:
            raise ValueError(
                f"systematic split: needs n_attributes >= 2 to hold out combinations, "
                f"got {self.n_attributes}"
            )
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.n_objects, generator=generator).tolist()
        attributes = self.objects().tolist()
        # How many training objects carry each (attribute, value).
        counts = [[0] * v for v in self.n_values]
        for obj in attributes:
            for i, value in enumerate(obj):
                counts[i][value] += 1
        held: list[int] = []
        for index in order:
            if len(held) == n:
                break
            obj = attributes[index]
            if all(counts[i][value] > 1 for i, value in enumerate(obj)):
                for i, value in enumerate(obj):
                    counts[i][value] -= 1
                held.append(index)
        if len(held) < n:
            raise ValueError(
                f"holdout fraction={fraction!r}: a systematic split of {self} can hold out at most "
                f"{len(held)} objects while keeping every value in training, {n} requested"
            )
        holdout = torch.tensor(sorted(held), dtype=torch.long)
        mask = torch.ones(self.n_objects, dtype=torch.bool)
        mask[holdout] = False
        return Split(train=torch.nonzero(mask).squeeze(1), holdout=holdout)

    def split(self, kind: str, fraction: float, seed: int) -> Split:
        """`kind` = "none" (everything trains), "random" or "systematic"."""
        if kind == "none":
            return Split(train=torch.arange(self.n_objects), holdout=torch.zeros(0, dtype=torch.long))
        if kind == "random":
            return self.random_split(fraction, seed)
        if kind == "systematic":
            return self.systematic_split(fraction, seed)
        raise ValueError(f"holdout={kind!r}: must be one of 'none', 'random', 'systematic'")


class CandidateSampler:
    """Draws referential-game instances: K distinct candidates with the target at a uniform slot.

    `targets` is the pool targets are drawn from (e.g. the training split), `distractors` the pool
    distractors come from (defaults to `targets`). With `easy_limit=k`, an instance holds at most k
    "easy" distractors (objects differing from the target in every attribute); the others share at
    least one attribute value with it. All work is batched tensor ops on the generator's device.
    """

    def __init__(
        self,
        space: ObjectSpace,
        n_candidates: int,
        *,
        targets: torch.Tensor | None = None,
        distractors: torch.Tensor | None = None,
        easy_limit: int | None = None,
        device: torch.device | str = "cpu",
    ):
        device = torch.device(device)
        targets = torch.arange(space.n_objects) if targets is None else targets.long().cpu()
        distractors = targets if distractors is None else distractors.long().cpu()
        if targets.numel() == 0:
            raise ValueError("targets: the target pool is empty")
        if not (2 <= n_candidates <= distractors.numel()):
            raise ValueError(
                f"n_candidates={n_candidates}: must be in [2, {distractors.numel()}] "
                f"(the number of objects candidates are drawn from)"
            )
        if easy_limit is not None and not (0 <= easy_limit <= n_candidates - 1):
            raise ValueError(f"easy_limit={easy_limit}: must be in [0, {n_candidates - 1}] or None")
        self.space = space
        self.n_candidates = n_candidates
        self.easy_limit = easy_limit
        self._check_feasible(targets, distractors)
        self.targets = targets.to(device)
        space.keep_tables(device)  # the batches drawn here are encoded on this device
        self.distractors = distractors.to(device)
        # Attribute tables live on the device so sampling needs no host-to-device copies.
        self.target_attributes = space.attributes_of(self.targets)
        self.distractor_attributes = space.attributes_of(self.distractors)
        # Each target's relations to the distractor pool, looked up per batch when the table is
        # small (comparing attributes per batch was a third of a training step's sampling).
        self._relations = None
        if self.targets.numel() * self.distractors.numel() <= TABLE_LIMIT:
            self._relations = self.distractor_relations(self.target_attributes, self.distractor_attributes)

    def distractor_relations(self, target_attr: torch.Tensor, distractors_attr: torch.Tensor):
        """[..., P] masks: distractor differs from the target; distractor is easy (shares nothing)."""
        shared = (target_attr.unsqueeze(-2) == distractors_attr).sum(-1)
        return shared < self.space.n_attributes, shared == 0

    def _check_feasible(self, targets: torch.Tensor, distractors: torch.Tensor) -> None:
        """Every target must have n_candidates - 1 admissible distractors (checked in chunks)."""
        distractors_attr = self.space.attributes_of(distractors)
        for chunk in torch.split(targets, 1024):
            different, easy = self.distractor_relations(self.space.attributes_of(chunk), distractors_attr)
            if self.easy_limit is not None:
                usable = (different & ~easy).sum(1) + easy.sum(1).clamp(max=self.easy_limit)
            else:
                usable = different.sum(1)
            worst = int(usable.min())
            if worst < self.n_candidates - 1:
                bad = int(chunk[usable.argmin()])
                raise ValueError(
                    f"n_candidates={self.n_candidates}: target object {bad} has only {worst} "
                    f"admissible distractors (easy_limit={self.easy_limit}), "
                    f"{self.n_candidates - 1} needed"
                )

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidates [B, K] object indices, target_position [B] Long); targets drawn uniformly."""
        return self.arrange(*self.draw(batch_size, generator))

    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """The random draws of `sample`, in its order: target rows [B], distractor keys [B, P],
        target positions [B]. Kept apart from `arrange` so that many runs' draws (each from its own
        generator) can be arranged in one call."""
        device = self.targets.device
        row = torch.randint(self.targets.numel(), (batch_size,), generator=generator, device=device)
        keys = torch.rand(batch_size, self.distractors.numel(), generator=generator, device=device)
        position = torch.randint(self.n_candidates, (batch_size,), generator=generator, device=device)
        return row, keys, position

    def arrange(self, row: torch.Tensor, keys: torch.Tensor, position: torch.Tensor):
        """Candidate sets from `draw`'s draws, for any leading dimensions (e.g. [S, B] for S runs)."""
        if self._relations is None:
            relations = self.distractor_relations(self.target_attributes[row], self.distractor_attributes)
        else:
            relations = (self._relations[0][row], self._relations[1][row])
        return self._arrange(self.targets[row], relations, keys, position)

    def sample_for(self, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate sets for the given target objects (indices [B]), e.g. fixed evaluation sets."""
        targets = targets.to(self.targets.device)
        device = self.targets.device
        keys = torch.rand(targets.shape[0], self.distractors.numel(), generator=generator, device=device)
        position = torch.randint(self.n_candidates, (targets.shape[0],), generator=generator, device=device)
        relations = self.distractor_relations(self.space.attributes_of(targets), self.distractor_attributes)
        return self._arrange(targets, relations, keys, position)

    def _arrange(self, target: torch.Tensor, relations: tuple[torch.Tensor, torch.Tensor], keys: torch.Tensor,
                 position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`relations`: the (different, easy) masks of each target against the distractor pool."""
        k = self.n_candidates
        different, easy = relations
        # Random keys give a uniformly random order of the distractor pool per instance.
        keys = keys.masked_fill(~different, -1.0)
        if self.easy_limit is not None:
            # Walk the pool in key order; easy objects after the first `easy_limit` are excluded,
            # so the k-1 drawn distractors hold at most `easy_limit` easy ones.
            order = keys.argsort(dim=-1, descending=True)
            easy_sorted = easy.gather(-1, order)
            rank = easy_sorted.cumsum(-1)
            excluded_sorted = easy_sorted & (rank > self.easy_limit)
            excluded = torch.zeros_like(excluded_sorted).scatter_(-1, order, excluded_sorted)
            keys = keys.masked_fill(excluded, -1.0)
        chosen = keys.topk(k - 1, dim=-1).indices
        drawn = self.distractors[chosen]  # [..., k-1], in random order
        slot = torch.arange(k, device=keys.device)
        # Distractor j goes to slot j if j < position, else to slot j + 1.
        source = (slot - (slot > position.unsqueeze(-1)).long()).clamp(max=k - 2)
        candidates = torch.where(slot == position.unsqueeze(-1), target.unsqueeze(-1), drawn.gather(-1, source))
        return candidates, position


def sample_objects(pool: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` object indices drawn uniformly with replacement from `pool` (on its device)."""
    row = torch.randint(pool.numel(), (batch_size,), generator=generator, device=pool.device)
    return pool[row]
