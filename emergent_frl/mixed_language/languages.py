"""Target languages for the imitation experiment: compositional, permuted, and a mix of the two.

The paper's language-side test of "forgetting removes undesirable information" (Zhou et al. 2022,
ease_of_teaching/mixed_language_forget*.py) has a speaker imitate a language in which some objects
get a perfectly compositional message (symbol i names attribute i) and the others a permutation
of those messages, which is not compositional. Forgetting should hurt the permuted part more.

Codes (`compositional_messages`):
- "direct" (the paper's): one symbol per attribute, symbol i = value of attribute i. It needs
  max_len == n_attributes and vocab_size >= max(n_values), otherwise it is a ValueError that says
  so and names the mixed-radix length the space would need.
- "mixed_radix": attribute i written as d_i = ceil(log_V n_i) base-V digits (V = vocab_size),
  most significant first, the blocks in attribute order, padded with symbol 0 up to max_len. It
  fits whenever sum(d_i) <= max_len, and equals "direct" where "direct" fits. An attribute with a
  single value gets no digit (it carries no information).

The permuted part (`derangement`): the messages the permuted objects would have under the code
are shuffled among those same objects, so the language stays one-to-one, and each object gets the
message of an object with which it shares NO attribute value (attributes with one value aside).
No permuted object thus keeps any of its own attribute symbols; the paper shuffles all messages
of the space, so some of its "permuted" objects keep their own message or share one with a
compositional object. The shuffle is a random minimum-cost assignment (scipy's
linear_sum_assignment on random costs, forbidden pairs excluded), drawn from a seeded generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from emergent_frl.objects import ObjectSpace

CODES = ("direct", "mixed_radix")


def digits_per_attribute(n_values: tuple[int, ...], vocab_size: int) -> tuple[int, ...]:
    """Base-`vocab_size` digits each attribute needs: the smallest d with vocab_size**d >= n."""
    if vocab_size < 2:
        raise ValueError(f"vocab_size={vocab_size}: must be >= 2")
    out = []
    for n in n_values:
        d = 0
        while vocab_size**d < n:
            d += 1
        out.append(d)
    return tuple(out)


def check_code(space: ObjectSpace, vocab_size: int, max_len: int, code: str) -> None:
    """ValueError (naming what to change) when `code` cannot write `space` in messages of
    `max_len` symbols from `vocab_size` symbols."""
    if code not in CODES:
        raise ValueError(f"code={code!r}: must be one of {list(CODES)}")
    needed = sum(digits_per_attribute(space.n_values, vocab_size))
    if code == "direct":
        problems = []
        if max_len != space.n_attributes:
            problems.append(f"max_len == n_attributes ({space.n_attributes}), got max_len={max_len}")
        if vocab_size < max(space.n_values):
            problems.append(f"vocab_size >= max(n_values) ({max(space.n_values)}), got vocab_size={vocab_size}")
        if problems:
            hint = (f"code 'mixed_radix' fits here (it needs max_len >= {needed})" if needed <= max_len
                    else f"code 'mixed_radix' would need max_len >= {needed}")
            raise ValueError(f"code 'direct' (one symbol per attribute) needs {' and '.join(problems)}; {hint}")
    elif needed > max_len:
        raise ValueError(f"code 'mixed_radix' writes {space} in {needed} base-{vocab_size} digits, "
                         f"more than max_len={max_len}; raise max_len or vocab_size")


def compositional_messages(space: ObjectSpace, vocab_size: int, max_len: int, code: str = "direct") -> torch.Tensor:
    """Long [n_objects, max_len]: each object's message under `code` (objects in the space's
    lexicographic order)."""
    check_code(space, vocab_size, max_len, code)
    attributes = space.objects()
    if code == "direct":
        return attributes.clone()
    columns = []
    for i, d in enumerate(digits_per_attribute(space.n_values, vocab_size)):
        for place in reversed(range(d)):  # most significant digit first
            columns.append(torch.div(attributes[:, i], vocab_size**place, rounding_mode="floor") % vocab_size)
    message = torch.zeros(space.n_objects, max_len, dtype=torch.long)
    if columns:
        message[:, : len(columns)] = torch.stack(columns, 1)
    return message


def informative_attributes(space: ObjectSpace) -> torch.Tensor:
    """Bool [n_attributes]: attributes with more than one value (the others tell objects nothing)."""
    return torch.tensor([n > 1 for n in space.n_values])


def share_nothing(space: ObjectSpace, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bool [len(a), len(b)]: objects a[i] and b[j] agree on no informative attribute."""
    informative = informative_attributes(space)
    same = space.attributes_of(a).unsqueeze(1) == space.attributes_of(b).unsqueeze(0)
    return ~(same & informative).any(-1)


