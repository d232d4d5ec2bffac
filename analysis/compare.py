"""`python -m analysis.compare RUNS... --baseline no_reset --metric topsim [--since N]`

Paired differences against a baseline strategy: for every seed that both a strategy and the
baseline ran, the strategy's value minus the baseline's, then the mean and a 95 % CI over seeds.
Seeds share initial weights and data streams across strategies, so pairing removes much of the
seed-to-seed spread that makes unpaired intervals wide.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from .curves import final_values, window_means
from .cli import run_command
from .runs import load_run, require_runs, truncate_runs
from .stats import per_value_row


def per_seed(runs: list[dict[str, Any]], metric: str, since: float | None, x: str) -> dict[str, dict[Any, float]]:
    """label -> seed -> the run's final value (or its mean from `since` on)."""
    out: dict[str, dict[Any, float]] = defaultdict(dict)
    for run in runs:
        seed = run["config"].get("seed", run["records"][0].get("seed") if run["records"] else None)
        values = (window_means([run], metric, since=since, x=x) if since is not None
                  else final_values([run], metric))
        for label, found in values.items():
            if seed in out[label]:
                raise ValueError(f"runs: two {label} runs with seed {seed}; compare one sweep at a time")
            out[label][seed] = found[0]
    return dict(out)


def paired_table(runs, baseline: str, metric: str, *, since: float | None = None, x: str = "iteration",
                 confidence: float = 0.95) -> str:
    by_label = per_seed(runs, metric, since, x)
    if baseline not in by_label:
        raise ValueError(f"--baseline: no run of strategy {baseline!r}; found {sorted(by_label)}")
    what = f"mean {metric} from {x} {since:g}" if since is not None else f"final {metric}"
    lines = [f"| strategy − {baseline} (same seed) | seeds | {what}: difference | per seed |", "|---|---|---|---|"]
    base = by_label[baseline]
    for label in sorted(by_label):
        if label == baseline:
            continue
        seeds = sorted(set(by_label[label]) & set(base), key=str)
        lines.append(per_value_row(label, [by_label[label][s] - base[s] for s in seeds], confidence, signed=True))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--baseline", default="no_reset", help="strategy to subtract (default no_reset)")
    parser.add_argument("--metric", default="topsim", help="record key (default topsim)")
    parser.add_argument("--since", type=float, default=None, metavar="N",
                        help="compare each run's mean from --x N on instead of its final value")
    parser.add_argument("--until", type=float, default=None, metavar="N",
                        help="use each run's records up to --x N only (the runs as they stood at N)")
    parser.add_argument("--x", default="iteration", help="record key --since/--until refer to (default iteration)")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    return run_command(lambda: print(paired_table(
        truncate_runs([load_run(p) for p in require_runs(args.runs)], args.until, args.x),
        args.baseline, args.metric, since=args.since,
        x=args.x, confidence=args.confidence)))

if __name__ == "__main__":
    sys.exit(main())
