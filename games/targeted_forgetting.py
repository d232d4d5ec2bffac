"""`python -m games.targeted_forgetting`: which examples does forgetting remove?

    python -m games.targeted_forgetting --seeds 0 1 2 3 4 --out runs/probe-ke          # KE-style, 10 % noise
    python -m games.targeted_forgetting --operator magnitude --keep-fraction 0.3 --grouping margin \\
        --noise-fraction 0 --seeds 0 1 2 3 4 --out runs/probe-imp                       # IMP-style, hard examples

Trains on scikit-learn's digits (a share of labels made wrong, or groups by softmax margin) and at
every --measure-every steps forgets a copy of the model, recording accuracy, loss and entropy of
both groups before and after. One run directory per seed: OUT/seed_S/{config.json, probe.json}.
Prints the mean +- 95 % CI table over the seeds at the end (`python -m analysis.plot OUT --out
fig.png` prints it again and draws the figure; `--metric loss` or `entropy` for the others).

Running the same command again reuses every finished seed and redoes unfinished ones (an
interrupted sweep is continued by repeating its command); a seed folder holding a probe with other
settings is an error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time


from analysis.probe_plot import PROBE_FILE, load_probe, probe_summary, summary_table
from emergent_frl.runs import RunDirectory
from emergent_frl.vision.experiment import set_threads
from emergent_frl.vision.models import ARCHITECTURES
from emergent_frl.vision.probe import GROUPINGS, OPERATORS, ProbeConfig, TargetedForgettingProbe

DEFAULTS = dataclasses.asdict(ProbeConfig())
GROUP_NAMES = {"mislabeled": ["clean", "mislabeled"], "margin": ["easy", "hard"]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m games.targeted_forgetting", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(flag: str, **kwargs) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        kwargs["help"] = kwargs.get("help", "") + f" (default: {DEFAULTS[dest]})"
        parser.add_argument(flag, dest=dest, default=DEFAULTS[dest], **kwargs)

    add("--arch", choices=ARCHITECTURES, help="network (mlp = the reference's LeNet 300-100)")
    add("--width", type=int, help="mlp / small_cnn width")
    add("--image-size", type=int, help="digits upsampled to this size")
    add("--train-per-class", type=int, help="training examples per class (0 = the whole training split)")
    add("--grouping", choices=GROUPINGS, help="mislabeled vs clean, or hard (low margin) vs easy")
    add("--noise-fraction", type=float, help="share of training labels made wrong")
    add("--margin-fraction", type=float, help="margin grouping: share of examples called hard")
    add("--operator", choices=OPERATORS, help="random = KE-style re-init, magnitude = IMP-style prune + rewind")
    add("--keep-fraction", type=float, help="share of each weight tensor kept (classifier: half as much forgotten)")
    add("--steps", type=int, help="SGD steps")
    add("--batch-size", type=int, help="batch size")
    add("--lr", type=float, help="SGD learning rate")
    add("--momentum", type=float, help="SGD momentum")
    add("--measure-every", type=int, help="steps between measurements")
    add("--draws", type=int, help="forgetting draws averaged per measurement")
    add("--split-seed", type=int, help="seed of the digits train/test split")
    add("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (default: 0)")
    parser.add_argument("--out", default="runs/probe", help="parent folder of the per-seed run directories")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--quiet", action="store_true")
    return parser


def configs_from_args(args: argparse.Namespace) -> list[ProbeConfig]:
    values = {k: getattr(args, k) for k in DEFAULTS if k != "seed"}
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds {args.seeds}: each seed at most once")
    configs = [ProbeConfig(seed=seed, **values) for seed in args.seeds]
    for config in configs:
        config.validate()
    return configs


def run_directory(out: str, config: ProbeConfig) -> tuple[RunDirectory, bool]:
    """(the seed's run directory, whether it already holds this probe finished)."""
    path = pathlib.Path(out) / f"seed_{config.seed}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out: {path} exists and is not a directory")
    done = False
    if (path / PROBE_FILE).exists():
        try:
            saved = json.loads((path / PROBE_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            saved = {}  # a probe.json cut short: redo it
        if not isinstance(saved, dict):
            saved = {}
        mine = dataclasses.asdict(config)
        theirs = saved.get("config", mine)
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differing:
            raise ValueError(f"--out: {path} already holds a probe with other settings "
                             f"({', '.join(f'{k}={theirs.get(k)!r}' for k in differing)}); choose another --out")
        done = len(saved.get("measurements", ())) == config.steps // config.measure_every
    return RunDirectory(path), done


def run_one(probe: TargetedForgettingProbe, run_dir: RunDirectory, quiet: bool) -> None:
    config = probe.config
    run_dir.write_config(dataclasses.asdict(config))
    measurements: list[dict] = []
    groups = GROUP_NAMES[config.grouping]
    start = time.perf_counter()

    def save(record: dict) -> None:
        measurements.append(record)
        run_dir.write_json(PROBE_FILE, {"config": dataclasses.asdict(config), "groups": groups,
                                        "measurements": measurements, "seconds": time.perf_counter() - start})
        if not quiet:
            cells = "  ".join(f"{g} {100 * record['before'][g]['accuracy']:5.1f} -> {100 * record['after'][g]['accuracy']:5.1f}"
                              for g in groups)
            print(f"seed {config.seed}  step {record['step']:6d}  {cells}", flush=True)

    probe.run(on_measure=save)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_threads(args.threads)
        configs = configs_from_args(args)
        probes = [TargetedForgettingProbe(config) for config in configs]  # data and models: fail before work
        plans = [run_directory(args.out, config) for config in configs]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_dirs = [run_dir for run_dir, _ in plans]
    for probe, (run_dir, done) in zip(probes, plans):
        if done:
            if not args.quiet:
                print(f"seed {probe.config.seed}: {run_dir.path} already holds this probe, finished; reusing it")
            continue
        run_one(probe, run_dir, args.quiet)
    print(summary_table(probe_summary([load_probe(run_dir.path) for run_dir in run_dirs], "accuracy")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
