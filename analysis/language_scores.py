"""`python -m analysis.language_scores RUNS... [--metric topsim] [--convention li_bowling]`

A metric of each run's final language (RUN_DIR/language.json) under a named convention, mean and
95 % CI per experiment (strategy, plus any config field in which the runs differ).

--metric topsim (default): runs record topsim under EGG's convention; this puts a study on the
scale another paper reports (Li & Bowling and the forget-and-relearn reference code use
`li_bowling`, the default here; Ren et al. use `ren`).

--metric NAME for the wider set of analysis.language_metrics (docs/metrics.md):
mutual_information, entropy_messages_given_objects, entropy_objects_given_messages (conventions
egg / egg_eos; default: egg_eos for a run with --eos, egg without), context_independence (bogin,
default / korbak), has_boundaries_per_message, has_mean_segment_length, has_vocabulary_size (ueda,
default / emlangkit; --threshold in bits), zla (kendall, default / spearman) and
mean_message_length. Each reads the messages as the run's "eos" says, as language_metrics does, so
a number recorded with language_metrics(objects, messages, vocab_size, eos=0 if eos else None)
is the one printed here.
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
from .language_metrics import DEFAULT_CONVENTIONS, METRIC_CONVENTIONS, WIDER_METRICS, score_language
from .runs import describe, load_runs, read_object, require_runs, run_labels
from .stats import per_value_row

PROG = "python -m analysis.language_scores"
LANGUAGE_FILE = "language.json"
METRICS = ("topsim",) + WIDER_METRICS
ALL_CONVENTIONS = sorted(set(CONVENTIONS).union(*map(set, METRIC_CONVENTIONS.values())))


def _read_language(run_dir) -> tuple[pathlib.Path, dict]:
    path = pathlib.Path(run_dir) / LANGUAGE_FILE
    if not path.is_file():
        raise ValueError(f"runs: {run_dir} holds no {LANGUAGE_FILE}")
    language = read_object(path)
    for key in ("objects", "messages"):
        if not isinstance(language.get(key), list):
            found = describe(language[key]) if key in language else "missing"
            raise ValueError(f"{path}: '{key}' is {found}, not a list")
    return path, language


def final_language_topsim(run_dir, convention: str) -> float:
    """Topsim of the run's language.json under `convention`, on the messages as the sender emitted
    them, as the training records score them ("egg" gives the recorded topsim exactly; "egg_eos"
    cuts each message after its EOS); a ValueError naming the file when it is missing or does not
    hold objects and messages the metric accepts."""
    path, language = _read_language(run_dir)
    eos = 0 if language.get("eos") and convention == "egg_eos" else None
    try:
        return topographic_similarity(np.asarray(language["objects"]), language["messages"],
                                      convention=convention, eos=eos)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _vocab_size(path: pathlib.Path, language: dict) -> int:
    """The recorded vocab_size; a language.json without one (hand-made) gets max symbol + 1."""
    if "vocab_size" in language:
        value = language["vocab_size"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{path}: 'vocab_size' is {describe(value)}, not a positive integer")
        return value
    symbols = [s for m in language["messages"] if isinstance(m, list) for s in m if isinstance(s, int)]
    return max(2, max(symbols, default=0) + 1)


def final_language_score(run_dir, metric: str, convention: str | None = None,
                         threshold: float | None = None) -> float:
    """`metric` of the run's language.json: topsim under `convention` (final_language_topsim),
    or one of analysis.language_metrics' WIDER_METRICS on the messages as the run's "eos" says
    (score_language with eos=0 for a run with --eos); ValueErrors name the file."""
    if metric == "topsim":
        return final_language_topsim(run_dir, convention or "li_bowling")
    path, language = _read_language(run_dir)
    eos = 0 if language.get("eos") else None
    try:
        return score_language(np.asarray(language["objects"]), language["messages"], _vocab_size(path, language),
                              metric, eos=eos, convention=convention, threshold=threshold)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def check_metric_convention(metric: str, convention: str | None, threshold: float | None = None) -> None:
    """A convention the metric does not have, or a --threshold outside HAS, as one flag error."""
    allowed = tuple(CONVENTIONS) if metric == "topsim" else METRIC_CONVENTIONS[metric]
    if convention is not None and convention not in allowed:
        names = f"one of {sorted(allowed)}" if allowed else "none (it has a single definition)"
        raise ValueError(f"--convention {convention}: --metric {metric} takes {names}")
    if threshold is not None and not metric.startswith("has_"):
        raise ValueError(f"--threshold applies to the has_* metrics only, not --metric {metric}")
    if threshold is not None and not np.isfinite(threshold):
        raise ValueError(f"--threshold {threshold}: must be a finite number of bits")


def _convention_label(metric: str, convention: str | None) -> str:
    if metric == "topsim":
        return f" ({convention or 'li_bowling'})"
    named = convention or DEFAULT_CONVENTIONS[metric]
    return f" ({named})" if named else ""


def language_table(run_dirs, convention: str | None = None, confidence: float = 0.95, *, metric: str = "topsim",
                   threshold: float | None = None) -> str:
    if metric not in METRICS:
        raise ValueError(f"--metric {metric}: choose from {list(METRICS)}")
    check_metric_convention(metric, convention, threshold)
    runs = load_runs(run_dirs)
    scores: dict[str, list[float]] = defaultdict(list)
    for run, label in zip(runs, run_labels(runs)):
        scores[label].append(final_language_score(run["path"], metric, convention, threshold))
    lines = [f"| strategy | seeds | final-language {metric}{_convention_label(metric, convention)} | per run |",
             "|---|---|---|---|"]
    lines += [per_value_row(label, scores[label], confidence) for label in sorted(scores)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories or folders holding run directories")
    parser.add_argument("--metric", choices=METRICS, default="topsim")
    parser.add_argument("--convention", choices=ALL_CONVENTIONS, default=None,
                        help="the metric's named convention (topsim: default li_bowling); see docs/metrics.md")
    parser.add_argument("--threshold", type=float, default=None,
                        help="has_* metrics: the HAS threshold in bits (default 0 for ueda, 0.8 for emlangkit)")
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args(argv)

    def scores() -> None:
        confidence(args.confidence)
        check_metric_convention(args.metric, args.convention, args.threshold)
        print(language_table(require_runs(args.runs), args.convention, args.confidence, metric=args.metric,
                             threshold=args.threshold))

    return run_command(scores, PROG)


if __name__ == "__main__":
    sys.exit(main())
