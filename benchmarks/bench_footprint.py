"""How close the language track's memory estimate (emergent_frl.footprint) comes to what a run
really uses: each config is built, trains 3 iterations and evaluates once in a fresh process, and
its peak resident memory above that of a minimal run (torch's own start-up) is compared with the
estimate. The estimate is
meant as an upper bound (it refuses a run it judges too large), so the ratio should stay >= 1.

    python benchmarks/bench_footprint.py
"""

from __future__ import annotations

import json
import subprocess
import sys

CONFIGS = {
    "paper preset": {},
    "hidden 1024": {"hidden_size": 1024},
    "vocab 2000, length 8": {"vocab_size": 2000, "max_len": 8},
    "batch 20000": {"batch_size": 20000},
    "reconstruction 64 x 64 objects": {"game": "reconstruction", "n_values": [64, 64]},
    "referential 48 x 48 objects": {"n_values": [48, 48]},
}

MEASURE = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from emergent_frl.footprint import estimate
from emergent_frl.training import LanguageGameConfig, build_game, build_optimizers, evaluate, make_generator, train_iterations
def step(config):
    game = build_game(config)
    train_iterations(game, build_optimizers(game, config), 3, generator=make_generator(config), progress=False)
    evaluate(game)
step(LanguageGameConfig(n_values=[2, 2], hidden_size=4, vocab_size=2, n_candidates=2).validate())  # torch's own start-up
config = LanguageGameConfig(**json.loads(sys.argv[1])).validate()
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
step(config)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"estimate": estimate(config).total, "used": peak - start}))
"""


def main() -> None:
    print(f"{'config':32s} {'estimate MiB':>13s} {'used MiB':>9s} {'estimate/used':>14s}")
    for name, values in CONFIGS.items():
        out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(values)], capture_output=True, text=True,
                             check=True)
        numbers = json.loads(out.stdout.strip().splitlines()[-1])
        used = max(numbers["used"], 1)
        print(f"{name:32s} {numbers['estimate'] / 2**20:13.1f} {used / 2**20:9.1f} "
              f"{numbers['estimate'] / used:14.2f}")


if __name__ == "__main__":
    main()
