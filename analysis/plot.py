"""`python -m analysis.plot RUN_DIR [RUN_DIR ...] --metric topsim --out fig.png`

Draws a metric against generation, one line per experiment (strategy, plus any config field in
which the runs differ, e.g. "pbf (game=reconstruction)"), with the mean and a 95 % confidence band
over seeds. A path may be one run or a folder of runs (a sweep).

Targeted-forgetting probes (folders of probe.json, from `python -m games.targeted_forgetting`) are
drawn by `analysis.probe_plot` instead: `python -m analysis.plot runs/probe --metric loss --out p.png`
prints the before/after table per group and draws it (metric accuracy, loss or entropy).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

from . import probe_plot
from ._parser import ArgumentParser, confidence
from .cli import run_command
from .curves import aggregate_curves
from .figures import image_target, label_axes, pyplot, save_figure
from .runs import find_runs, load_runs, require_key, require_records

PROG = "python -m analysis.plot"


def check_keys(runs, metrics: list[str], x: str, confidence: float) -> None:
    """The command's checks before drawing (the library's plot_curves draws what there is, so a run
    whose topsim was nan throughout still gets its plot): some run recorded a generation, numbers
    under --x and every --metric, and a finite value of each metric somewhere."""
    require_records(runs)
    require_key(runs, x, "--x")
    for metric in metrics:
        require_key(runs, metric, "--metric")
        curves = aggregate_curves(runs, metric, x=x, confidence=confidence)
        if not any(math.isfinite(m) for curve in curves for m in curve.mean):
            raise ValueError(f"--metric {metric!r}: no run records a finite value of it against {x} (all null or nan)")


def plot_curves(runs, metrics: list[str], out: str, *, x: str = "generation", title: str | None = None,
                confidence: float = 0.95) -> pathlib.Path:
    """Draw one panel per metric and write it; returns the file written (`out`, or `out`.png when
    `out` has no extension)."""
    curves = [aggregate_curves(runs, metric, x=x, confidence=confidence) for metric in metrics]
    fig, axes = pyplot().subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric, panel in zip(axes[0], metrics, curves):
        for curve in panel:
            line, = ax.plot(curve.x, curve.mean, marker="o", markersize=3,
                            label=f"{curve.label} (n={max(curve.n)})")
            lower = [m - h if not math.isnan(h) else m for m, h in zip(curve.mean, curve.half_width)]
            upper = [m + h if not math.isnan(h) else m for m, h in zip(curve.mean, curve.half_width)]
            ax.fill_between(curve.x, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        label_axes(ax, x, metric)
    return save_figure(fig, out, title or f"mean and {int(confidence * 100)} % CI over seeds")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help="record key to plot (repeat for side-by-side panels); default topsim")
    parser.add_argument("--x", default="generation", help="record key for the x axis (default generation)")
    parser.add_argument("--out", default="fig.png",
                        help="output image (png, pdf, svg; .png is added to a name without extension)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--confidence", type=float, default=0.95)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: _plot(args), PROG)


def _plot(args: argparse.Namespace) -> int:
    """Check the flags, find runs (or probes), draw; print the file actually written."""
    image_target(args.out)
    confidence(args.confidence)
    run_dirs = find_runs(args.runs)
    if not run_dirs and probe_plot.find_probes(args.runs):
        return _plot_probes(args)
    if not run_dirs:
        raise ValueError(f"runs: no generations.jsonl (or probe.json) found under {' '.join(args.runs)}")
    runs = load_runs(run_dirs)
    check_keys(runs, args.metric or ["topsim"], args.x, args.confidence)
    written = plot_curves(runs, args.metric or ["topsim"], args.out, x=args.x, title=args.title,
                          confidence=args.confidence)
    print(f"wrote {written} ({len(run_dirs)} runs)")
    return 0


def _plot_probes(args: argparse.Namespace) -> int:
    """The targeted-forgetting probe figure and table (see analysis.probe_plot); errors propagate."""
    metrics = args.metric or ["accuracy"]
    if len(metrics) > 1 or metrics[0] not in probe_plot.METRICS:
        raise ValueError(f"--metric {' '.join(metrics)}: a probe is drawn for one of {', '.join(probe_plot.METRICS)}")
    probes = [probe_plot.load_probe(p) for p in probe_plot.find_probes(args.runs)]
    table = probe_plot.summary_table(probe_plot.probe_summary(probes, metrics[0], args.confidence))
    written = probe_plot.plot_probe(probes, args.out, metrics[0], args.confidence, title=args.title)
    print(table)
    print(f"wrote {written} ({len(probes)} probe runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
