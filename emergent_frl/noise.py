"""Where agents get their randomness: a live `torch.Generator`, or the same draws fixed in advance.

Agents sample through `exponential_noise` / `sample_categorical` and pass on whatever they were
given as `generator`. A single run gives a `torch.Generator`; training many runs as one computation
(`emergent_frl.stacked`) draws each run's noise from that run's own generator, in the order and
shapes the single run would, and hands the agents a `NoiseTape` holding those draws. So run i of a
batch consumes exactly the random stream of the same seed trained alone, and the agents' code is
the same in both cases: nothing random happens inside the batched computation.
"""

from __future__ import annotations

from typing import Sequence

import torch


class NoiseTape:
    """Exp(1) draws made in advance, handed out in the order the agents ask for them."""

    def __init__(self, draws: Sequence[torch.Tensor]):
        self.draws = list(draws)
        self.position = 0

    def exponential(self, like: torch.Tensor) -> torch.Tensor:
        if self.position >= len(self.draws):
            raise RuntimeError(f"the agents asked for more random draws than the {len(self.draws)} a training "
                               "step made before (their number must not depend on the data)")
        draw = self.draws[self.position]
        if draw.shape != like.shape:
            raise RuntimeError(f"random draw {self.position}: the agents asked for shape {tuple(like.shape)}, "
                               f"a training step drew {tuple(draw.shape)} (shapes must not depend on the data)")
        self.position += 1
        return _positive(draw)


class DrawRecorder:
    """Stands in for a generator once, to learn which draws (shape, dtype) a training step makes.
    Returns ones (a valid Exp(1) value), so the step runs as usual."""

    def __init__(self):
        self.shapes: list[tuple[tuple[int, ...], torch.dtype]] = []

    def exponential(self, like: torch.Tensor) -> torch.Tensor:
        self.shapes.append((tuple(like.shape), like.dtype))
        return torch.ones_like(like)


Randomness = torch.Generator | NoiseTape | DrawRecorder | None


def exponential_noise(like: torch.Tensor, generator: Randomness) -> torch.Tensor:
    """Exp(1) draws (> 0) shaped like `like`; -log of them is Gumbel noise."""
    if isinstance(generator, (NoiseTape, DrawRecorder)):
        return generator.exponential(like)
    return _positive(torch.empty_like(like).exponential_(generator=generator))


def _positive(noise: torch.Tensor) -> torch.Tensor:
    """Exp(1) draws can round to 0; the smallest positive float stands in (its log is finite)."""
    return noise.clamp_min(torch.finfo(noise.dtype).tiny)


def draw_noise(shapes: Sequence[tuple[tuple[int, ...], torch.dtype]], generator: torch.Generator,
               device: torch.device) -> list[torch.Tensor]:
    """The draws of `shapes` from `generator`, one call each, in order: what the agents would draw
    live during one step, for a `NoiseTape` (which makes them positive as it hands them out, inside
    the possibly compiled step, where that fuses)."""
    return [torch.empty(shape, dtype=dtype, device=device).exponential_(generator=generator)
            for shape, dtype in shapes]


def sample_categorical(logits: torch.Tensor, generator: Randomness) -> torch.Tensor:
    """One draw per row from softmax(logits) by the Gumbel-max trick (no host sync, seeded)."""
    return (logits - exponential_noise(logits, generator).log()).argmax(-1)


def one_hot(symbol: torch.Tensor, n: int, dtype: torch.dtype) -> torch.Tensor:
    """F.one_hot without its range check (a host sync on a GPU; no batching rule under vmap)."""
    return (symbol.unsqueeze(-1) == torch.arange(n, device=symbol.device)).to(dtype)
