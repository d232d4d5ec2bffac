"""Summaries, report and figure of language-forgetting runs (plain Python over the JSONL records;
numbers through analysis.stats, figures in the house style of analysis.figures).

Per seed, over the measurements of the second half of training (iteration > iterations / 2,
where both halves are learnt; one number per seed, steadier than the last measurement alone):
- drop of a half = exact match before forgetting - exact match after it (the mean over draws);
- gap = drop of the permuted half - drop of the compositional half (> 0: forgetting removes the
  permuted half first, the paper's expected finding); likewise the rise of the loss.
Forget-and-relearn runs add, per half and averaged over the forgetting events: exact match right
after the speaker was forgotten, one measurement later, and at the end of the relearning period.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from analysis.figures import label_axes, new_figure, save_figure
from analysis.stats import mean_ci, per_value_row

HALVES = ("compositional", "permuted")
COLORS = {"compositional": "tab:blue", "permuted": "tab:orange"}


def _value(summary: dict[str, Any] | None, metric: str) -> float:
    return math.nan if summary is None or summary.get(metric) is None else float(summary[metric])


def seed_summary(records: Sequence[dict[str, Any]], iterations: int) -> dict[str, float]:
    """One seed's numbers (see the module's docstring); nan where a half is empty."""
    late = [r for r in records if r["iteration"] > iterations / 2] or list(records[-1:])
    out: dict[str, float] = {}
    for half in HALVES:
        for metric in ("exact_match", "loss"):
            before = np.mean([_value(r["before"][half], metric) for r in late])
            after = np.mean([_value(r["after"][half], metric) for r in late])
            out[f"{metric}_before_{half}"], out[f"{metric}_after_{half}"] = float(before), float(after)
        out[f"drop_{half}"] = out[f"exact_match_before_{half}"] - out[f"exact_match_after_{half}"]
        out[f"loss_rise_{half}"] = out[f"loss_after_{half}"] - out[f"loss_before_{half}"]
    out["gap"] = out["drop_permuted"] - out["drop_compositional"]
    out["loss_gap"] = out["loss_rise_permuted"] - out["loss_rise_compositional"]
    out.update(relearn_summary(records))
    return out


def relearn_summary(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per half, the mean over forgetting events of exact match right after the event, one
    measurement later, and at the end of the period (just before the next event, or the end)."""
    events = [i for i, r in enumerate(records) if "relearn" in r]
    if not events:
        return {}
    out = {}
    ends = events[1:] + [len(records) - 1]
    for half in HALVES:
        out[f"relearn_after_{half}"] = float(np.mean([_value(records[i]["relearn"][half], "exact_match") for i in events]))
        out[f"relearn_next_{half}"] = float(np.mean([_value(records[min(i + 1, len(records) - 1)]["before"][half],
                                                            "exact_match") for i in events]))
        out[f"relearn_end_{half}"] = float(np.mean([_value(records[j]["before"][half], "exact_match") for j in ends]))
    return out


ROWS = (
    ("exact match before forgetting, compositional", "exact_match_before_compositional", False),
    ("exact match before forgetting, permuted", "exact_match_before_permuted", False),
    ("exact match after forgetting, compositional", "exact_match_after_compositional", False),
    ("exact match after forgetting, permuted", "exact_match_after_permuted", False),
    ("drop, compositional", "drop_compositional", True),
    ("drop, permuted", "drop_permuted", True),
    ("**gap** (drop permuted - drop compositional)", "gap", True),
    ("loss rise, compositional", "loss_rise_compositional", True),
    ("loss rise, permuted", "loss_rise_permuted", True),
    ("loss gap (rise permuted - rise compositional)", "loss_gap", True),
    ("relearn: exact match just after forgetting, compositional", "relearn_after_compositional", False),
    ("relearn: exact match just after forgetting, permuted", "relearn_after_permuted", False),
    ("relearn: one measurement later, compositional", "relearn_next_compositional", False),
    ("relearn: one measurement later, permuted", "relearn_next_permuted", False),
    ("relearn: end of each period, compositional", "relearn_end_compositional", False),
    ("relearn: end of each period, permuted", "relearn_end_permuted", False),
)


