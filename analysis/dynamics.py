"""What happens inside generations: metric curves against iteration from each run's
evaluations.jsonl, every forgetting event marked, and the value right after forgetting
(`topsim_after_forgetting`, `accuracy_after_forgetting`) drawn as the drop it is.

evaluations.jsonl carries neither strategy nor seed; both come from the run's config.json, and runs
group as everywhere in analysis (runs.run_groups: strategy plus every differing config field). A run
that evaluated only at generation ends (--eval-every 0) is drawn from its generations.jsonl.

A forgetting event is a generation boundary where the strategy changed weights: a record whose
`*_forgotten_fraction` fields are positive, or, for strategies that record no fraction (iterated
learning, custom ones), any boundary of a strategy other than no_reset (its scores after forgetting
are then recorded). The language games forget after a generation's last iteration (the record's own
iteration); the image track records `forgotten_fraction` at the start of a generation (the boundary
is the previous record's x).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .curves import Curve
from .figures import add_note, label_axes, new_figure
from .runs import (EVALUATIONS_FILE, differences_note, is_number, number, position, read_records, run_labels,
                   strategy_of)
from .stats import clipped_band, mean_ci

AFTER = "_after_forgetting"
DEFAULT_METRICS = ("topsim", "accuracy")


@dataclass
class Boundary:
    """One forgetting event of an experiment, averaged over its runs: where it happened, and the
    metric just before and right after (mean, CI half-width, n; after is None when not recorded)."""

    generation: int
    x: float
    before: tuple[float, float, int]
    after: tuple[float, float, int] | None
    runs: int  # how many of the experiment's runs forgot here


@dataclass
class Dynamics:
    """An experiment's curve inside each generation (Curves keyed by generation) and its boundaries."""

    label: str
    segments: dict[int, Curve] = field(default_factory=dict)
    boundaries: list[Boundary] = field(default_factory=list)

    @property
    def n(self) -> int:
        return max((max(c.n) for c in self.segments.values() if c.n), default=0)


def evaluation_run(run: dict[str, Any]) -> dict[str, Any]:
    """The run's evaluations.jsonl as a run dict (so errors name that file and its line), each record
    given the run's strategy and seed from config.json; no records when the run wrote none."""
    file = run["path"] / EVALUATIONS_FILE
    numbered = read_records(file) if file.is_file() else []
    strategy, seed = strategy_of(run), run["config"].get("seed")
    return {**run, "records": [{"strategy": strategy, "seed": seed, **record} for _, record in numbered],
            "lines": [line for line, _ in numbered], "file": EVALUATIONS_FILE}


def inside_points(run: dict[str, Any], metric: str, x: str = "iteration") -> list[tuple[int, float, float]]:
    """(generation, x, value) of every evaluation of `metric`, plus the generation-end records that
    no evaluation covers (all of them for a run without evaluations.jsonl; the last point of a
    generation when --eval-every does not divide it)."""
    out, seen = [], set()
    for source in (evaluation_run(run), run):
        for i, record in enumerate(source["records"]):
            generation, at = record.get("generation"), position(source, i, x)
            if not is_number(generation) or at is None or (generation, at) in seen:
                continue
            seen.add((generation, at))
            value = number(source, i, metric)
            if value is not None:
                out.append((int(generation), at, value))
    return out


def forgot(record: dict[str, Any], strategy: str) -> bool:
    """Whether the boundary this generation record describes changed weights (see the module doc)."""
    fractions = [v for k, v in record.items() if k.endswith("forgotten_fraction") and is_number(v)]
    if fractions:
        return any(v > 0 for v in fractions)
    if strategy == "no_reset":
        return False
    return any(record.get(k) is not None for k in record if k.endswith(AFTER))


def forgetting_events(run: dict[str, Any], x: str = "iteration") -> list[tuple[int, float, int]]:
    """(generation, x of the boundary, index of the record that describes it) of every forgetting
    event of one loaded run, in order."""
    strategy = strategy_of(run)
    events = []
    for i, record in enumerate(run["records"]):
        if not forgot(record, strategy):
            continue
        if "forgotten_fraction" in record:  # image track: forgotten at the start of this generation
            if i == 0:
                continue
            at = position(run, i - 1, x)
        else:
            at = position(run, i, x)
        if at is not None:
            generation = record.get("generation")
            events.append((int(generation) if is_number(generation) else i, at, i))
    return events


