"""Summaries over seeds: mean and a Student-t confidence interval (few seeds are the norm here)."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
from scipy import stats


def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> tuple[float, float, int]:
    """Return (mean, half-width of the `confidence` interval, n) over the finite values.

    The half-width is nan with fewer than two values: one seed says nothing about spread.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = int(finite.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(finite.mean())
    if n < 2:
        return mean, math.nan, n
    sem = float(finite.std(ddof=1)) / math.sqrt(n)
    return mean, float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem, n


def per_value_row(label: str, values: list[float], confidence: float = 0.95, *, signed: bool = False) -> str:
    """A markdown table row: label, count, 'mean ± half-width', and every value (the per-seed view
    that shows whether one seed carries a mean)."""
    each = " ".join(f"{v:+.2f}" if signed else f"{v:.2f}" for v in values)
    return f"| {label} | {len(values)} | {format_mean_ci(values, confidence, signed=signed)} | {each} |"


def format_mean_ci(values: Iterable[float | None], confidence: float = 0.95, *, signed: bool = False) -> str:
    """'mean ± half-width' for a table cell; the mean alone for one value, '-' for none."""
    mean, half, n = mean_ci(values, confidence)
    if n == 0:
        return "-"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return text if math.isnan(half) else f"{text} ± {half:.3f}"


# -- the range a metric can take, so a confidence band never claims impossible values ----------------
_UNIT = (0.0, 1.0)
_SIGNED_UNIT = (-1.0, 1.0)
_NON_NEGATIVE = (0.0, math.inf)
_ANY = (-math.inf, math.inf)
_EXACT = {"topsim": _SIGNED_UNIT, "posdis": _UNIT, "bosdis": _UNIT, "distinct_messages": _NON_NEGATIVE,
          "forgotten_parameters": _NON_NEGATIVE, "seconds": _NON_NEGATIVE}


def metric_range(metric: str) -> tuple[float, float]:
    """(low, high) of the values `metric` can take, from its name: accuracies, posdis, bosdis and
    forgotten fractions in [0, 1], topsim (a rank correlation) in [-1, 1], entropies and counts
    >= 0, anything else (losses) unbounded. `X_after_forgetting` is X's range."""
    name = metric.removesuffix("_after_forgetting")
    if name in _EXACT:
        return _EXACT[name]
    if name.startswith("topsim"):
        return _SIGNED_UNIT
    if name.endswith(("accuracy", "_fraction")):
        return _UNIT
    if "entropy" in name:
        return _NON_NEGATIVE
    return _ANY


def clipped_band(means: Iterable[float], half_widths: Iterable[float], metric: str) -> tuple[list[float], list[float]]:
    """Lower and upper edges of mean +- half-width, clipped to `metric_range(metric)`: with two
    seeds a t interval is wide (t = 12.7), and 0.558 +- 2.217 must not draw topsim above 1. A nan
    half-width (one value) gives a band of zero width at the mean."""
    low, high = metric_range(metric)
    lower, upper = [], []
    for mean, half in zip(means, half_widths):
        half = 0.0 if math.isnan(half) else half
        lower.append(min(max(mean - half, low), high))
        upper.append(max(min(mean + half, high), low))
    return lower, upper
