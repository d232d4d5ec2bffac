"""`python -m analysis.report RUN_DIR ...`: a markdown table per strategy.

Final value of each metric (last generation of each run), mean +- 95 % CI over seeds, number of seeds.
With `--since N`, also each run's mean over its records from iteration N on (then mean +- CI over seeds);
with `--until N`, the runs as they stood at iteration N.
"""

from __future__ import annotations

import argparse
import sys

from .curves import final_values, window_means
from .cli import run_command
from .runs import load_run, require_runs, truncate_runs
from .stats import format_mean_ci

DEFAULT_METRICS = ("accuracy", "topsim")


def markdown_table(runs, metrics=DEFAULT_METRICS, confidence: float = 0.95, since: float | None = None,
                   x: str = "iteration") -> str:
    columns = {f"final {m}": final_values(runs, m) for m in metrics}
    if since is not None:
        columns.update({f"mean {m} from {x} {since:g}": window_means(runs, m, since=since, x=x) for m in metrics})
    labels = sorted({label for per_column in columns.values() for label in per_column})
    if not labels:
        raise ValueError(f"--metric: none of {list(metrics)} is recorded by these runs")
    head = "| strategy | seeds | " + " | ".join(columns) + " |"
    rule = "|---|---|" + "---|" * len(columns)
    lines = [head, rule]
    for label in labels:
        n = max(len(values.get(label, [])) for values in columns.values())
        cells = [format_mean_ci(values.get(label, []), confidence) for values in columns.values()]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help=f"record key to report (repeatable); default {' '.join(DEFAULT_METRICS)}")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--since", type=float, default=None, metavar="N",
                        help="also report each run's mean from --x N on (e.g. the second half of training)")
    parser.add_argument("--until", type=float, default=None, metavar="N",
                        help="use each run's records up to --x N only (the runs as they stood at N)")
    parser.add_argument("--x", default="iteration", help="record key --since/--until refer to (default iteration)")
    args = parser.parse_args(argv)
    return run_command(lambda: print(markdown_table(
        truncate_runs([load_run(p) for p in require_runs(args.runs)], args.until, args.x),
        args.metric or DEFAULT_METRICS, args.confidence,
        since=args.since, x=args.x)))

if __name__ == "__main__":
    sys.exit(main())