def dynamics(runs: list[dict[str, Any]], metric: str, *, x: str = "iteration", confidence: float = 0.95,
             until: float | None = None) -> list[Dynamics]:
    """Per experiment: mean and CI of `metric` at each x inside each generation, over its runs, and
    its forgetting events with `metric` before and `metric`_after_forgetting right after (with
    `until`, only what happened at x <= until)."""
    inside: dict[str, dict[int, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    events: dict[str, dict[float, dict[str, Any]]] = defaultdict(dict)
    for run, label in zip(runs, run_labels(runs)):
        for generation, at, value in inside_points(run, metric, x):
            if until is None or at <= until:
                inside[label][generation][at].append(value)
        for generation, at, i in forgetting_events(run, x):
            if until is not None and at > until:
                continue
            event = events[label].setdefault(at, {"generation": generation, "before": [], "after": [], "runs": 0})
            event["runs"] += 1
            event["before"].append(number(run, i, metric))
            event["after"].append(number(run, i, metric + AFTER))
    out = []
    for label in sorted(set(inside) | set(events)):
        result = Dynamics(label)
        for generation in sorted(inside[label]):
            points = inside[label][generation]
            xs = sorted(points)
            stats = [mean_ci(points[v], confidence) for v in xs]
            result.segments[generation] = Curve(label, xs, [s[0] for s in stats], [s[1] for s in stats],
                                                [s[2] for s in stats])
        for at in sorted(events[label]):
            event = events[label][at]
            after = mean_ci(event["after"], confidence)
            result.boundaries.append(Boundary(event["generation"], at, mean_ci(event["before"], confidence),
                                              after if after[2] else None, event["runs"]))
        out.append(result)
    return out


def dynamics_figure(runs: list[dict[str, Any]], metrics: list[str] | tuple[str, ...] = DEFAULT_METRICS, *,
                    x: str = "iteration", confidence: float = 0.95, title: str | None = None,
                    until: float | None = None) -> Any:
    """One panel per metric: each experiment's curve inside every generation (band: CI over seeds,
    clipped to the metric's range), a dashed vertical line at every forgetting event, and where the
    run recorded `metric`_after_forgetting, a triangle at the value right after forgetting joined to
    the value before it and to the next generation's curve. Returns the Figure (nothing written)."""
    fig, axes = new_figure(1, len(metrics), figsize=(6.2 * len(metrics), 4.3))
    n_max = 0
    for ax, metric in zip(axes[0], metrics):
        found = dynamics(runs, metric, x=x, confidence=confidence, until=until)
        marked: set[float] = set()
        for index, result in enumerate(found):
            color = f"C{index % 10}"  # one colour per experiment, the same in every panel
            n_max = max(n_max, result.n)
            _draw(ax, result, metric, color)
            for boundary in result.boundaries:
                if boundary.x not in marked:
                    marked.add(boundary.x)
                    ax.axvline(boundary.x, color="0.45", linestyle="--", linewidth=0.8, alpha=0.7, zorder=0)
        if marked:
            ax.plot([], [], color="0.45", linestyle="--", linewidth=0.8, label="forgetting")
        if any(b.after for result in found for b in result.boundaries):
            ax.plot([], [], linestyle="none", marker="v", color="0.3", label=f"right after forgetting ({metric}{AFTER})")
        label_axes(ax, x, metric)
    if title is None:
        title = (f"inside generations: mean and {int(round(confidence * 100))} % CI over seeds" if n_max > 1
                 else "inside generations: one run per curve")
    fig.suptitle(title)
    add_note(fig, differences_note(runs))
    return fig


def _draw(ax: Any, result: Dynamics, metric: str, color: str) -> None:
    """One experiment: a line per generation (started at the previous boundary's after-forgetting
    value when recorded, so the curve shows the drop and the relearning), bands, drop markers."""
    after_at = {b.generation: b for b in result.boundaries}
    first = True
    for generation, curve in sorted(result.segments.items()):
        xs, means, halves = list(curve.x), list(curve.mean), list(curve.half_width)
        previous = after_at.get(generation - 1)
        if previous is not None and previous.after is not None:
            xs, means, halves = [previous.x] + xs, [previous.after[0]] + means, [previous.after[1]] + halves
        label = f"{result.label} (n={result.n})" if first else None
        first = False
        ax.plot(xs, means, color=color, marker="o", markersize=2.5, linewidth=1.4, label=label)
        lower, upper = clipped_band(means, halves, metric)
        ax.fill_between(xs, lower, upper, color=color, alpha=0.18, linewidth=0)
    for boundary in result.boundaries:
        if boundary.after is None:
            continue
        before, after = boundary.before[0], boundary.after[0]
        if math.isfinite(before):
            ax.plot([boundary.x, boundary.x], [before, after], color=color, linestyle=":", linewidth=1.2)
        lower, upper = clipped_band([after], [boundary.after[1]], metric)
        ax.errorbar([boundary.x], [after], yerr=[[after - lower[0]], [upper[0] - after]], color=color,
                    marker="v", markersize=6, linestyle="none", capsize=2)
        if boundary.after[2] < boundary.runs:  # some runs had no value right after (e.g. a constant language)
            ax.annotate(f"n={boundary.after[2]}", (boundary.x, after), xytext=(4, -10), textcoords="offset points",
                        fontsize=7, color=color)
