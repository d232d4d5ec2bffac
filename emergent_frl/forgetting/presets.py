"""Named forgetting operators from the paper (Zhou et al. 2022, Table of operations, sec. 1.5)."""
from __future__ import annotations

from fractions import Fraction
from typing import Literal, Sequence

from .masks import MaskCriterion
from .operator import ForgettingOperator
from .reinit import ResetValue
from .selection import ParameterSelection


def full_reset(
    modules: Sequence[str] = ("",), *, optimizer_state: Literal["keep", "reset"] = "keep", seed: int = 0
) -> ForgettingOperator:
    """Everything in ``modules`` re-drawn from its initializer, norm layers and their running
    statistics included (Li & Bowling's receiver reset; pass optimizers with optimizer_state='reset'
    to also drop their Adam moments)."""
    return ForgettingOperator(
        ParameterSelection(modules=tuple(modules), include_norm=True),
        MaskCriterion("all"),
        ResetValue("reinit"),
        optimizer_state=optimizer_state,
        norm_statistics="reset",
        seed=seed,
    )


def partial_forgetting(
    keep_fraction: float,
    *,
    mask: Literal["magnitude", "bernoulli"] = "magnitude",
    timing: Literal["each", "once_init", "once_trained"] = "once_init",
    reset: Literal["reinit", "zero"] = "reinit",
    modules: Sequence[str] = ("",),
    scope: Literal["tensor", "global"] = "tensor",
    seed: int = 0,
) -> ForgettingOperator:
    """Keep ``keep_fraction`` of every selected tensor (biases and LSTM gates included), forget
    the rest. PBF = partial_forgetting(0.1) on both agents: keep the 10 % largest-at-init
    magnitudes (same mask every generation), re-initialize the other 90 %. Optimizer state is
    kept, as in the reference code."""
    if mask not in ("magnitude", "bernoulli"):
        raise ValueError(f"partial_forgetting mask={mask!r}; allowed: magnitude, bernoulli")
    if reset not in ("reinit", "zero"):
        raise ValueError(f"partial_forgetting reset={reset!r}; allowed: reinit, zero")
    return ForgettingOperator(
        ParameterSelection(modules=tuple(modules)),
        MaskCriterion(mask, keep_fraction, scope=scope, timing=timing),
        ResetValue(reset),
        seed=seed,
    )


def later_layer_forgetting(
    from_module: str, *, reverse: bool = False, fixed_seed: int | None = None, seed: int = 0
) -> ForgettingOperator:
    """LLF: re-initialize every weight (ndim >= 2) registered from ``from_module`` on
    (ResNet "layer4" -> layer4 convs incl. downsample, and fc.weight) with a fresh draw each
    generation; biases, BatchNorm parameters and running statistics are kept.
    reverse=True forgets the layers before ``from_module`` instead (early-layer forgetting);
    fixed_seed gives the same re-draw every generation (fixed-reinit ablation)."""
    return ForgettingOperator(
        ParameterSelection(from_module=from_module, invert=reverse, parameters="weights"),
        MaskCriterion("all"),
        ResetValue("reinit", fixed_seed=fixed_seed),
        seed=seed,
    )


def knowledge_evolution(
    split_rate: float,
    mode: Literal["kels", "wels"],
    *,
    reset: Literal["reinit", "zero"] = "reinit",
    new_mask: bool = False,
    seed: int = 0,
) -> ForgettingOperator:
    """KE (Taha et al. 2021): weights split into a fit hypothesis (kept) and a reset hypothesis
    (re-initialized every generation). The mask is fixed from init; new_mask=True redraws the
    WELS mask each generation (the reference's --reset_hypothesis). Biases and norm layers are
    kept."""
    if mode not in ("kels", "wels"):
        raise ValueError(f"knowledge_evolution mode={mode!r}; allowed: kels, wels")
    if reset not in ("reinit", "zero"):
        raise ValueError(f"knowledge_evolution reset={reset!r}; allowed: reinit, zero")
    return ForgettingOperator(
        ParameterSelection(parameters="weights"),
        MaskCriterion(mode, split_rate, timing="each" if new_mask else "once_init"),
        ResetValue(reset),
        seed=seed,
    )


def magnitude_pruning(
    prune_fraction: float = 0.2,
    *,
    rewind: bool = True,
    scope: Literal["tensor", "global"] = "tensor",
    modules: Sequence[str] = ("",),
    seed: int = 0,
) -> ForgettingOperator:
    """IMP (Frankle & Carbin 2019): each application prunes ``prune_fraction`` of the surviving
    weights with the smallest trained magnitude; pruned weights become 0 and are held there by
    ``after_step()``; survivors are rewound to the ``prepare()`` snapshot when rewind=True
    (call ``set_rewind_point()`` for late rewinding). After g rounds (1-prune)**g survive."""
    if isinstance(prune_fraction, bool) or not isinstance(prune_fraction, (int, float)) or not 0.0 <= prune_fraction <= 1.0:
        raise ValueError(f"magnitude_pruning prune_fraction={prune_fraction!r}; allowed range [0, 1]")
    keep = float(1 - Fraction(repr(float(prune_fraction))))  # 0.07 -> exactly 0.93, not 0.9299999999999999
    return ForgettingOperator(
        ParameterSelection(modules=tuple(modules), parameters="weights"),
        MaskCriterion("magnitude", keep, scope=scope, timing="each", cumulative=True),
        ResetValue("zero"),
        kept="rewind" if rewind else "keep",
        hold_forgotten_at_zero=True,
        seed=seed,
    )
