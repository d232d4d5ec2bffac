"""Per-object difficulty probes for the referential game (the paper's `--track_examples`).

Forgetting is said to remove what is hard or unwanted first. The referential game's accuracy mixes
easy instances (distractors that differ from the target everywhere) with hard ones (distractors
that share a value with it); these probes score them apart. For every target object, fixed
candidate sets, built once from a seed:

- `probe_same_attr{a}`, one per attribute a: every distractor shares the target's value on
  attribute a (8 x 4: "hard_color" is a = 0, "hard_shape" a = 1). Where fewer than K - 1 other
  objects share that value, all of them are used and the remaining slots go to the objects that
  share the most other values with the target (ties at random): 8 x 4 with 5 candidates gives the
  paper's hard_color, 3 distractors of the target's color plus 1 of its shape. An attribute with a
  single value is skipped (every object shares it: the set would be `probe_random`).
- `probe_easy`: every distractor shares no value with the target (attributes with a single value
  aside). Skipped where some target has fewer than K - 1 such objects (e.g. 2 values per attribute).
- `probe_random`: K - 1 distinct distractors drawn uniformly from all other objects.

A skipped set is left out of the keys and named, with the reason, in `ProbeSets.skipped`
(`strict=True` raises a ValueError instead). Key names depend only on the space and K, so they
are stable across runs and evaluations of one configuration.

    sets = build_probe_sets(space, n_candidates=5, seed=0)   # tensors; sets.buffers() to register
    probe_accuracies(game, sets)   # {"probe_same_attr0": 0.97, "probe_same_attr1": 0.91, ...}

Cost: one greedy sender call on the distinct targets and one receiver call on all probe instances
(docs/RESULTS.md, section 7.2, gives the measured time on the paper preset).
Building is O(targets x objects) in chunks; pass `targets` to probe a sample of a large space.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from emergent_frl.objects import ObjectSpace

PREFIX = "probe_"
EASY, RANDOM = "easy", "random"
CHUNK = 256  # targets per chunk while building: chunk x n_objects keys in memory


def same_attribute_name(attribute: int) -> str:
    return f"same_attr{attribute}"


@dataclass(frozen=True)
class ProbeSets:
    """Fixed probe instances: row i is candidate set `candidates[i]` (object indices, Long [N, K])
    with the target at `position[i]`, belonging to set `names[set_index[i]]`. `notes`: what each
    set holds where it departs from its name; `skipped`: sets that cannot exist here, and why."""

    names: tuple[str, ...]
    candidates: torch.Tensor
    position: torch.Tensor
    set_index: torch.Tensor
    notes: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys `probe_accuracies` returns, in order."""
        return tuple(PREFIX + name for name in self.names)

    def targets(self) -> torch.Tensor:
        """Long [N]: the target object of each instance."""
        return self.candidates.gather(1, self.position.unsqueeze(1)).squeeze(1)

    def buffers(self) -> dict[str, torch.Tensor]:
        """The tensors, by buffer name, for `module.register_buffer(name, t, persistent=False)`."""
        return {"probe_candidates": self.candidates, "probe_position": self.position,
                "probe_set_index": self.set_index}

    def to(self, device: torch.device | str) -> "ProbeSets":
        return ProbeSets(self.names, self.candidates.to(device), self.position.to(device),
                         self.set_index.to(device), dict(self.notes), dict(self.skipped))


