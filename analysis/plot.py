"""`python -m analysis.plot RUN_DIR [RUN_DIR ...] --metric topsim --out fig.png`

Draws a metric against generation, one line per strategy, with the mean and a 95 % confidence band
over seeds. A path may be one run or a folder of runs (a sweep).

Targeted-forgetting probes (folders of probe.json, from `python -m games.targeted_forgetting`) are
drawn by `analysis.probe_plot` instead: `python -m analysis.plot runs/probe --metric loss --out p.png`
prints the before/after table per group and draws it (metric accuracy, loss or entropy).
"""

from __future__ import annotations

import argparse
import math
import sys

from . import probe_plot
from .curves import aggregate_curves
from .figures import label_axes, pyplot, save_figure
from .runs import find_runs, load_run


def plot_curves(runs, metrics: list[str], out: str, *, x: str = "generation", title: str | None = None,
                confidence: float = 0.95) -> None:
    fig, axes = pyplot().subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for curve in aggregate_curves(runs, metric, x=x, confidence=confidence):
            line, = ax.plot(curve.x, curve.mean, marker="o", markersize=3,
                            label=f"{curve.label} (n={max(curve.n)})")
            lower = [m - h if not math.isnan(h) else m for m, h in zip(curve.mean, curve.half_width)]
            upper = [m + h if not math.isnan(h) else m for m, h in zip(curve.mean, curve.half_width)]
            ax.fill_between(curve.x, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        label_axes(ax, x, metric)
    save_figure(fig, out, title or f"mean and {int(confidence * 100)} % CI over seeds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help="record key to plot (repeat for side-by-side panels); default topsim")
    parser.add_argument("--x", default="generation", help="record key for the x axis (default generation)")
    parser.add_argument("--out", default="fig.png", help="output image (png, pdf, svg)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--confidence", type=float, default=0.95)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run_dirs = find_runs(args.runs)
        if not run_dirs and probe_plot.find_probes(args.runs):
            return _plot_probes(args)
        if not run_dirs:
            raise ValueError(f"runs: no generations.jsonl (or probe.json) found under {' '.join(args.runs)}")
        runs = [load_run(p) for p in run_dirs]
        if not 0 < args.confidence < 1:
            raise ValueError(f"--confidence must lie in (0, 1), got {args.confidence}")
        plot_curves(runs, args.metric or ["topsim"], args.out, x=args.x, title=args.title,
                    confidence=args.confidence)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(run_dirs)} runs)")
    return 0


def _plot_probes(args: argparse.Namespace) -> int:
    """The targeted-forgetting probe figure and table (see analysis.probe_plot); errors propagate."""
    metrics = args.metric or ["accuracy"]
    if len(metrics) > 1 or metrics[0] not in probe_plot.METRICS:
        raise ValueError(f"--metric {' '.join(metrics)}: a probe is drawn for one of {', '.join(probe_plot.METRICS)}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must lie in (0, 1), got {args.confidence}")
    probes = [probe_plot.load_probe(p) for p in probe_plot.find_probes(args.runs)]
    print(probe_plot.summary_table(probe_plot.probe_summary(probes, metrics[0], args.confidence)))
    probe_plot.plot_probe(probes, args.out, metrics[0], args.confidence, title=args.title)
    print(f"wrote {args.out} ({len(probes)} probe runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
