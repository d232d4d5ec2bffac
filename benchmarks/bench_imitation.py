"""Iterated learning's imitation phase: S new speakers taught one by one vs together.

At each iterated-learning boundary every run's new speaker imitates its predecessor's lexicon
(`imitation_iterations` teacher-forced steps). A batched run (`--seeds`, sweeps) teaches its runs'
speakers as one computation (`emergent_frl.imitation.imitate_together`: their own `log_prob_of`
under vmap over stacked parameters, compiled when the batch's training step is); one run alone
runs `imitate`. This prints the three, per run and iteration, for the paper preset's speakers, on
one thread, best of `--rounds` interleaved rounds (the compiled one compiled in the first).
It measures; it asserts nothing.

    python benchmarks/bench_imitation.py [--runs 2 8 32] [--iterations 100] [--rounds 3] [--preset paper]
                                         [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emergent_frl.imitation import Imitation, JointImitation, imitate_together  # noqa: E402
from emergent_frl.relearn import split_config  # noqa: E402
from emergent_frl.training import LanguageGameConfig, build_game  # noqa: E402
from games.presets import load_preset  # noqa: E402


def imitations(games, iterations: int) -> list[Imitation]:
    """Each game's speaker (a copy) taught a random lexicon over all objects, its own generator."""
    out = []
    for i, game in enumerate(games):
        objects = torch.arange(game.space.n_objects)
        target = torch.randint(game.sender.vocab_size, (len(objects), game.sender.max_len),
                               generator=torch.Generator().manual_seed(i))
        out.append(Imitation(copy.deepcopy(game.sender), game.space, objects, target, iterations=iterations,
                             batch_size=game.batch_size, lr=1e-3, generator=torch.Generator().manual_seed(i)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--iterations", type=int, default=100, help="imitation steps per timing")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--device", default="cpu", help="cpu (process clock) or cuda (wall clock, synchronized)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config, _ = split_config({**load_preset(args.preset), "device": args.device})
    on_cpu = args.device == "cpu"

    def clock() -> float:
        if not on_cpu:
            torch.cuda.synchronize()
        return time.process_time() if on_cpu else time.perf_counter()

    print(f"preset {args.preset}, {args.iterations} imitation steps of batch {config.batch_size}, torch "
          f"{torch.__version__}, {args.device}, 1 thread, {'process' if on_cpu else 'wall'} clock, best of "
          f"{args.rounds} rounds")
    for runs in args.runs:
        games = [build_game(LanguageGameConfig.from_dict({**config.to_dict(), "seed": s})) for s in range(runs)]
        compiled = JointImitation(compile=True)  # compiled once, kept for every round (as a trainer keeps it)
        ways = {"one by one": lambda work: [w.run() for w in work], "together": imitate_together,
                "together, compiled": compiled}
        best = dict.fromkeys(ways, float("inf"))
        for _ in range(args.rounds + 1):  # the first round warms up (and compiles)
            for name, teach in ways.items():
                work = imitations(games, args.iterations)
                work[0].sender = games[0].sender  # the same first speaker each round: one compilation
                start = clock()
                teach(work)
                best[name] = min(best[name], clock() - start)
        per = {name: 1e3 * seconds / runs / args.iterations for name, seconds in best.items()}
        print(f"S={runs:3d}: one by one {per['one by one']:.2f} ms, together {per['together']:.2f} ms "
              f"({per['one by one'] / per['together']:.2f}x), together compiled {per['together, compiled']:.2f} ms "
              f"({per['one by one'] / per['together, compiled']:.2f}x) per run and step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
