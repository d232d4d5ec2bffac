"""Metric-against-generation curves aggregated over seeds, one per strategy."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .runs import run_label
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
    """Group runs by label and average `metric` at each x over the runs (seeds) that recorded it."""
    grouped: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    seen_metric = False
    for run in runs:
        label = run_label(run)
        for record in run["records"]:
            if metric in record:
                seen_metric = True
            value = record.get(metric)
            if record.get(x) is None or value is None:
                continue
            grouped[label][float(record[x])].append(float(value))
    if runs and not seen_metric:
        available = sorted({k for run in runs for r in run["records"] for k in r})
        raise ValueError(f"--metric: no run records '{metric}'; recorded keys are {available}")
    curves = []
    for label in sorted(grouped):
        xs = sorted(grouped[label])
        stats = [mean_ci(grouped[label][v], confidence) for v in xs]
        curves.append(Curve(label, xs, [s[0] for s in stats], [s[1] for s in stats], [s[2] for s in stats]))
    return curves


def final_values(runs: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """Per label, the last recorded finite value of `metric` in each run."""
    out: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        values = [r.get(metric) for r in run["records"] if r.get(metric) is not None]
        values = [float(v) for v in values if math.isfinite(float(v))]
        if values:
            out[run_label(run)].append(values[-1])
    return dict(out)


def window_means(runs: list[dict[str, Any]], metric: str, *, since: float, x: str = "iteration") -> dict[str, list[float]]:
    """Per label, each run's mean of `metric` over its records with `x` >= `since` (finite values
    only): a steadier summary than the last value when a metric swings from generation to generation."""
    out: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        values = [float(r[metric]) for r in run["records"]
                  if r.get(x) is not None and r[x] >= since and r.get(metric) is not None
                  and math.isfinite(float(r[metric]))]
        if values:
            out[run_label(run)].append(sum(values) / len(values))
    return dict(out)