def _distractor_keys(space: ObjectSpace, kind: str, targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B, n_objects] keys: the K - 1 largest are the distractors; -inf = never (the target, or
    outside the set's pool). Uniform random keys in [0, 1) order objects within a tier."""
    everything = space.objects()
    target_attr = space.attributes_of(targets)
    same = target_attr.unsqueeze(1) == everything.unsqueeze(0)  # [B, n, A]
    informative = torch.tensor([n > 1 for n in space.n_values])
    keys = torch.rand(len(targets), space.n_objects, generator=generator)
    if kind == EASY:
        keys = keys.masked_fill((same & informative).any(-1), float("-inf"))
    elif kind != RANDOM:
        attribute = int(kind.removeprefix("same_attr"))
        tier = torch.where(same[..., attribute], float(space.n_attributes + 1), same.sum(-1).float())
        keys = keys + tier
    is_target = torch.arange(space.n_objects).unsqueeze(0) == targets.unsqueeze(1)
    return keys.masked_fill(is_target, float("-inf"))


def _instances(space: ObjectSpace, kind: str, targets: torch.Tensor, n_candidates: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidates [B, K], position [B]) of one set: the distractors the keys pick, the target at a
    uniformly drawn slot."""
    chunks = []
    for chunk in torch.split(targets, CHUNK):
        chunks.append(_distractor_keys(space, kind, chunk, generator).topk(n_candidates - 1, dim=1).indices)
    distractors = torch.cat(chunks)
    position = torch.randint(n_candidates, (len(targets),), generator=generator)
    slot = torch.arange(n_candidates).unsqueeze(0)
    source = (slot - (slot > position.unsqueeze(1)).long()).clamp(max=n_candidates - 2)
    candidates = torch.where(slot == position.unsqueeze(1), targets.unsqueeze(1), distractors.gather(1, source))
    return candidates, position


def _why_not(space: ObjectSpace, kind: str, n_candidates: int, targets: torch.Tensor) -> tuple[str | None, str | None]:
    """(reason the set cannot exist, or None; note on what it holds, or None)."""
    needed = n_candidates - 1
    if kind == EASY:
        everything = space.objects()
        informative = torch.tensor([n > 1 for n in space.n_values])
        fewest = min(int((~((space.attributes_of(chunk).unsqueeze(1) == everything.unsqueeze(0)) & informative)
                           .any(-1)).sum(1).min()) for chunk in torch.split(targets, CHUNK))
        if fewest < needed:
            return (f"some target has only {fewest} objects sharing no value with it; "
                    f"{needed} distractors are needed"), None
        return None, None
    if kind == RANDOM:
        return None, None
    attribute = int(kind.removeprefix("same_attr"))
    if space.n_values[attribute] == 1:
        return f"attribute {attribute} has a single value, so every object shares it (the set would be random)", None
    sharing = space.n_objects // space.n_values[attribute] - 1
    if sharing < needed:
        return None, (f"{sharing} of {needed} distractors share attribute {attribute}; the other "
                      f"{needed - sharing} share the most other values with the target")
    return None, None


def build_probe_sets(space: ObjectSpace, n_candidates: int, seed: int, *, targets: torch.Tensor | None = None,
                     repeats: int = 1, strict: bool = False) -> ProbeSets:
    """Every probe set that can exist for `space` with `n_candidates` candidates, `repeats`
    instances per target (default: every object of the space), drawn from `seed`."""
    if not 2 <= n_candidates <= space.n_objects:
        raise ValueError(f"n_candidates={n_candidates}: must be in [2, {space.n_objects}] (objects in {space})")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}: must be an integer >= 1")
    targets = torch.arange(space.n_objects) if targets is None else targets.long().cpu()
    if targets.numel() == 0 or int(targets.min()) < 0 or int(targets.max()) >= space.n_objects:
        raise ValueError(f"targets: must be a non-empty set of object indices in [0, {space.n_objects})")
    kinds = [same_attribute_name(a) for a in range(space.n_attributes)] + [EASY, RANDOM]
    generator = torch.Generator().manual_seed(seed)
    names, candidates, positions, index = [], [], [], []
    notes, skipped = {}, {}
    for kind in kinds:
        reason, note = _why_not(space, kind, n_candidates, targets)
        if reason is not None:
            if strict:
                raise ValueError(f"probe set {PREFIX}{kind} cannot exist for {space} with n_candidates={n_candidates}: "
                                 f"{reason}")
            skipped[PREFIX + kind] = reason
            continue
        if note is not None:
            notes[PREFIX + kind] = note
        c, p = _instances(space, kind, targets.repeat(repeats), n_candidates, generator)
        index.append(torch.full((len(p),), len(names), dtype=torch.long))
        names.append(kind)
        candidates.append(c)
        positions.append(p)
    return ProbeSets(tuple(names), torch.cat(candidates), torch.cat(positions), torch.cat(index), notes, skipped)


@contextlib.contextmanager
def greedy(*modules: nn.Module) -> Iterator[None]:
    """Every module (and submodule) in eval mode for the block, each one's own flag restored after."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


@torch.no_grad()
def probe_outcomes(game, sets: ProbeSets) -> dict[str, torch.Tensor]:
    """Per set, Bool [instances]: whether the greedy receiver picked the target (on the game's
    device). The sender speaks once per distinct target; the receiver reads every instance."""
    device = next(game.sender.parameters()).device
    space = game.space
    candidates, position = sets.candidates.to(device), sets.position.to(device)
    if candidates.shape[1] != game.n_candidates:
        raise ValueError(f"probe sets hold {candidates.shape[1]} candidates; the game shows {game.n_candidates}")
    unique, inverse = torch.unique(sets.targets().to(device), return_inverse=True)
    with greedy(game.sender, game.receiver):
        spoken = game.sender(space.encode_index(unique))
        length = spoken.length[inverse] if getattr(game.sender, "eos", False) else None
        chosen = game.receiver(spoken.symbols[inverse], space.encode_index(candidates), length).choice
    correct = chosen == position
    set_index = sets.set_index.to(device)
    return {PREFIX + name: correct[set_index == i] for i, name in enumerate(sets.names)}


def probe_accuracies(game, sets: ProbeSets) -> dict[str, float]:
    """Greedy accuracy per probe set, e.g. {"probe_same_attr0": ..., "probe_easy": ..., "probe_random": ...}."""
    return {key: float(correct.float().mean()) for key, correct in probe_outcomes(game, sets).items()}
