"""`python -m analysis.report RUN_DIR ...`: a markdown table per strategy.

Final value of each metric (last generation of each run), mean +- 95 % CI over seeds, number of seeds.
"""

from __future__ import annotations

import argparse
import math
import sys

from .curves import final_values
from .runs import find_runs, load_run
from .stats import mean_ci

DEFAULT_METRICS = ("accuracy", "topsim")


def _cell(values: list[float], confidence: float) -> str:
    mean, half, n = mean_ci(values, confidence)
    if n == 0:
        return "-"
    return f"{mean:.3f}" if math.isnan(half) else f"{mean:.3f} ± {half:.3f}"


def markdown_table(runs, metrics=DEFAULT_METRICS, confidence: float = 0.95) -> str:
    finals = {metric: final_values(runs, metric) for metric in metrics}
    labels = sorted({label for per_metric in finals.values() for label in per_metric})
    if not labels:
        raise ValueError(f"--metric: none of {list(metrics)} is recorded by these runs")
    head = "| strategy | seeds | " + " | ".join(f"final {m}" for m in metrics) + " |"
    rule = "|---|---|" + "---|" * len(metrics)
    lines = [head, rule]
    for label in labels:
        n = max(len(finals[m].get(label, [])) for m in metrics)
        cells = [_cell(finals[m].get(label, []), confidence) for m in metrics]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", action="append", default=None,
                        help=f"record key to report (repeatable); default {' '.join(DEFAULT_METRICS)}")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    try:
        run_dirs = find_runs(args.runs)
        if not run_dirs:
            raise ValueError(f"runs: no generations.jsonl found under {' '.join(args.runs)}")
        print(markdown_table([load_run(p) for p in run_dirs], args.metric or DEFAULT_METRICS, args.confidence))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
