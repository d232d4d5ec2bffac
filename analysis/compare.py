"""`python -m analysis.compare RUNS... --baseline no_reset --metric topsim [--since N]`

Paired differences against a baseline strategy: for every seed that both a strategy and the
baseline ran, the strategy's value minus the baseline's, then the mean and a 95 % CI over seeds.
Seeds share initial weights and data streams across strategies, so pairing removes much of the
seed-to-seed spread that makes unpaired intervals wide.

Runs group by experiment (analysis.runs.run_groups: strategy, game, and any config field that
differs between runs of one strategy). Each group is paired with the baseline group of the same
game and, where there are several baseline groups, of the same values in the fields that tell
those apart (so reconstruction runs are never subtracted from referential ones); a row names its
baseline ("pbf (hidden_size=64) vs no_reset (hidden_size=16)") when their labelled fields differ.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from ._parser import ArgumentParser, confidence
from .cli import run_command
from .curves import final_value, window_mean
from .report import load_for_table
from .runs import Group, require_key, run_groups, run_labels, run_seed
from .stats import per_value_row

PROG = "python -m analysis.compare"


def per_seed(runs: list[dict[str, Any]], metric: str, since: float | None, x: str) -> dict[str, dict[Any, float]]:
    """label -> seed -> the run's final value (or its mean from `since` on)."""
    out: dict[str, dict[Any, float]] = defaultdict(dict)
    for run, label in zip(runs, run_labels(runs)):
        value = window_mean(run, metric, since=since, x=x) if since is not None else final_value(run, metric)
        if value is None:
            continue
        seed = run_seed(run)
        if seed in out[label]:
            raise ValueError(f"runs: two {label} runs with seed {seed}; compare one sweep at a time")
        out[label][seed] = value
    return dict(out)


def baseline_groups(groups: list[Group], baseline: str) -> list[Group]:
    """The distinct groups of the baseline strategy, or a ValueError naming the strategies found."""
    bases = sorted({g for g in groups if g.strategy == baseline}, key=lambda g: g.label)
    if not bases:
        raise ValueError(f"--baseline: no run of strategy {baseline!r}; found {sorted({g.strategy for g in groups})}")
    return bases


def matching_baseline(group: Group, bases: list[Group]) -> Group | None:
    """The baseline group `group` is paired with: same game, and same values in the fields in which
    the baseline groups differ from each other; None when there is no such baseline."""
    mine = dict(group.fields)
    fields = [dict(b.fields) for b in bases]
    telling = {k for k in fields[0] if len({f[k] for f in fields}) > 1} | {"game"}
    found = [b for b, f in zip(bases, fields) if all(f.get(k) == mine.get(k) for k in telling)]
    return found[0] if len(found) == 1 else None


def paired_table(runs, baseline: str, metric: str, *, since: float | None = None, x: str = "iteration",
                 confidence: float = 0.95) -> str:
    by_label = per_seed(runs, metric, since, x)
    groups = sorted(set(run_groups(runs)), key=lambda g: g.label)
    bases = baseline_groups(groups, baseline)
    what = f"mean {metric} from {x} {since:g}" if since is not None else f"final {metric}"
    lines = [f"| strategy − {baseline} (same seed) | seeds | {what}: difference | per seed |", "|---|---|---|---|"]
    for group in groups:
        if group.strategy == baseline:
            continue
        base = matching_baseline(group, bases)
        mine = by_label.get(group.label, {})
        theirs = by_label.get(base.label, {}) if base is not None else {}
        seeds = sorted(set(mine) & set(theirs), key=str)
        label = group.label if base is None or base.fields == group.fields else f"{group.label} vs {base.label}"
        lines.append(per_value_row(label, [mine[s] - theirs[s] for s in seeds], confidence, signed=True))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    def compare() -> None:
        confidence(args.confidence)
        runs = load_for_table(args.runs, args.until, args.since, args.x)
        require_key(runs, args.metric, "--metric")
        print(paired_table(runs, args.baseline, args.metric, since=args.since, x=args.x,
                           confidence=args.confidence))

    return run_command(compare, PROG)


if __name__ == "__main__":
    sys.exit(main())