def report_table(summaries: Sequence[dict[str, float]]) -> str:
    """Markdown table: mean +- 95 % CI over seeds, and each seed's value."""
    lines = ["| quantity | seeds | mean ± 95 % CI | per seed |", "|---|---|---|---|"]
    for label, key, signed in ROWS:
        values = [s[key] for s in summaries if key in s and math.isfinite(s[key])]
        if values:
            lines.append(per_value_row(label, values, signed=signed))
    return "\n".join(lines)


def _band(ax: Any, x: Sequence[float], series: list[list[float]], **style: Any) -> None:
    """Mean over seeds with its 95 % CI as a shaded band."""
    stats = [mean_ci([s[i] for s in series]) for i in range(len(x))]
    mean = np.array([m for m, _, _ in stats])
    half = np.nan_to_num(np.array([h for _, h, _ in stats]))
    line, = ax.plot(x, mean, **style)
    ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.15, linewidth=0)


def plot_runs(runs: Sequence[list[dict[str, Any]]], out: str, title: str) -> None:
    """Exact match of both halves before and after forgetting, their drops and the gap, and (for
    forget-and-relearn runs) the relearning curves; mean and 95 % CI over seeds."""
    relearn = any("relearn" in r for r in runs[0])
    fig, axes = new_figure(1, 3 if relearn else 2, figsize=(15 if relearn else 10, 4))
    axes = axes[0]
    x = [r["iteration"] for r in runs[0]]
    for half in HALVES:
        for when, dash in (("before", "-"), ("after", "--")):
            _band(axes[0], x, [[_value(r[when][half], "exact_match") for r in run] for run in runs],
                  color=COLORS[half], linestyle=dash, label=f"{half}, {when}")
        _band(axes[1], x, [[_value(r["before"][half], "exact_match") - _value(r["after"][half], "exact_match")
                            for r in run] for run in runs], color=COLORS[half], label=f"drop, {half}")
    _band(axes[1], x, [[_value(r["before"]["permuted"], "exact_match") - _value(r["after"]["permuted"], "exact_match")
                        - _value(r["before"]["compositional"], "exact_match")
                        + _value(r["after"]["compositional"], "exact_match") for r in run] for run in runs],
          color="black", label="gap (permuted - compositional)")
    axes[1].axhline(0.0, color="grey", linewidth=0.8)
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylim(-1.05, 1.05)
    label_axes(axes[0], "iteration", "exact match (forgotten copies dashed)")
    label_axes(axes[1], "iteration", "drop in exact match")
    if relearn:
        steps, curves = _sawtooth(runs)
        for half in HALVES:
            _band(axes[2], steps, [curve[half] for curve in curves], color=COLORS[half], label=half)
        axes[2].set_ylim(-0.05, 1.05)
        label_axes(axes[2], "iteration", "exact match while relearning")
    save_figure(fig, out, title)


def _sawtooth(runs: Sequence[list[dict[str, Any]]]) -> tuple[list[float], list[dict[str, list[float]]]]:
    """The speaker's own exact match over training, with the drop at each forgetting event drawn
    as a vertical step (the event's iteration appears twice: before and right after)."""
    steps = []
    for r in runs[0]:
        steps.append(r["iteration"])
        if "relearn" in r:
            steps.append(r["iteration"])
    curves = []
    for run in runs:
        curve: dict[str, list[float]] = {half: [] for half in HALVES}
        for r in run:
            for half in HALVES:
                curve[half].append(_value(r["before"][half], "exact_match"))
                if "relearn" in r:
                    curve[half].append(_value(r["relearn"][half], "exact_match"))
        curves.append(curve)
    return steps, curves
