"""`python -m analysis.language_scores RUNS... --convention li_bowling`

Topographic similarity of each run's final language (RUN_DIR/language.json) under a named
convention, mean and 95 % CI per strategy. Runs record topsim under EGG's convention; this puts a
study on the scale another paper reports (Li & Bowling and the forget-and-relearn reference code
use `li_bowling`; Ren et al. use `ren`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np

from .compositionality import CONVENTIONS, topographic_similarity
from .cli import run_command
from .runs import load_run, require_runs, run_label
from .stats import per_value_row


def final_language_topsim(run_dir, convention: str) -> float:
    """Topsim of the run's language.json under `convention` (its EOS setting respected)."""
    path = run_dir / "language.json"
    if not path.is_file():
        raise ValueError(f"runs: {run_dir} holds no language.json")
    language = json.loads(path.read_text())
    eos = 0 if language.get("eos") else None
    return topographic_similarity(np.asarray(language["objects"]), np.asarray(language["messages"]),
                                  convention=convention, eos=eos)


def language_table(run_dirs, convention: str, confidence: float = 0.95) -> str:
    scores: dict[str, list[float]] = defaultdict(list)
    for run_dir in run_dirs:
        scores[run_label(load_run(run_dir))].append(final_language_topsim(run_dir, convention))
    lines = [f"| strategy | seeds | final-language topsim ({convention}) | per run |", "|---|---|---|---|"]
    lines += [per_value_row(label, scores[label], confidence) for label in sorted(scores)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.language_scores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--convention", choices=sorted(CONVENTIONS), default="li_bowling")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)
    return run_command(lambda: print(language_table(require_runs(args.runs), args.convention, args.confidence)))

if __name__ == "__main__":
    sys.exit(main())
