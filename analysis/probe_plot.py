"""Targeted-forgetting probe results: load probe.json files, summarize over seeds, plot.

    python -m analysis.probe_plot runs/probe --out probe.png [--metric accuracy]

A probe run directory holds `probe.json` (written by `python -m games.targeted_forgetting`):
{"config": {...}, "groups": [reference group, target group], "measurements": [{"step", "epoch",
"before": {group: {"n", "accuracy", "loss", "entropy", ...}}, "after": {...}}, ...]}.
The summary uses each run's last measurement: per group the metric before and after forgetting,
the *damage* forgetting did (accuracy: the drop, before - after; loss and entropy: the rise,
after - before; positive = worse), and the *gap*: how much more damage the target group
(mislabeled / hard) took than the reference group (clean / easy), each as mean +- Student-t CI over
the runs (seeds). `python -m analysis.plot PROBE_DIR` draws the same figure.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
from typing import Any, Iterable

from ._parser import ArgumentParser, confidence
from .cli import run_command
from .figures import image_target, label_axes, new_figure, save_figure
from .runs import describe, is_number, read_object
from .stats import mean_ci

PROG = "python -m analysis.probe_plot"
PROBE_FILE = "probe.json"
METRICS = ("accuracy", "loss", "entropy")


def damage_name(metric: str) -> str:
    """What forgetting does to `metric` when it hurts: accuracy drops, loss and entropy rise."""
    return "drop" if metric == "accuracy" else "rise"


def find_probes(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Every directory at or below `paths` that holds a probe.json, sorted, each once."""
    found: set[pathlib.Path] = set()
    for raw in paths:
        path = pathlib.Path(raw)
        if not path.exists():
            raise ValueError(f"probe directory {path} does not exist")
        if (path / PROBE_FILE).is_file():
            found.add(path)
        else:
            found.update(p.parent for p in path.rglob(PROBE_FILE))
    return sorted(found)


def load_probe(path: str | os.PathLike) -> dict[str, Any]:
    """One probe run: its probe.json plus the directory it came from; a ValueError naming the file
    when it is not JSON or not shaped as a probe (see `check_probe`)."""
    path = pathlib.Path(path)
    target = path / PROBE_FILE if path.is_dir() else path
    probe = read_object(target)
    check_probe(probe, str(target))
    probe["path"] = str(target.parent)
    return probe


def check_probe(probe: dict[str, Any], where: str) -> None:
    """The shape the summary and the plot rely on: two named groups, and measurements with a numeric
    step and a 'before' and an 'after' object per group (metric values are checked where read)."""
    groups, measurements = probe.get("groups"), probe.get("measurements")
    if not isinstance(measurements, list) or not measurements or not isinstance(groups, list) or len(groups) != 2:
        raise ValueError(f"{where}: no measurements or not exactly two groups")
    if not all(isinstance(g, str) for g in groups) or groups[0] == groups[1]:
        raise ValueError(f"{where}: 'groups' must name two different groups, got {describe(groups)}")
    for i, measurement in enumerate(measurements, 1):
        if not isinstance(measurement, dict) or not is_number(measurement.get("step")):
            raise ValueError(f"{where}: measurement {i} is not an object with a numeric 'step'")
        for phase in ("before", "after"):
            per_group = measurement.get(phase)
            if not isinstance(per_group, dict) or not all(isinstance(per_group.get(g), dict) for g in groups):
                raise ValueError(f"{where}: measurement {i} has no '{phase}' object for both groups "
                                 f"({', '.join(groups)})")


def _value(probe: dict[str, Any], measurement: dict[str, Any], phase: str, group: str, metric: str) -> float:
    """One metric value of a measurement: nan when absent or null, a ValueError naming the probe
    file when it is not a number."""
    value = measurement[phase][group].get(metric)
    if value is None:
        return math.nan
    if not is_number(value):
        where = pathlib.Path(probe.get("path", ".")) / PROBE_FILE
        raise ValueError(f"{where}: step {measurement['step']}: {phase} {group} '{metric}' is {describe(value)}, "
                         "not a number")
    return float(value)


def probe_summary(probes: list[dict[str, Any]], metric: str = "accuracy", confidence: float = 0.95) -> dict[str, Any]:
    """Mean and CI over runs of the last measurement: before / after / damage per group (accuracy:
    before - after; loss, entropy: after - before) and the gap damage(target) - damage(reference)."""
    if not probes:
        raise ValueError("no probe runs to summarize")
    groups = probes[0]["groups"]
    if any(p["groups"] != groups for p in probes):
        raise ValueError(f"probe runs mix groupings: {sorted({tuple(p['groups']) for p in probes})}")
    if metric not in probes[0]["measurements"][-1]["before"][groups[0]]:
        raise ValueError(f"--metric {metric!r}: recorded metrics are {', '.join(METRICS)}")
    per_group: dict[str, dict[str, tuple[float, float, int]]] = {}
    damage: dict[str, list[float]] = {}
    sign = 1.0 if metric == "accuracy" else -1.0
    for group in groups:
        before = [_value(p, p["measurements"][-1], "before", group, metric) for p in probes]
        after = [_value(p, p["measurements"][-1], "after", group, metric) for p in probes]
        damage[group] = [sign * (b - a) for b, a in zip(before, after)]
        per_group[group] = {"before": mean_ci(before, confidence), "after": mean_ci(after, confidence),
                            "damage": mean_ci(damage[group], confidence)}
    gap = [t - r for r, t in zip(damage[groups[0]], damage[groups[1]])]
    summary = {"metric": metric, "groups": groups, "runs": len(probes), "per_group": per_group,
               "gap": mean_ci(gap, confidence), "confidence": confidence,
               "step": [p["measurements"][-1]["step"] for p in probes]}
    # mislabeled examples: how often the model predicts their TRUE class (do they fall back to it?)
    last = [p["measurements"][-1] for p in probes]
    if metric == "accuracy" and all("true_label_accuracy" in m["before"][groups[1]] for m in last):
        summary["true_label"] = {
            phase: mean_ci([_value(p, m, phase, groups[1], "true_label_accuracy") for p, m in zip(probes, last)],
                           confidence)
            for phase in ("before", "after")}
    return summary


