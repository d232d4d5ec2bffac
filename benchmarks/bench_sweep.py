"""How much faster is a sweep when runs of one shape train as batches?

Runs one grid twice with `python -m games.sweep`, each in a fresh process and a fresh output
folder: `--engine reference` (every run alone, one per worker) and the default batched engine
(runs of one shape as batches, split across the workers). Prints both wall times, start-up and
compiling included, and their ratio. It measures; it asserts nothing.

    python benchmarks/bench_sweep.py [--strategies no_reset pbf] [--seeds 4]
        [--iterations 3000] [--iterations-per-generation 1500] [--workers 2] [--extra --no-compile]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def timed_sweep(grid: Path, out: Path, flags: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "games.sweep", str(grid), "--out", str(out), *flags], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--strategies", nargs="+", default=["no_reset", "pbf"])
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per strategy")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--iterations-per-generation", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further games.sweep flags for the batched sweep (e.g. --no-compile --batch 8)")
    args = parser.parse_args()
    spec = {"base": {"preset": args.preset, "iterations": args.iterations,
                     "iterations_per_generation": args.iterations_per_generation},
            "grid": {"strategy": args.strategies, "seed": list(range(args.seeds))}}
    runs = len(args.strategies) * args.seeds
    with tempfile.TemporaryDirectory() as folder:
        grid = Path(folder) / "grid.yaml"
        grid.write_text(yaml.safe_dump(spec))
        common = ["--workers", str(args.workers)]
        reference = timed_sweep(grid, Path(folder) / "reference", [*common, "--engine", "reference"])
        batched = timed_sweep(grid, Path(folder) / "batched", [*common, *args.extra])
    print(f"sweep of {runs} runs x {args.iterations} iterations ({args.preset} preset), {args.workers} workers, "
          f"{os.cpu_count()} CPUs")
    print(f"  reference engine, one run per task : {reference:7.1f} s")
    print(f"  batched engine {' '.join(args.extra) or '(defaults)':<18}: {batched:7.1f} s")
    print(f"  ratio: {reference / batched:.2f}x")


if __name__ == "__main__":
    main()
