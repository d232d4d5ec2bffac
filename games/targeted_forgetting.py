"""`python -m games.targeted_forgetting`: which examples does forgetting remove?

    python -m games.targeted_forgetting --seeds 0-4 --out runs/probe-ke               # KE-style, 10 % noise
    python -m games.targeted_forgetting --operator magnitude --keep-fraction 0.3 --grouping margin \\
        --noise-fraction 0 --seeds 0-4 --out runs/probe-imp                             # IMP-style, hard examples

Trains on scikit-learn's digits (a share of labels made wrong, or groups by softmax margin) and at
every --measure-every steps forgets a copy of the model, recording accuracy, loss and entropy of
both groups before and after. One run directory per seed: OUT/seedS/{config.json, probe.json}
(--seeds as the language games take it: 0-4, 0,3,7).
Prints the mean +- 95 % CI table over the seeds at the end (`python -m analysis.plot OUT --out
fig.png` prints it again and draws the figure; `--metric loss` or `entropy` for the others).

Running the same command again reuses every finished seed and redoes unfinished ones (an
interrupted sweep is continued by repeating its command); a seed folder holding a probe with other
settings is an error. Bad arguments give one line and exit status 2 before any folder is made; a
fault while working (disk full, out of memory) exit status 1; Ctrl-C exit status 130 with a line
saying which seed and step it stopped at.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import sys
import time

from analysis.cli import run_command, starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    from analysis.probe_plot import PROBE_FILE, load_probe, probe_summary, summary_table
    from emergent_frl.batched import parse_seeds
    from emergent_frl.runs import RunDirectory, check_new_folder, seed_folder
    from emergent_frl.vision.checks import check_seed
    from emergent_frl.vision.experiment import set_threads
    from emergent_frl.vision.footprint import out_of_memory_as_memory_error
    from emergent_frl.vision.models import ARCHITECTURES
    from emergent_frl.vision.probe import GROUPINGS, OPERATORS, ProbeConfig, TargetedForgettingProbe
    from games.image_classification import OneLineParser

DEFAULTS = dataclasses.asdict(ProbeConfig())
GROUP_NAMES = {"mislabeled": ["clean", "mislabeled"], "margin": ["easy", "hard"]}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m games.targeted_forgetting", description=__doc__,
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
    parser.add_argument("--seeds", metavar="LIST", default="0",
                        help="one run per seed, e.g. 0-4 or 0,3,7; each writes OUT/seedS (default: 0)")
    parser.add_argument("--out", default="runs/probe", help="parent folder of the per-seed run directories")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="one line per measurement (default on)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="deprecated: same as --no-progress")
    return parser


def configs_from_args(args: argparse.Namespace) -> list[ProbeConfig]:
    values = {k: getattr(args, k) for k in DEFAULTS if k != "seed"}
    seeds = parse_seeds(args.seeds)
    for seed in seeds:
        check_seed("--seeds", seed)
    configs = [ProbeConfig(seed=seed, **values) for seed in seeds]
    for config in configs:
        config.validate()
    return configs


def check_parent(out: str) -> pathlib.Path:
    """--out as the parent of the seed folders: named, and a folder if it exists. (It may hold other
    files, a figure drawn from the probes say; each seed folder is checked on its own.)"""
    if out.strip() == "":
        raise ValueError("--out '': give a directory name (an empty one would write into the current directory)")
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path}: exists and is not a directory")
    return path


def finished(path: pathlib.Path, config: ProbeConfig) -> bool:
    """Whether the seed folder `path` already holds this probe, finished; ValueError when it holds
    one with other settings. A probe.json cut short or unreadable is redone."""
    try:
        saved = json.loads((path / PROBE_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        return False
    mine, theirs = dataclasses.asdict(config), saved["config"]
    differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
    if differing:
        raise ValueError(f"--out: {path} already holds a probe with other settings "
                         f"({', '.join(f'{k}={theirs.get(k)!r}' for k in differing)}); choose another --out")
    measurements = saved.get("measurements")
    return isinstance(measurements, list) and len(measurements) == config.steps // config.measure_every


def plan(out: pathlib.Path, configs: list[ProbeConfig]) -> list[tuple[pathlib.Path, bool]]:
    """(seed folder, finished?) per seed, from reading alone: every refusal (a file in the way, a
    folder of other files, a probe with other settings) comes before any folder is made."""
    plans = []
    for config in configs:
        path = check_new_folder(out / seed_folder(config.seed))
        plans.append((path, (path / PROBE_FILE).exists() and finished(path, config)))
    return plans


def open_folders(paths: list[pathlib.Path], stack: contextlib.ExitStack) -> list[RunDirectory]:
    """Lock every seed folder for this process, the existing ones first: a second launch on the
    same --out is refused (naming the first one's PID) before this one makes any new folder."""
    order = sorted(range(len(paths)), key=lambda i: not paths[i].is_dir())
    opened: dict[int, RunDirectory] = {}
    for i in order:
        opened[i] = stack.enter_context(RunDirectory(paths[i]))
    return [opened[i] for i in range(len(paths))]


def run_one(probe: TargetedForgettingProbe, run_dir: RunDirectory, progress: bool) -> None:
    config = probe.config
    run_dir.write_config(dataclasses.asdict(config))
    measurements: list[dict] = []
    groups = GROUP_NAMES[config.grouping]
    start = time.perf_counter()

    def save(record: dict) -> None:
        measurements.append(record)
        run_dir.write_json(PROBE_FILE, {"config": dataclasses.asdict(config), "groups": groups,
                                        "measurements": measurements, "seconds": time.perf_counter() - start})
        if progress:
            cells = "  ".join(f"{g} {100 * record['before'][g]['accuracy']:5.1f} -> {100 * record['after'][g]['accuracy']:5.1f}"
                              for g in groups)
            print(f"seed {config.seed}  step {record['step']:6d}  {cells}", flush=True)

    probe.run(on_measure=save)


def interrupted(probe: TargetedForgettingProbe, finished_seeds: list[int]) -> KeyboardInterrupt:
    """The one line a Ctrl-C leaves: which seed and step, what is kept, how to go on."""
    config = probe.config
    names = ", ".join(map(str, finished_seeds))
    kept = {0: "", 1: f"seed {names} is finished and kept; "}.get(len(finished_seeds),
                                                                  f"seeds {names} are finished and kept; ")
    return KeyboardInterrupt(f"interrupted at seed {config.seed}, step {probe.step} of {config.steps}; {kept}"
                             f"run the same command again to continue (seed {config.seed} starts over)")


def probe_all(args: argparse.Namespace) -> int:
    """The command's work: every check before a folder is made, then one probe per seed."""
    set_threads(args.threads)
    configs = configs_from_args(args)
    out = check_parent(args.out)
    plans = plan(out, configs)
    try:
        probes = [TargetedForgettingProbe(config) for config in configs]  # data and models: fail before work
    except KeyboardInterrupt:
        raise KeyboardInterrupt("interrupted while loading the data; nothing was written") from None
    with contextlib.ExitStack() as stack:
        run_dirs = open_folders([path for path, _ in plans], stack)
        done_seeds: list[int] = []
        for probe, run_dir, (_, done) in zip(probes, run_dirs, plans):
            if done:
                if args.progress:
                    print(f"seed {probe.config.seed}: {run_dir.path} already holds this probe, finished; reusing it")
            else:
                try:
                    with out_of_memory_as_memory_error():
                        run_one(probe, run_dir, args.progress)
                except KeyboardInterrupt:
                    raise interrupted(probe, done_seeds) from None
            done_seeds.append(probe.config.seed)
        print(summary_table(probe_summary([load_probe(run_dir.path) for run_dir in run_dirs], "accuracy")))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 2 bad input (nothing written), 1 a fault while working (disk full, out of
    memory), 130 Ctrl-C; each failure one line on stderr."""
    return run_command(lambda: probe_all(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
