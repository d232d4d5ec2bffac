"""`python -m analysis.report RUN_DIR ...`: a markdown table, one row per experiment.

Final value of each metric (last generation of each run), mean +- 95 % CI over seeds, number of seeds.
With `--since N`, also each run's mean over its records from iteration N on (then mean +- CI over seeds);
with `--until N`, the runs as they stood at iteration N. Runs pool as seeds only when their
configurations agree (strategy, game and every other experiment field; the row names the fields in
which the runs differ).

With `--html report.html`, also one self-contained HTML file (analysis.html_report): the table, the
configuration differences, the curves across and inside generations (forgetting marked) and the
language figures, images embedded.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from ._parser import ArgumentParser, confidence, finite
from .cli import run_command
from .curves import final_values, window_means
from .runs import load_runs, require_key, require_records, require_runs, truncate_runs
from .stats import format_mean_ci
from . import html_report

PROG = "python -m analysis.report"
DEFAULT_METRICS = ("accuracy", "topsim")


def markdown_table(runs, metrics=DEFAULT_METRICS, confidence: float = 0.95, since: float | None = None,
                   x: str = "iteration") -> str:
    columns = {f"final {m}": final_values(runs, m) for m in metrics}
    if since is not None:
        columns.update({f"mean {m} from {x} {since:g}": window_means(runs, m, since=since, x=x) for m in metrics})
    labels = sorted({label for per_column in columns.values() for label in per_column})
    if not labels:
        raise ValueError(f"--metric: none of {list(metrics)} is recorded with a finite value by these runs")
    head = "| strategy | seeds | " + " | ".join(columns) + " |"
    rule = "|---|---|" + "---|" * len(columns)
    lines = [head, rule]
    for label in labels:
        n = max(len(values.get(label, [])) for values in columns.values())
        cells = [format_mean_ci(values.get(label, []), confidence) for values in columns.values()]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_for_table(paths: Sequence[str], until: float | None, since: float | None, x: str) -> list[dict[str, Any]]:
    """The runs under `paths`, as they stood at --until, after the checks report and compare share:
    some run recorded a generation, and --x holds numbers when --since or --until refer to it."""
    finite("--since", since)
    finite("--until", until)
    runs = load_runs(require_runs(paths))
    require_records(runs)
    if since is not None or until is not None:
        require_key(runs, x, "--x")
    return truncate_runs(runs, until, x)


def check_metrics(runs: list[dict[str, Any]], metrics: Sequence[str] | None) -> tuple[str, ...]:
    """The metrics to report: each one asked for by --metric must be recorded (a typo is an error,
    not a column of dashes); of the defaults, those recorded (image runs have no topsim)."""
    if metrics is None:
        return DEFAULT_METRICS
    for metric in metrics:
        require_key(runs, metric, "--metric")
    return tuple(metrics)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help=f"record key to report (repeatable); default {' '.join(DEFAULT_METRICS)}")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--since", type=float, default=None, metavar="N",
                        help="also report each run's mean from --x N on (e.g. the second half of training)")
    parser.add_argument("--until", type=float, default=None, metavar="N",
                        help="use each run's records up to --x N only (the runs as they stood at N)")
    parser.add_argument("--x", default="iteration", help="record key --since/--until refer to (default iteration)")
    parser.add_argument("--html", default=None, metavar="FILE",
                        help="also write one self-contained HTML report (tables, figures, languages) to FILE")
    args = parser.parse_args(argv)

    def report() -> None:
        confidence(args.confidence)
        if args.html is not None:
            html_report.html_target(args.html)
        runs = load_for_table(args.runs, args.until, args.since, args.x)
        metrics = check_metrics(runs, args.metric)
        table = markdown_table(runs, metrics, args.confidence, since=args.since, x=args.x)
        print(table)
        if args.html is not None:
            until = args.until if args.x == "iteration" else None
            page = html_report.render(runs, args.runs, table, metrics, confidence=args.confidence, until=until)
            print(f"wrote {html_report.write_html(page, args.html)}", file=sys.stderr)

    return run_command(report, PROG)


if __name__ == "__main__":
    sys.exit(main())
