"""Which entries are forgotten: boolean masks (True = KEPT) over selected parameters.

Masks are plain ``dict[name -> BoolTensor]`` used with ``torch.where``; they are never applied in
the forward pass (unlike ``torch.nn.utils.prune``), they only say what a forgetting step keeps.

Counts use exact decimal arithmetic on the fraction as written (``Fraction(repr(x))``), so
``keep_fraction=0.8`` on 100 entries forgets exactly 20: the reference's float ``int(n*(1-keep))``
would give 19 there, and ``ceil(0.7*10)`` in floats would give 8 kernels instead of 7.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Mapping

import torch
from torch import Tensor, nn

MASK_KINDS = ("all", "bernoulli", "magnitude", "kels", "wels")
SCOPES = ("tensor", "global")
TIMINGS = ("each", "once_init", "once_trained")


def _exact(x: float) -> Fraction:
    return Fraction(repr(float(x)))


def forgotten_count(n: int, keep_fraction: float) -> int:
    """Entries forgotten out of ``n`` when keeping ``keep_fraction``: floor(n * (1 - keep))."""
    return math.floor(n * (1 - _exact(keep_fraction)))


def split_count(n: int, split_rate: float) -> int:
    """Rows/columns in a KE fit hypothesis: ceil(split_rate * n)."""
    return math.ceil(n * _exact(split_rate))


@dataclass(frozen=True)
class MaskCriterion:
    """WHICH entries are forgotten (mask True = KEEP).

    kind: "all" forgets every selected entry; "bernoulli" keeps each entry with probability
        keep_fraction; "magnitude" keeps the keep_fraction largest |w| (floor(n*(1-keep)) smallest
        are forgotten); "kels" is Knowledge Evolution's kernel-level split (first ceil(r*out) x
        ceil(r*in) block kept, r = keep_fraction); "wels" its weight-level split, Bernoulli(r).
    scope: magnitude ranks per tensor or globally over all selected tensors.
    timing: "each" = a new mask at every forgetting step (from the current weights for magnitude);
        "once_init" = computed by ``prepare()`` from the initial weights, reused;
        "once_trained" = computed at the first forgetting step, reused.
    cumulative: IMP; each step forgets a further fraction of the previous survivors (needs
        timing="each"), so after g steps keep_fraction**g of the entries survive.
    """

    kind: Literal["all", "bernoulli", "magnitude", "kels", "wels"] = "all"
    keep_fraction: float = 0.0
    scope: Literal["tensor", "global"] = "tensor"
    timing: Literal["each", "once_init", "once_trained"] = "each"
    cumulative: bool = False

    def __post_init__(self) -> None:
        if self.kind not in MASK_KINDS:
            raise ValueError(f"MaskCriterion.kind={self.kind!r}; allowed: {', '.join(MASK_KINDS)}")
        k = self.keep_fraction
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k):
            raise ValueError(f"MaskCriterion.keep_fraction must be a number, got {k!r}")
        if self.kind in ("kels", "wels"):
            if not 0.0 < k <= 1.0:
                raise ValueError(
                    f"MaskCriterion.keep_fraction (the split rate for kind={self.kind!r}) = {k}; allowed range (0, 1]"
                )
        elif not 0.0 <= k <= 1.0:
            raise ValueError(f"MaskCriterion.keep_fraction={k}; allowed range [0, 1]")
        if self.kind == "all" and k != 0.0:
            raise ValueError(
                f"MaskCriterion.keep_fraction={k} with kind='all' (which forgets everything); "
                "use kind='bernoulli' or 'magnitude' to keep a fraction"
            )
        object.__setattr__(self, "keep_fraction", float(k))
        if self.scope not in SCOPES:
            raise ValueError(f"MaskCriterion.scope={self.scope!r}; allowed: {', '.join(SCOPES)}")
        if self.scope == "global" and self.kind != "magnitude":
            raise ValueError(f"MaskCriterion.scope='global' applies to kind='magnitude' only, got kind={self.kind!r}")
        if self.timing not in TIMINGS:
            raise ValueError(f"MaskCriterion.timing={self.timing!r}; allowed: {', '.join(TIMINGS)}")
        if not isinstance(self.cumulative, bool):
            raise ValueError(f"MaskCriterion.cumulative must be a bool, got {self.cumulative!r}")
        if self.cumulative and self.kind not in ("magnitude", "bernoulli"):
            raise ValueError(f"MaskCriterion.cumulative=True needs kind 'magnitude' or 'bernoulli', got {self.kind!r}")
        if self.cumulative and self.timing != "each":
            raise ValueError(f"MaskCriterion.cumulative=True needs timing='each', got {self.timing!r}")

    def compute(
        self,
        params: Mapping[str, Tensor],
        *,
        generator: torch.Generator,
        owners: Mapping[str, nn.Module] | None = None,
        survivors: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Masks (True = kept) for ``params`` (name -> tensor, registration order).

        owners: name -> owning module, used by "kels" (first conv, classifier). survivors: the
        previous masks; with ``cumulative`` only their True entries can be kept.
        """
        candidates = {n: _candidates(p, survivors, n) for n, p in params.items()} if self.cumulative else None
        if self.kind == "all":
            return {n: torch.zeros(p.shape, dtype=torch.bool, device=p.device) for n, p in params.items()}
        if self.kind in ("bernoulli", "wels"):
            out = {n: bernoulli_mask(p, self.keep_fraction, generator) for n, p in params.items()}
            if candidates is not None:
                out = {n: m & candidates[n] for n, m in out.items()}
            return out
        if self.kind == "magnitude":
            return magnitude_masks(params, self.keep_fraction, self.scope, candidates)
        return kels_masks(params, self.keep_fraction, owners or {})


