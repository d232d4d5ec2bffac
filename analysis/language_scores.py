"""`python -m analysis.language_scores RUNS... --convention li_bowling`

Topographic similarity of each run's final language (RUN_DIR/language.json) under a named
convention, mean and 95 % CI per experiment (strategy, plus any config field in which the runs
differ). Runs record topsim under EGG's convention; this puts a study on the scale another paper
reports (Li & Bowling and the forget-and-relearn reference code use `li_bowling`; Ren et al. use `ren`).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections import defaultdict

import numpy as np

from ._parser import ArgumentParser, confidence
from .cli import run_command
from .compositionality import CONVENTIONS, topographic_similarity
from .runs import describe, load_runs, read_object, require_runs, run_labels
from .stats import per_value_row

PROG = "python -m analysis.language_scores"
LANGUAGE_FILE = "language.json"


def final_language_topsim(run_dir, convention: str) -> float:
    """Topsim of the run's language.json under `convention`, on the messages as the sender emitted
    them, as the training records score them ("egg" gives the recorded topsim exactly; "egg_eos"
    cuts each message after its EOS); a ValueError naming the file when it is missing or does not
    hold objects and messages the metric accepts."""
    path = pathlib.Path(run_dir) / LANGUAGE_FILE
    if not path.is_file():
        raise ValueError(f"runs: {run_dir} holds no {LANGUAGE_FILE}")
    language = read_object(path)
    for key in ("objects", "messages"):
        if not isinstance(language.get(key), list):
            found = describe(language[key]) if key in language else "missing"
            raise ValueError(f"{path}: '{key}' is {found}, not a list")
    eos = 0 if language.get("eos") and convention == "egg_eos" else None
    try:
        return topographic_similarity(np.asarray(language["objects"]), language["messages"],
                                      convention=convention, eos=eos)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def language_table(run_dirs, convention: str, confidence: float = 0.95) -> str:
    runs = load_runs(run_dirs)
    scores: dict[str, list[float]] = defaultdict(list)
    for run, label in zip(runs, run_labels(runs)):
        scores[label].append(final_language_topsim(run["path"], convention))
    lines = [f"| strategy | seeds | final-language topsim ({convention}) | per run |", "|---|---|---|---|"]
    lines += [per_value_row(label, scores[label], confidence) for label in sorted(scores)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--convention", choices=sorted(CONVENTIONS), default="li_bowling")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)

    def scores() -> None:
        confidence(args.confidence)
        print(language_table(require_runs(args.runs), args.convention, args.confidence))

    return run_command(scores, PROG)


if __name__ == "__main__":
    sys.exit(main())
