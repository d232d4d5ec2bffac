"""`python -m analysis.report RUN_DIR ...`: a markdown table per strategy.

Final value of each metric (last generation of each run), mean +- 95 % CI over seeds, number of seeds.
With `--since N`, also each run's mean over its records from iteration N on (then mean +- CI over seeds).
"""

from __future__ import annotations

import argparse
import math
import sys

from .curves import final_values, window_means
from .runs import find_runs, load_run
from .stats import mean_ci

DEFAULT_METRICS = ("accuracy", "topsim")


def _cell(values: list[float], confidence: float) -> str:
    mean, half, n = mean_ci(values, confidence)
    if n == 0:
        return "-"
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


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
        cells = [_cell(values.get(label, []), confidence) for values in columns.values()]
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
    parser.add_argument("--x", default="iteration", help="record key --since refers to (default iteration)")
    args = parser.parse_args(argv)
    try:
        run_dirs = find_runs(args.runs)
        if not run_dirs:
            raise ValueError(f"runs: no generations.jsonl found under {' '.join(args.runs)}")
        print(markdown_table([load_run(p) for p in run_dirs], args.metric or DEFAULT_METRICS, args.confidence,
                             since=args.since, x=args.x))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
