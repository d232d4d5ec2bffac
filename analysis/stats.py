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
