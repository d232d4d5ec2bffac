"""The fresh listener's learning curves of runs made with `--ease-of-teaching`.

Each generation record holds `ease_of_teaching_curve` (greedy accuracy) at `ease_of_teaching_steps`
(the listener's iterations, from 0). `python -m analysis.plot RUNS --metric ease_of_teaching_curve`
draws one panel per generation, one line per experiment (mean over seeds, band: min to max), on a
log axis so the first steps show, and prints the numbers as a markdown table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .figures import label_axes, new_figure
from .runs import run_labels

CURVE = "ease_of_teaching_curve"
STEPS = "ease_of_teaching_steps"

Curves = dict[str, dict[int, tuple[list[int], list[list[float]]]]]  # label -> generation -> (steps, curves)


def collect(runs: list[dict[str, Any]]) -> Curves:
    """label -> generation -> (steps, one curve per seed); a ValueError naming the run whose
    records lack the curve's steps (made before step 0 was recorded) or disagree on them."""
    out: Curves = defaultdict(dict)
    for run, label in zip(runs, run_labels(runs)):
        for record in run["records"]:
            if CURVE not in record:
                continue
            steps = record.get(STEPS)
            if steps is None:
                raise ValueError(f"{run['path']}: its records hold {CURVE} without {STEPS} (made before step 0 "
                                 "was recorded); rerun with --ease-of-teaching")
            known = out[label].setdefault(int(record["generation"]), (list(steps), []))
            if known[0] != list(steps):
                raise ValueError(f"{run['path']}: other {STEPS} than the other runs of {label}")
            known[1].append(list(record[CURVE]))
    if not out:
        raise ValueError(f"--metric {CURVE}: no run records it; run the games with --ease-of-teaching")
    return dict(out)


def table(data: Curves) -> str:
    lines: list[str] = []
    for label, generations in sorted(data.items()):
        for generation, (steps, curves) in sorted(generations.items()):
            if not lines:
                lines.append("| experiment | generation | seeds | " + " | ".join(f"step {s}" for s in steps) + " |")
                lines.append("|" + "---|" * (len(steps) + 3))
            mean = np.mean(curves, axis=0)
            lines.append(f"| {label} | {generation} | {len(curves)} | " + " | ".join(f"{m:.2f}" for m in mean) + " |")
    return "\n".join(lines)


def figure(data: Curves, title: str | None = None) -> Any:
    generations = sorted({g for gens in data.values() for g in gens})
    fig, axes = new_figure(1, len(generations), figsize=(3.2 * len(generations), 3.4), sharey=True)
    for ax, generation in zip(axes[0], generations):
        for label, gens in sorted(data.items()):
            if generation not in gens:
                continue
            steps, curves = gens[generation]
            curves = np.asarray(curves, dtype=float)
            x = np.asarray(steps) + 1  # a log axis: step 0 is drawn at 1
            line, = ax.plot(x, curves.mean(0), marker="o", markersize=3, label=f"{label} (n={len(curves)})")
            ax.fill_between(x, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_title(f"after generation {generation}", fontsize=9)
        label_axes(ax, "fresh listener's iterations + 1", "greedy accuracy" if ax is axes[0][0] else "")
    axes[0][-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title or "Ease of teaching: mean over seeds, band min to max", fontsize=10)
    return fig