def derangement(space: ObjectSpace, objects: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Long [len(objects)]: source[j] is the object among `objects` whose compositional message
    objects[j] gets; a permutation of `objects` in which each object and its source share no
    attribute value. ValueError when no such permutation exists."""
    objects = objects.long().cpu()
    allowed = share_nothing(space, objects, objects).numpy()
    costs = torch.rand(len(objects), len(objects), generator=generator, dtype=torch.float64).numpy()
    big = float(len(objects)) + 1.0  # more than any assignment of allowed pairs can cost
    rows, cols = linear_sum_assignment(np.where(allowed, costs, big)) if len(objects) else ([], [])
    if len(objects) == 0 or not allowed[rows, cols].all():
        raise ValueError(
            f"compositional_fraction: the {len(objects)} permuted objects of {space} cannot swap messages so that "
            "each gets the message of an object sharing no attribute value with it; lower "
            "compositional_fraction (more permuted objects) or use a larger space")
    source = torch.empty(len(objects), dtype=torch.long)
    source[torch.as_tensor(rows)] = objects[torch.as_tensor(cols)]
    return source


@dataclass(frozen=True)
class MixedLanguage:
    """A target language over every object of a space.

    messages: Long [n_objects, max_len], the message each object must produce.
    compositional: Bool [n_objects], True where the message is the object's code message.
    code_messages: Long [n_objects, max_len], every object's message under the code.
    """

    space: ObjectSpace
    messages: torch.Tensor
    compositional: torch.Tensor
    code_messages: torch.Tensor
    code: str

    @property
    def halves(self) -> dict[str, torch.Tensor]:
        """Object indices of the compositional and the permuted half."""
        return {"compositional": torch.nonzero(self.compositional).squeeze(1),
                "permuted": torch.nonzero(~self.compositional).squeeze(1)}

    def to_json(self) -> dict[str, Any]:
        """Object -> message table with each object's half, for RUN/language.json."""
        attributes = self.space.objects().tolist()
        return {"code": self.code, "n_values": list(self.space.n_values), "objects": [
            {"object": attributes[i], "message": self.messages[i].tolist(),
             "half": "compositional" if bool(self.compositional[i]) else "permuted"}
            for i in range(self.space.n_objects)]}


def mixed_language(space: ObjectSpace, vocab_size: int, max_len: int, compositional_fraction: float,
                   generator: torch.Generator, code: str = "direct") -> MixedLanguage:
    """round(fraction * n_objects) objects, drawn at random, keep their code message; the others
    get a `derangement` of theirs. fraction 1: fully compositional; 0: fully permuted."""
    if not (isinstance(compositional_fraction, (int, float)) and 0.0 <= compositional_fraction <= 1.0):
        raise ValueError(f"compositional_fraction={compositional_fraction!r}: must be in [0, 1]")
    code_messages = compositional_messages(space, vocab_size, max_len, code)
    n_compositional = math.floor(compositional_fraction * space.n_objects + 0.5)
    order = torch.randperm(space.n_objects, generator=generator)
    compositional = torch.zeros(space.n_objects, dtype=torch.bool)
    compositional[order[:n_compositional]] = True
    permuted = order[n_compositional:].sort().values
    messages = code_messages.clone()
    if permuted.numel():
        messages[permuted] = code_messages[derangement(space, permuted, generator)]
    return MixedLanguage(space, messages, compositional, code_messages, code)
