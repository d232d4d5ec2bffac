"""`python -m games.image_classification`: image classifiers trained in generations with forgetting.

    python -m games.image_classification                                   # digits, small CNN, LLF
    python -m games.image_classification --strategy long_baseline --out runs/digits-long
    python -m games.image_classification --dataset cifar10 --data-root ~/data --arch resnet18 \\
        --stem cifar --strategy llf --layer layer4 --generations 11 --epochs 200 --lr 0.256
    python -m games.image_classification --resume runs/digits-llf --generations 8
    python -m games.image_classification --seeds 0-4 --out runs/digits-llf5    # OUT/seed0 .. OUT/seed4

Writes RUN_DIR/config.json, generations.jsonl (one record per generation: train/val/test top-1),
checkpoint.pt and accuracy.png (accuracy per generation, drawn by analysis.plot; --no-plot to skip).
--seeds LIST (0-4, 0,3,7) trains one run per seed, one after the other, into OUT/seedS, and draws
the mean and 95 % CI over them into OUT/accuracy.png, as the language games do. Bad arguments give a
one-line error and exit status 2 before any work starts (nothing is written); a fault while working
(disk full, out of memory) exit status 1; Ctrl-C exit status 130 with a line saying where training
stopped and how to continue it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import pathlib
import shlex
import sys
from typing import NoReturn

from analysis.cli import run_command, starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    from emergent_frl.batched import parse_seeds
    from emergent_frl.runs import CONFIG_FILE, RunDirectory, check_new_folder, seed_folder
    from emergent_frl.vision.checks import check_seed
    from emergent_frl.vision.datasets import DATASETS
    from emergent_frl.vision.experiment import ImageRunConfig, merge_resumed, prepare_run, set_threads, start_run
    from emergent_frl.vision.footprint import out_of_memory_as_memory_error
    from emergent_frl.vision.models import ARCHITECTURES, STEMS
    from emergent_frl.vision.strategies import REWIND_SCOPES, SPLIT_MODES, STRATEGIES
    from emergent_frl.vision.trainer import MAX_GENERATIONS, GenerationTrainer

DEFAULTS = ImageRunConfig().to_flat()
PLOT_FILE = "accuracy.png"
PLOT_METRICS = ("train_accuracy", "val_accuracy", "test_accuracy")
LAUNCH_FLAGS = ("out", "resume", "progress", "threads", "seeds", "plot")  # how to run, not what


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are ValueErrors, so that `run_command` reports them as every other bad
    input: one line, `error: ...`, exit 2 (argparse's own would print the usage first, over several
    lines, and leave `main` by SystemExit instead of returning the code)."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m games.image_classification", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)

    section = [parser]  # the argument group `add` files the next flags under

    def add(flag: str, **kwargs) -> None:
        dest = flag.lstrip("-").replace("-", "_")
        shown = DEFAULTS.get(dest)
        kwargs.setdefault("help", "")
        kwargs["help"] += f" (default: {shown})" if dest in DEFAULTS else ""
        section[-1].add_argument(flag, dest=dest, default=None, **kwargs)

    section.append(parser.add_argument_group("data"))
    add("--dataset", choices=DATASETS, metavar="NAME",
        help="digits: scikit-learn's 8x8 digits, offline; cifar10, cifar100, flowers102: torchvision's files "
             "under --data-root (never downloaded); imagefolder: --data-root/{train,val,test}/CLASS/IMAGE "
             "(val optional); cub200, aircraft, mit67, dogs, flower102: the same tree under --data-root/NAME "
             "with NAME = CUB200, Aircrafts, MIT67, Dog120, Flower102")
    add("--data-root", help="folder holding the data sets (not used by digits)")
    add("--image-size", type=int, help="square input size; none = the data set's (digits 16, CIFAR 32, else 224)")
    add("--train-per-class", type=int, help="few-shot training set: examples per class (0 = all)")
    add("--val-fraction", type=float, help="held-out share of train where a data set has no val split")
    add("--split-seed", type=int, help="seed of the train/val/test split (independent of --seed)")
    section[-1].add_argument("--no-augment", dest="augment", action="store_false", default=None, help="no train-time augmentation")
    add("--workers", type=int, help="DataLoader workers for image-file data sets (augmentation is seeded per "
                                   "image, so the count does not change the batches)")

    section.append(parser.add_argument_group("model"))
    add("--arch", choices=ARCHITECTURES, help="network")
    add("--stem", choices=STEMS, help="ResNet stem: cifar = 3x3 stride-1 conv1 and no max-pool")
    add("--width", type=int, help="small_cnn / mlp width (ResNets have torchvision's widths)")

    section.append(parser.add_argument_group("strategy"))
    add("--strategy", choices=STRATEGIES, help="what happens between generations")
    add("--layer", help="llf: first forgotten module (none = arch default: small_cnn layer3, resnet layer4)")
    add("--reverse", action="store_true", help="llf: forget the modules before --layer instead")
    add("--split-rate", type=float, help="ke: kept (fit-hypothesis) fraction")
    add("--split-mode", choices=SPLIT_MODES, help="ke: kernel-level or weight-level split")
    add("--prune-fraction", type=float, help="imp: share of surviving weights pruned per generation")
    add("--rewind-epoch", type=int, help="imp: rewind survivors to the weights after this epoch of gen. 0 (0 = init)")
    add("--rewind-scope", choices=REWIND_SCOPES,
        help="imp: model = rewind the whole network (biases, BatchNorm too, as OpenLTH); weights = survivors only")

    section.append(parser.add_argument_group("training"))
    add("--generations", type=int, help="generations (the long baseline: segments of --epochs)")
    add("--epochs", type=int, help="epochs per generation")
    add("--batch-size", type=int, help="batch size")
    add("--lr", type=float, help="peak SGD learning rate")
    add("--momentum", type=float, help="SGD momentum")
    add("--weight-decay", type=float, help="SGD weight decay")
    add("--warmup-epochs", type=int, help="linear warm-up epochs before the cosine")
    add("--label-smoothing", type=float, help="cross-entropy label smoothing")
    add("--seed", type=int, help="seed of the initial weights, batch order, augmentation and forgetting")
    add("--device", help="auto, cpu, cuda, cuda:N")
    add("--compile", action="store_true", help="torch.compile the model")
    section[-1].add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no bf16 autocast on CUDA")

    parser.add_argument("--seeds", metavar="LIST", default=None,
                        help="one run per seed, e.g. 0-4 or 0,3,7, one after the other; each writes OUT/seedS")
    parser.add_argument("--out", default=None,
                        help="run directory, or the seeds' parent with --seeds "
                             "(default: runs/image/DATASET-ARCH-STRATEGY-seedS)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted run in DIR")
    parser.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                        help=f"write RUN_DIR/{PLOT_FILE} (accuracy per generation; with --seeds OUT/{PLOT_FILE}, "
                             "mean and 95 %% CI over the seeds) (default on)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="one line per generation (default on)")
    parser.add_argument("--quiet", dest="progress", action="store_false", help="deprecated: same as --no-progress")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 is much faster on a busy small machine)")
    return parser


def config_from_args(args: argparse.Namespace, stack: contextlib.ExitStack
                     ) -> tuple[ImageRunConfig, str, RunDirectory | None]:
    """(config, run directory, the resumed run's directory, opened and locked) from parsed
    arguments; ValueError on bad input. A resumed run is locked before its files are read, so a
    second process is refused (naming the writer's PID) rather than reading half-written state."""
    given = {k: v for k, v in vars(args).items() if v is not None and k not in LAUNCH_FLAGS}
    if args.resume is None:
        flat = dict(DEFAULTS)
        flat.update(given)
        config = ImageRunConfig.from_flat(flat)
        out = args.out
        if out is None:
            out = f"runs/image/{config.data.dataset}-{config.arch}-{config.strategy.name}-seed{args.seeds or config.seed}"
        check_new_folder(out)  # read-only: '' or a file or a folder of other files fail before the data loads
        return config, out, None
    if args.out is not None and args.out != args.resume:
        raise ValueError(f"--out {args.out} and --resume {args.resume} name different directories")
    if not (pathlib.Path(args.resume) / CONFIG_FILE).is_file():  # checked before the lock file is made
        raise ValueError(f"--resume {args.resume}: holds no {CONFIG_FILE}; not a run directory of this script")
    run_dir = stack.enter_context(RunDirectory(args.resume, resume=True))
    config = resumed_config(run_dir, given)
    done = len(run_dir.records())
    if config.train.generations < done:
        raise ValueError(f"--generations {config.train.generations}: {args.resume} already holds {done} "
                         f"generations; allowed range is {done}..{MAX_GENERATIONS}")
    return config, args.resume, run_dir


def resumed_config(run_dir: RunDirectory, given: dict) -> ImageRunConfig:
    """The saved configuration with the changes a resume allows; an invalid one (config.json edited
    by hand, or a device this machine lacks) is a ValueError that names the file too."""
    saved = run_dir.read_config()
    if saved is None:
        raise ValueError(f"--resume {run_dir.path}: holds no {CONFIG_FILE}; not a run directory of this script")
    merged = merge_resumed(saved, given)
    try:
        config = ImageRunConfig.from_flat(merged)
        config.validate()
    except ValueError as error:
        raise ValueError(f"{error} (settings of {run_dir.path / CONFIG_FILE} with this command's changes)") from None
    return config


def format_record(record: dict) -> str:
    def pct(value):
        return "  -  " if value is None else f"{100 * value:5.1f}"

    return (f"gen {record['generation']:3d}  epoch {record['epoch']:5d}  train {pct(record['train_accuracy'])}  "
            f"val {pct(record['val_accuracy'])}  test {pct(record['test_accuracy'])}  "
            f"forgot {100 * record['forgotten_fraction']:5.1f}%  {record['seconds']:6.1f}s")


def seeds_from_args(args: argparse.Namespace) -> list[int] | None:
    """--seeds as a list (None without it); ValueError for a bad list or a flag it excludes."""
    if args.seeds is None:
        return None
    seeds = parse_seeds(args.seeds)
    for seed in seeds:
        check_seed("--seeds", seed)
    if args.seed is not None:
        raise ValueError("--seeds: give --seed or --seeds, not both")
    if args.resume is not None:
        raise ValueError("--seeds: cannot be combined with --resume; resume one seed with --resume OUT/seedS")
    return seeds


def interrupted(trainer: GenerationTrainer, run_dir: RunDirectory, epochs: int,
                seeds_left: tuple[int, list[int], pathlib.Path] | None = None) -> KeyboardInterrupt:
    """The one line a Ctrl-C leaves: where training stood, what is saved, how to go on (with
    --seeds: the seed it stopped in, and the seeds not yet started)."""
    generation, epoch = trainer.position
    saved = trainer.saved_generations
    kept = {0: "no generation is saved yet", 1: "generation 0 is saved"}.get(
        saved, f"generations 0..{saved - 1} are saved")
    where, rest = "", ""
    if seeds_left is not None:
        seed, later, parent = seeds_left
        where = f"seed {seed}, "
        if later:
            rest = (f", then the seeds not started with --seeds {','.join(map(str, later))} "
                    f"--out {shlex.quote(str(parent))}")
    return KeyboardInterrupt(f"interrupted at {where}generation {generation}, epoch {epoch} of {epochs}; {kept}; "
                             f"continue with --resume {shlex.quote(str(run_dir.path))}{rest}")


def write_plot(out: str | pathlib.Path) -> pathlib.Path | None:
    """`out`/accuracy.png: the accuracies recorded with a finite value against generation (mean and
    95 % CI when `out` holds one run per seed), drawn by the analysis package; None when no run
    recorded one yet."""
    from analysis.plot import plot_curves
    from analysis.runs import find_runs, load_run, points

    out = pathlib.Path(out)
    runs = [load_run(path) for path in find_runs([out])]
    metrics = [metric for metric in PLOT_METRICS
               if any(math.isfinite(value) for run in runs for _, value in points(run, metric))]
    if not metrics:
        return None
    return plot_curves(runs, metrics, str(out / PLOT_FILE), title=str(out))


def train_one(args: argparse.Namespace, config: ImageRunConfig, out: str, run_dir: RunDirectory | None,
              prepared=None, seeds_left: tuple[int, list[int], pathlib.Path] | None = None) -> list[int]:
    """One run's generations (`prepared`: the run already built, else built here; `run_dir`: a
    resumed run's directory, opened and locked by the caller); the generations trained. Every check
    comes before its run directory is written."""
    with contextlib.ExitStack() as stack:
        if prepared is None:
            try:
                prepared = prepare_run(config)
            except KeyboardInterrupt:
                raise KeyboardInterrupt("interrupted while loading the data; nothing was written") from None
        if run_dir is None:
            run_dir = stack.enter_context(RunDirectory(out))
        start = start_run(prepared, run_dir, resume=args.resume is not None)
        prefix = "" if seeds_left is None else f"seed {config.seed}  "
        if args.progress:
            print(f"{prefix}{config.data.dataset} {prepared.data.sizes()} -> {config.arch} on {prepared.device}, "
                  f"strategy {config.strategy.name}, run directory {run_dir.path}", flush=True)
        trained = []

        def report(record: dict) -> None:
            trained.append(record["generation"])
            if args.progress:
                print(prefix + format_record(record), flush=True)

        try:
            with out_of_memory_as_memory_error():
                prepared.trainer.run(run_dir, start=start, on_record=report)
        except KeyboardInterrupt:
            raise interrupted(prepared.trainer, run_dir, config.train.epochs, seeds_left) from None
    return trained


def train(args: argparse.Namespace) -> int:
    """The command's work: every check before a run directory is written, then the generations
    (with --seeds: every seed folder checked and the first run built before any is written)."""
    set_threads(args.threads)
    seeds = seeds_from_args(args)
    with contextlib.ExitStack() as stack:
        config, out, run_dir = config_from_args(args, stack)
        if seeds is None:
            trained = train_one(args, config, out, run_dir)
            if not trained and args.progress:
                print(f"nothing to do: all {config.train.generations} generations are done "
                      "(raise --generations to go on)")
    if seeds is not None:
        configs = [dataclasses.replace(config, seed=seed) for seed in seeds]
        outs = [str(check_new_folder(pathlib.Path(out) / seed_folder(seed))) for seed in seeds]
        try:
            prepared = prepare_run(configs[0])
        except KeyboardInterrupt:
            raise KeyboardInterrupt("interrupted while loading the data; nothing was written") from None
        for i, (seed_config, seed_out) in enumerate(zip(configs, outs)):
            train_one(args, seed_config, seed_out, None, prepared if i == 0 else None,
                      seeds_left=(seeds[i], seeds[i + 1:], pathlib.Path(out)))
    if args.plot:
        written = write_plot(out)
        if written is not None and args.progress:
            print(f"wrote {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 done, 2 bad input (nothing written), 1 a fault while working (disk full, out of
    memory), 130 Ctrl-C; each failure one line on stderr."""
    return run_command(lambda: train(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
