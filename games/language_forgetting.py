"""`python -m games.language_forgetting`: what forgetting removes from a language.

    python -m games.language_forgetting --seeds 0-4 --out runs/lf-reinit            # keep 0.5, random re-init
    python -m games.language_forgetting --seeds 0-4 --out runs/lf-zero --forget-mask magnitude \\
        --mask-timing once_init --reset zero                                        # zero the 50 % smallest at init
    python -m games.language_forgetting --seeds 0-4 --out runs/lf-relearn --relearn-every 100
    python -m games.language_forgetting --resume runs/lf-reinit                      # continue after Ctrl-C

A speaker (the games' Sender) imitates a target language by supervised NLL: a
--compositional-fraction of the objects get their compositional message (symbol i names
attribute i), the others a permutation of theirs. Every --measure-every iterations forgetting is
applied to --draws copies of the speaker, and exact match, per-position entropy and loss are
recorded for each half before and after; with --relearn-every N the speaker itself is forgotten
every N iterations and relearns (the paper's ease_of_teaching/mixed_language_forget*.py).

Writes OUT (one seed: --seed) or OUT/seedS (each seed of --seeds, e.g. 0-4 or 0,3,7), each with
config.json, language.json (the target language), measurements.jsonl (one record per
measurement) and checkpoint.pt; then OUT/language_forgetting.png and OUT/report.md, the mean
+- 95 % CI over seeds of each half's drop and of the gap (drop of the permuted half minus drop of
the compositional half), also printed. --resume OUT continues every unfinished seed.

Bad input is one stderr line and exit 2 before anything is written; a fault while working (disk
full) exit 1; Ctrl-C exit 130 with the --resume that continues.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import re
import sys
import time
from typing import Any, Sequence

from analysis.cli import ArgumentParser, run_command, starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    import torch

    from emergent_frl.batched import parse_seeds
    from emergent_frl.knobs import ConfigError, add_knob_arguments, flag_for, knobs
    from emergent_frl.mixed_language.config import FORGETTING, LANGUAGE, TRAINING, LanguageForgettingConfig
    from emergent_frl.mixed_language.experiment import LanguageForgettingRun
    from emergent_frl.mixed_language.report import plot_runs, report_table, seed_summary
    from emergent_frl.runs import (CONFIG_FILE, RunDirectory, atomic_write_text, check_new_folder, read_settings,
                                   seed_folder)

PROG = "python -m games.language_forgetting"
SCRIPT = "language_forgetting"
MEASUREMENTS = "measurements.jsonl"
LANGUAGE_FILE = "language.json"
PLOT_FILE = "language_forgetting.png"
REPORT_FILE = "report.md"
FIELDS = tuple(knobs(LanguageForgettingConfig))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for group in (LANGUAGE, TRAINING, FORGETTING):
        add_knob_arguments(parser.add_argument_group(group), LanguageForgettingConfig, group)
    output = parser.add_argument_group("runs and output")
    output.add_argument("--seeds", metavar="LIST", help="one run per seed, e.g. 0-4 or 0,3,7; each writes OUT/seedS")
    output.add_argument("--out", help="run directory (or, with --seeds, the parent of the seed directories); "
                                      "default runs/language_forgetting-seedS-TIME")
    output.add_argument("--resume", metavar="DIR", help="continue the run(s) in DIR (a run directory, or the "
                                                        "--out of --seeds) with their own settings")
    output.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                        help=f"write {PLOT_FILE} (default on)")
    output.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1)")
    output.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a line per measurement (default on; --no-progress: none)")
    output.add_argument("--quiet", dest="progress", action="store_false", help="deprecated: same as --no-progress")
    return parser


def as_flag_error(error: ConfigError) -> ValueError:
    """A config field's error under its flag: '--keep-fraction 1.5: must be in [0.0, 1.0]'."""
    value = " ".join(map(str, error.value)) if isinstance(error.value, (list, tuple)) else error.value
    return ValueError(f"{flag_for(error.field)} {value}: {error.allowed}")


def validated(values: dict[str, Any]) -> LanguageForgettingConfig:
    if isinstance(values.get("n_values"), list) and len(values["n_values"]) == 1:
        values = {**values, "n_values": values["n_values"][0]}
    try:
        return LanguageForgettingConfig.from_dict(values).validate()
    except ConfigError as error:
        raise as_flag_error(error) from None


def explicit(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}


def seed_of(path: pathlib.Path) -> int:
    match = re.fullmatch(r"seed(\d+)", path.name)
    return int(match.group(1)) if match else -1


