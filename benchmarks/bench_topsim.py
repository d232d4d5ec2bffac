"""Time our vectorised topographic similarity against EGG's per-pair way of computing it.

EGG's ``TopographicSimilarity.compute_topsim`` calls ``scipy.spatial.distance.pdist`` with a
Python callable (``editdistance.eval(x, y) / mean length``) once per message pair, then
``scipy.stats.spearmanr``. This script runs that baseline and ours on the same random language,
checks that the pair distances and the topsim agree, and prints the times and their ratio.
It measures; it asserts nothing about speed.

    python benchmarks/bench_topsim.py [--n 2000] [--length 10] [--vocab 10] [--attributes 4] [--values 8]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.compositionality import pairwise_message_distances, topographic_similarity  # noqa: E402
from arguments import positive  # noqa: E402 (benchmarks/arguments.py)


def python_levenshtein(x: np.ndarray, y: np.ndarray) -> int:
    """Textbook two-row dynamic programme: the per-pair baseline when editdistance is absent."""
    a, b = x.tolist(), y.tolist()
    previous = list(range(len(b) + 1))
    for i, symbol in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (symbol != other)))
        previous = current
    return previous[-1]


def baseline_edit(kind: str) -> tuple[Callable[[np.ndarray, np.ndarray], float], str]:
    if kind in ("auto", "editdistance"):
        try:
            import editdistance  # EGG's choice: a C extension, called once per pair
        except ImportError:
            if kind == "editdistance":
                raise SystemExit("error: --baseline editdistance needs `pip install editdistance`")
        else:
            return (lambda x, y: editdistance.eval(x, y) / ((len(x) + len(y)) / 2)), "pdist + editdistance.eval (EGG)"
    return (lambda x, y: python_levenshtein(x, y) / ((len(x) + len(y)) / 2)), "pdist + pure-Python DP"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive, default=2000, help="number of objects/messages (>= 2)")
    parser.add_argument("--length", type=positive, default=10, help="message length")
    parser.add_argument("--vocab", type=positive, default=10, help="symbols per position")
    parser.add_argument("--attributes", type=positive, default=4, help="attributes per object")
    parser.add_argument("--values", type=positive, default=8, help="values per attribute")
    parser.add_argument("--repeats", type=positive, default=3, help="runs of ours; the best is reported")
    parser.add_argument("--baseline", choices=("auto", "editdistance", "python"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 2:
        print(f"error: --n must be >= 2 to form pairs, got {args.n}", file=sys.stderr)
        return 2

    rng = np.random.default_rng(args.seed)
    meanings = rng.integers(0, args.values, size=(args.n, args.attributes))
    messages = rng.integers(1, args.vocab + 1, size=(args.n, args.length))
    edit, baseline_name = baseline_edit(args.baseline)
    n_pairs = args.n * (args.n - 1) // 2
    print(f"N={args.n} objects ({n_pairs:,} pairs), messages of length {args.length}, "
          f"vocab {args.vocab}, {args.attributes} attributes x {args.values} values")

    start = time.perf_counter()
    base_message = pdist(messages, edit)
    base_distance_s = time.perf_counter() - start
    base_rho = spearmanr(pdist(meanings, "hamming"), base_message).correlation
    base_total_s = time.perf_counter() - start

    ours_distance_s = ours_total_s = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours_message = pairwise_message_distances(messages, "edit")
        ours_distance_s = min(ours_distance_s, time.perf_counter() - start)
        start = time.perf_counter()
        ours_rho = topographic_similarity(meanings, messages, convention="egg")
        ours_total_s = min(ours_total_s, time.perf_counter() - start)

    print(f"{'':34s}{'baseline':>12s}{'ours':>12s}{'ratio':>10s}")
    print(f"{'message edit distances (s)':34s}{base_distance_s:12.3f}{ours_distance_s:12.3f}"
          f"{base_distance_s / ours_distance_s:9.1f}x")
    print(f"{'topsim, EGG convention (s)':34s}{base_total_s:12.3f}{ours_total_s:12.3f}"
          f"{base_total_s / ours_total_s:9.1f}x")
    print(f"baseline: {baseline_name}; ours: best of {args.repeats}")
    print(f"identical edit distances: {np.array_equal(base_message, ours_message)}")
    print(f"topsim baseline {base_rho:.15f} ours {ours_rho:.15f} |diff| {abs(base_rho - ours_rho):.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