def _candidates(p: Tensor, survivors: Mapping[str, Tensor] | None, name: str) -> Tensor:
    if survivors is None or name not in survivors:
        return torch.ones(p.shape, dtype=torch.bool, device=p.device)
    return survivors[name].to(device=p.device, dtype=torch.bool)


def bernoulli_mask(p: Tensor, keep_fraction: float, generator: torch.Generator) -> Tensor:
    """Keep each entry independently with probability keep_fraction (drawn on the generator's device)."""
    draw = torch.rand(p.shape, generator=generator, device=generator.device)
    return (draw < keep_fraction).to(p.device)


def _drop_smallest(scores: Tensor, candidates: Tensor, k: int) -> Tensor:
    """Flat bool mask: candidates minus the k smallest-score candidates (stable tie-break by index)."""
    kept = candidates.clone()
    if k <= 0:
        return kept
    index = candidates.nonzero().squeeze(1)
    order = torch.argsort(scores[index], stable=True)[:k]
    kept[index[order]] = False
    return kept


def magnitude_masks(
    params: Mapping[str, Tensor], keep_fraction: float, scope: str, candidates: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Keep the largest |w|: floor(n*(1-keep)) of the n candidate entries are forgotten."""
    flat_cand = {
        n: (candidates[n] if candidates is not None else torch.ones(p.shape, dtype=torch.bool, device=p.device)).reshape(-1)
        for n, p in params.items()
    }
    if scope == "tensor":
        out = {}
        for n, p in params.items():
            cand = flat_cand[n]
            k = forgotten_count(int(cand.sum()), keep_fraction)
            out[n] = _drop_smallest(p.detach().abs().reshape(-1), cand, k).reshape(p.shape)
        return out
    if not params:
        return {}
    device = next(iter(params.values())).device
    scores = torch.cat([p.detach().abs().reshape(-1).float().to(device) for p in params.values()])
    cand = torch.cat([c.to(device) for c in flat_cand.values()])
    kept = _drop_smallest(scores, cand, forgotten_count(int(cand.sum()), keep_fraction))
    out, start = {}, 0
    for n, p in params.items():
        out[n] = kept[start : start + p.numel()].reshape(p.shape).to(p.device)
        start += p.numel()
    return out


def kels_masks(params: Mapping[str, Tensor], split_rate: float, owners: Mapping[str, nn.Module]) -> dict[str, Tensor]:
    """Knowledge Evolution kernel-level split: the top-left ceil(r*out) x ceil(r*in) block is kept.

    A conv with <= 3 input channels (the RGB stem) keeps all inputs; the last Linear of the
    selection (the classifier) keeps all its output rows; 1-D tensors keep their first ceil(r*n).
    """
    linear_weights = [n for n, p in params.items() if isinstance(owners.get(n), nn.Linear) and p.ndim == 2]
    classifier = linear_weights[-1] if linear_weights else None
    out = {}
    for n, p in params.items():
        mask = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
        if p.ndim == 0:
            mask.fill_(True)
        elif p.ndim == 1:
            mask[: split_count(p.shape[0], split_rate)] = True
        else:
            owner = owners.get(n)
            out_dim, in_dim = (1, 0) if isinstance(owner, nn.modules.conv._ConvNd) and owner.transposed else (0, 1)
            keep = [split_count(p.shape[out_dim], split_rate), split_count(p.shape[in_dim], split_rate)]
            if n == classifier:
                keep[0] = p.shape[out_dim]
            if isinstance(owner, nn.modules.conv._ConvNd) and owner.in_channels <= 3:
                keep[1] = p.shape[in_dim]
            index = [slice(None)] * p.ndim
            index[out_dim], index[in_dim] = slice(0, keep[0]), slice(0, keep[1])
            mask[tuple(index)] = True
        out[n] = mask
    return out