def _cell(stat: tuple[float, float, int], scale: float) -> str:
    """Percent points with one decimal (accuracy, scale 100), else two decimals (nats)."""
    mean, half, _ = stat
    if math.isnan(mean):
        return "-"
    digits = 1 if scale == 100.0 else 2
    return f"{scale * mean:.{digits}f}" if math.isnan(half) else f"{scale * mean:.{digits}f} ± {scale * half:.{digits}f}"


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown table of `probe_summary` (accuracy in percent points)."""
    scale = 100.0 if summary["metric"] == "accuracy" else 1.0
    unit = " (%)" if scale == 100.0 else ""
    damage = damage_name(summary["metric"])
    lines = [f"| group | {summary['metric']} before{unit} | after{unit} | {damage}{unit} |", "|---|---|---|---|"]
    for group in summary["groups"]:
        stats = summary["per_group"][group]
        lines.append(f"| {group} | {_cell(stats['before'], scale)} | {_cell(stats['after'], scale)} | "
                     f"{_cell(stats['damage'], scale)} |")
    reference, target = summary["groups"]
    lines.append(f"| gap: {damage}({target}) - {damage}({reference}) | | | {_cell(summary['gap'], scale)} |")
    if "true_label" in summary:
        true = summary["true_label"]
        lines.append(f"| {target}, predicted as the true class | {_cell(true['before'], scale)} | "
                     f"{_cell(true['after'], scale)} | |")
    confidence = int(round(summary["confidence"] * 100))
    lines.append(f"\nmean ± {confidence} % CI (Student t) over {summary['runs']} runs, last measurement "
                 f"(step {min(summary['step'])}..{max(summary['step'])})")
    return "\n".join(lines)


def plot_probe(probes: list[dict[str, Any]], out: str, metric: str = "accuracy", confidence: float = 0.95,
               title: str | None = None) -> pathlib.Path:
    """Left: each group before/after forgetting at the last measurement (mean, CI bars).
    Right: the metric over training steps, before (solid) and after (dashed) forgetting, per group.
    Returns the file written."""
    summary = probe_summary(probes, metric, confidence)
    groups = summary["groups"]
    fig, axes = new_figure(1, 2, figsize=(10.5, 3.9))
    bars, lines = axes[0]
    width = 0.38
    for offset, phase, shade in ((-width / 2, "before", 0.9), (width / 2, "after", 0.45)):
        means = [summary["per_group"][g][phase][0] for g in groups]
        halves = [0.0 if math.isnan(summary["per_group"][g][phase][1]) else summary["per_group"][g][phase][1]
                  for g in groups]
        bars.bar([i + offset for i in range(len(groups))], means, width, yerr=halves, capsize=4, label=phase,
                 color=str(1.0 - shade))
    bars.set_xticks(range(len(groups)), groups)
    label_axes(bars, "", metric, grid=False)
    bars.set_title(f"last measurement, n={summary['runs']}", fontsize=9)
    for group, color in zip(groups, ("tab:blue", "tab:red")):
        for phase, style in (("before", "-"), ("after", "--")):
            by_step: dict[int, list[float]] = {}
            for probe in probes:
                for m in probe["measurements"]:
                    by_step.setdefault(m["step"], []).append(_value(probe, m, phase, group, metric))
            steps = sorted(by_step)
            stats = [mean_ci(by_step[s], confidence) for s in steps]
            mean = [s[0] for s in stats]
            lines.plot(steps, mean, style, color=color, label=f"{group} {phase}")
            half = [0.0 if math.isnan(s[1]) else s[1] for s in stats]
            lines.fill_between(steps, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                               color=color, alpha=0.12, linewidth=0)
    label_axes(lines, "training step", metric)
    default = f"targeted forgetting: {metric} before / after (mean, {int(confidence * 100)} % CI)"
    return save_figure(fig, out, title or default)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("probes", nargs="+", help="probe run directories or folders holding them")
    parser.add_argument("--metric", default="accuracy", choices=METRICS)
    parser.add_argument("--out", default=None, help="figure to write (png, pdf, svg); none = table only")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    return run_command(lambda: _summarize(args), PROG)


def _summarize(args: argparse.Namespace) -> None:
    """Check the flags, print the table, draw the figure when --out is given."""
    confidence(args.confidence)
    if args.out is not None:
        image_target(args.out)
    paths = find_probes(args.probes)
    if not paths:
        raise ValueError(f"no {PROBE_FILE} under {' '.join(args.probes)}")
    probes = [load_probe(p) for p in paths]
    print(summary_table(probe_summary(probes, args.metric, args.confidence)))
    if args.out is not None:
        print(f"wrote {plot_probe(probes, args.out, args.metric, args.confidence)}")


if __name__ == "__main__":
    sys.exit(main())
