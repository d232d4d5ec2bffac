"""`python -m analysis.plot RUN_DIR [RUN_DIR ...] --metric topsim --out fig.png`

Draws a metric against generation, one line per experiment (strategy, plus any config field in
which the runs differ, e.g. "pbf (game=reconstruction)"), with the mean and a 95 % confidence band
over seeds. A path may be one run or a folder of runs (a sweep).

With --dynamics, the curves inside generations instead: each metric against iteration from the runs'
evaluations.jsonl, every forgetting event a dashed line, the value right after forgetting
(`topsim_after_forgetting`) a triangle (analysis.dynamics):
`python -m analysis.plot runs/demo --dynamics --metric topsim --metric accuracy --out dynamics.png`.

Targeted-forgetting probes (folders of probe.json, from `python -m games.targeted_forgetting`) are
drawn by `analysis.probe_plot` instead: `python -m analysis.plot runs/probe --metric loss --out p.png`
prints the before/after table per group and draws it (metric accuracy, loss or entropy).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
from typing import Any

from . import probe_plot, teaching_plot
from ._parser import ArgumentParser, confidence
from .cli import run_command
from .curves import aggregate_curves
from .dynamics import DEFAULT_METRICS as DYNAMICS_METRICS
from .dynamics import dynamics_figure
from .figures import add_note, image_target, label_axes, new_figure, save_figure
from .runs import differences_note, find_runs, load_runs, require_key, require_records
from .stats import clipped_band

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


def curves_title(n_max: int, confidence: float) -> str:
    """'mean and 95 % CI over seeds' only where some curve averages seeds; one run per curve is
    drawn as it is and titled so."""
    if n_max <= 1:
        return "one run per curve (no interval)"
    return f"mean and {int(round(confidence * 100))} % CI over seeds"


def curves_figure(runs, metrics: list[str], *, x: str = "generation", title: str | None = None,
                  confidence: float = 0.95) -> Any:
    """One panel per metric, one curve per experiment with its confidence band clipped to the
    metric's range; returns the matplotlib Figure (nothing written, the global backend untouched)."""
    curves = [aggregate_curves(runs, metric, x=x, confidence=confidence) for metric in metrics]
    fig, axes = new_figure(1, len(metrics), figsize=(5.2 * len(metrics), 4.1))
    n_max = 0
    for ax, metric, panel in zip(axes[0], metrics, curves):
        for curve in panel:
            n_max = max(n_max, *curve.n) if curve.n else n_max
            line, = ax.plot(curve.x, curve.mean, marker="o", markersize=3,
                            label=f"{curve.label} (n={max(curve.n)})")
            lower, upper = clipped_band(curve.mean, curve.half_width, metric)
            ax.fill_between(curve.x, lower, upper, color=line.get_color(), alpha=0.2, linewidth=0)
        if x in ("generation", "epoch"):
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        label_axes(ax, x, metric)
    fig.suptitle(title or curves_title(n_max, confidence))
    add_note(fig, differences_note(runs))
    return fig


def plot_curves(runs, metrics: list[str], out: str, *, x: str = "generation", title: str | None = None,
                confidence: float = 0.95) -> pathlib.Path:
    """Draw one panel per metric and write it; returns the file written (`out`, or `out`.png when
    `out` has no extension)."""
    image_target(out)
    return save_figure(curves_figure(runs, metrics, x=x, title=title, confidence=confidence), out, None)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help="record key to plot (repeat for side-by-side panels); default topsim; "
                             "ease_of_teaching_curve: the fresh listener's learning curves, a panel per generation")
    parser.add_argument("--x", default="generation", help="record key for the x axis (default generation)")
    parser.add_argument("--out", default="fig.png",
                        help="output image (png, pdf, svg; .png is added to a name without extension)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--dynamics", action="store_true",
                        help="draw the curves inside generations (evaluations.jsonl) against iteration, forgetting marked")
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
    if args.dynamics:
        return _plot_dynamics(runs, args)
    if args.metric == [teaching_plot.CURVE]:
        data = teaching_plot.collect(runs)
        written = save_figure(teaching_plot.figure(data, args.title), args.out, None)
        print(teaching_plot.table(data))
        print(f"wrote {written} ({len(runs)} runs)")
        return 0
    check_keys(runs, args.metric or ["topsim"], args.x, args.confidence)
    written = plot_curves(runs, args.metric or ["topsim"], args.out, x=args.x, title=args.title,
                          confidence=args.confidence)
    print(f"wrote {written} ({len(run_dirs)} runs)")
    return 0


def _plot_dynamics(runs, args: argparse.Namespace) -> int:
    """The curves inside generations; --x defaults to iteration here (the generation is the segment)."""
    x = "iteration" if args.x == "generation" else args.x
    metrics = args.metric or list(DYNAMICS_METRICS)
    check_keys(runs, metrics, x, args.confidence)
    fig = dynamics_figure(runs, metrics, x=x, confidence=args.confidence, title=args.title)
    written = save_figure(fig, args.out, None)
    print(f"wrote {written} ({len(runs)} runs)")
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
