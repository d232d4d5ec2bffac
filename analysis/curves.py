"""Metric-against-generation curves aggregated over seeds, one per experiment (see runs.run_groups:
strategy plus every config field in which the runs differ)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .runs import points, require_key, run_labels
from .stats import mean_ci


@dataclass
class Curve:
    label: str
    x: list[float]
    mean: list[float]
    half_width: list[float]
    n: list[int]


def aggregate_curves(runs: list[dict[str, Any]], metric: str, *, x: str = "generation",
                     confidence: float = 0.95) -> list[Curve]:
    """Group runs by experiment and average `metric` at each x over the runs (seeds) that recorded it.

    A ValueError names --x or --metric when no run records it at all (a typo), or the file and line
    of a record whose value is not a number. A metric recorded only as null gives empty curves."""
    if runs:
        require_key(runs, x, "--x", numeric=False)
        require_key(runs, metric, "--metric", numeric=False)
    grouped: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run, label in zip(runs, run_labels(runs)):
        for at, value in points(run, metric, x):
            if at is not None:
                grouped[label][at].append(value)
    curves = []
    for label in sorted(grouped):
        xs = sorted(grouped[label])
        stats = [mean_ci(grouped[label][v], confidence) for v in xs]
        curves.append(Curve(label, xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats]))
    return curves


def final_value(run: dict[str, Any], metric: str) -> float | None:
    """The run's last finite value of `metric` (None when it recorded none)."""
    finite = [value for _, value in points(run, metric) if math.isfinite(value)]
    return finite[-1] if finite else None


def window_mean(run: dict[str, Any], metric: str, *, since: float, x: str = "iteration") -> float | None:
    """The run's mean of `metric` over its records with `x` >= `since`, finite values only."""
    finite = [value for at, value in points(run, metric, x)
              if at is not None and at >= since and math.isfinite(value)]
    return sum(finite) / len(finite) if finite else None


def final_values(runs: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """Per label, the last recorded finite value of `metric` in each run."""
    return _per_label(runs, [final_value(run, metric) for run in runs])


def window_means(runs: list[dict[str, Any]], metric: str, *, since: float, x: str = "iteration") -> dict[str, list[float]]:
    """Per label, each run's mean of `metric` over its records with `x` >= `since` (finite values
    only): a steadier summary than the last value when a metric swings from generation to generation."""
    return _per_label(runs, [window_mean(run, metric, since=since, x=x) for run in runs])


def _per_label(runs: list[dict[str, Any]], found: list[float | None]) -> dict[str, list[float]]:
    """The runs' values gathered under their group labels (labels computed over all runs at once)."""
    out: dict[str, list[float]] = defaultdict(list)
    for label, value in zip(run_labels(runs), found):
        if value is not None:
            out[label].append(value)
    return dict(out)