def saved_runs(resume: str) -> list[tuple[pathlib.Path, LanguageForgettingConfig]]:
    """The run directories under --resume (itself, or its seedS folders) with their configs."""
    root = pathlib.Path(resume)
    if str(resume).strip() == "" or not root.is_dir():
        raise ValueError(f"--resume {resume}: is not a directory")
    paths = [root] if (root / CONFIG_FILE).is_file() else sorted(
        (p for p in root.iterdir() if seed_of(p) >= 0 and (p / CONFIG_FILE).is_file()), key=seed_of)
    if not paths:
        raise ValueError(f"--resume {resume}: holds no {CONFIG_FILE} and no seedS/{CONFIG_FILE}; is it an --out of {PROG}?")
    runs = []
    for path in paths:
        saved = read_settings(path / CONFIG_FILE)
        if saved.get("script") != SCRIPT:
            raise ValueError(f"--resume: {path / CONFIG_FILE} is not a run of {PROG}")
        runs.append((path, validated({k: v for k, v in saved.items() if k in FIELDS})))
    return runs


def planned_runs(args: argparse.Namespace) -> tuple[pathlib.Path, list[tuple[pathlib.Path, LanguageForgettingConfig]], bool]:
    """(where the report goes, [(run directory, config)], resuming?), every check done before work."""
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: must be >= 1")
    given = explicit(args)
    if args.resume is not None:
        for name, value in (("--seeds", args.seeds), ("--out", args.out), *[(flag_for(k), v) for k, v in given.items()]):
            if value is not None:
                raise ValueError(f"{name}: cannot be combined with --resume (the runs' own config.json is used)")
        return pathlib.Path(args.resume), saved_runs(args.resume), True
    if args.seeds is not None and "seed" in given:
        raise ValueError("--seeds: give --seed or --seeds, not both")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [given.get("seed", 0)]
    configs = [validated({**given, "seed": seed}) for seed in seeds]
    out = args.out if args.out is not None else (
        f"runs/{SCRIPT}-seed{args.seeds or seeds[0]}-{time.strftime('%Y%m%d-%H%M%S')}")
    root = check_new_folder(out)
    paths = [root] if args.seeds is None else [check_new_folder(root / seed_folder(seed)) for seed in seeds]
    return root, list(zip(paths, configs)), False


def show(record: dict[str, Any], seed: int) -> None:
    """One line per measurement: exact match of each half, before -> after forgetting."""
    cells = "  ".join(f"{half[:4]} {100 * record['before'][half]['exact_match']:5.1f} -> "
                      f"{100 * record['after'][half]['exact_match']:5.1f}"
                      for half in ("compositional", "permuted") if record["before"][half] is not None)
    print(f"seed {seed}  iteration {record['iteration']:6d}  loss {record['train_loss']:.4f}  {cells}", flush=True)


def train(run: LanguageForgettingRun, run_dir: RunDirectory, quiet: bool, resume_hint: str) -> None:
    """Continue `run` from its checkpoint (if any) to the end, a record and a checkpoint per measurement."""
    state = run_dir.load_checkpoint()
    if state is not None:
        run.load_state_dict(state["run"])
    run_dir.truncate_records(0 if state is None else int(state["records"]), MEASUREMENTS)
    count = 0 if state is None else int(state["records"])
    try:
        while not run.finished:
            record = run.advance()
            run_dir.append_record(record, MEASUREMENTS)
            count += 1
            run_dir.save_checkpoint({"run": run.state_dict(), "records": count})
            if not quiet:
                show(record, run.config.seed)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"interrupted at seed {run.config.seed}, iteration {run.iteration}; "
                                f"continue with --resume {resume_hint}") from None


def run_all(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    root, planned, resuming = planned_runs(args)
    torch.set_num_threads(args.threads or 1)
    with contextlib.ExitStack() as stack:
        dirs = [stack.enter_context(RunDirectory(path, resume=resuming)) for path, _ in planned]
        runs = [LanguageForgettingRun(config) for _, config in planned]
        if not resuming:
            launch = {"script": SCRIPT, "argv": list(sys.argv[1:] if argv is None else argv)}
            for run_dir, run in zip(dirs, runs):
                run_dir.write_config({**run.config.to_dict(), **launch})
                run_dir.write_json(LANGUAGE_FILE, run.language.to_json())
        for run_dir, run in zip(dirs, runs):
            train(run, run_dir, not args.progress, str(root))
        records = [run_dir.records(MEASUREMENTS) for run_dir in dirs]
    config = planned[0][1]
    settings = {k: v for k, v in config.to_dict().items() if k != "seed"}
    text = (f"# Language forgetting: {root}\n\nseeds {[c.seed for _, c in planned]}; settings {settings}\n\n"
            f"Per seed: mean over the measurements with iteration > {config.iterations // 2}.\n\n"
            + report_table([seed_summary(r, config.iterations) for r in records]) + "\n")
    atomic_write_text(root / REPORT_FILE, text)
    print(text)
    if args.plot:
        plot_runs(records, str(root / PLOT_FILE), title=f"{root}: {len(records)} seed(s)")
    print(f"wrote {root}: {REPORT_FILE}" + (f", {PLOT_FILE}" if args.plot else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 done, 2 bad input (nothing written), 1 a fault while working, 130 Ctrl-C."""
    parser = build_parser()
    return run_command(lambda: run_all(parser.parse_args(argv), argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
