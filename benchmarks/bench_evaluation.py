"""Does scoring the language over every object stay cheap next to training, up to 4,096 objects?

A run evaluates the greedy language over *all* objects every `eval_every` iterations and at each
generation boundary (before and after forgetting): accuracy, topsim over all object pairs
(N (N - 1) / 2 of them: 8.4 million at N = 4,096), posdis, bosdis. For object spaces from the
paper's 32 objects up to 4,096 this prints the time of one such evaluation (`evaluate`, and the
topsim inside it alone) beside the time of the training between two evaluations, measured in the
same process on the game scripts' engine (batched, one run, `--compile` off unless asked), so the
share of evaluation in a run is read off directly. It measures; it asserts nothing.

    python benchmarks/bench_evaluation.py [--values 8,4 16,16 8,8,8 8,8,8,8] [--eval-every 1000]
                                          [--iterations 200] [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.compositionality import topographic_similarity  # noqa: E402
from emergent_frl.batched import BatchedLanguageRuns  # noqa: E402
from emergent_frl.relearn import RelearnConfig, split_config  # noqa: E402
from emergent_frl.training import LanguageGameConfig, evaluate  # noqa: E402
from games.presets import load_preset  # noqa: E402


def best_seconds(fn, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", nargs="+", default=["8,4", "16,16", "8,8,8", "8,8,8,8"],
                        help="object spaces as values per attribute (default: 32, 256, 512, 4096 objects)")
    parser.add_argument("--eval-every", type=int, default=1000, help="training iterations between evaluations")
    parser.add_argument("--iterations", type=int, default=200, help="training iterations timed per space")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations timed per space (best counts)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="time training with torch.compile")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"paper preset, message length 2 and vocabulary 8 unless the space needs more (messages >= objects); "
          f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'objects':>8s} {'vocab^len':>9s} {'train ms/it':>11s} {'train s/eval':>12s} {'evaluate s':>10s} "
          f"{'topsim s':>8s} {'evaluation share':>16s}")
    for spec in args.values:
        n_values = [int(v) for v in spec.split(",")]
        n_objects = math.prod(n_values)
        max_len = max(2, math.ceil(math.log(n_objects, 8)))  # enough messages for every object
        values = {**load_preset("paper"), "n_attributes": len(n_values), "n_values": n_values,
                  "max_len": max_len, "eval_every": 0}
        game_config, _ = split_config(values)
        game_config = LanguageGameConfig.from_dict(game_config.validate().to_dict())
        runs = BatchedLanguageRuns([game_config], [RelearnConfig(iterations_per_generation=1)], progress=False,
                                   compile=args.compile)
        for _ in range(5):
            runs.train_step()
        train = best_seconds(lambda: [runs.train_step() for _ in range(args.iterations)], 2) / args.iterations
        game = runs.members[0].game  # its tensors are views of the batch's stacked ones
        metrics = {}
        evaluation = best_seconds(lambda: metrics.update(evaluate(game)), args.repeats)
        attributes = game.space.objects().numpy()
        symbols = metrics["messages"].numpy()
        topsim = best_seconds(lambda: topographic_similarity(attributes, symbols), args.repeats)
        between = train * args.eval_every
        share = evaluation / (evaluation + between)
        print(f"{n_objects:8d} {8 ** max_len:9d} {train * 1e3:11.2f} {between:12.2f} {evaluation:10.3f} "
              f"{topsim:8.3f} {100 * share:15.1f}%")
    print(f"evaluation share: one evaluation / (it + the training of --eval-every {args.eval_every} "
          "iterations); a generation adds one more evaluation after forgetting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
