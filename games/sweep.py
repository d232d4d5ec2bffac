"""Sweeps of language runs from a grid file: `python -m games.sweep GRID.yaml --out DIR`.

A grid file (YAML) expands to runs:

    description: free text (optional)
    base:                              settings of every run: a preset and/or config fields
      preset: paper
      iterations: 300000               total iterations; with iterations_per_generation: generations
      iterations_per_generation: 3000
    grid:                              product of lists: one run per combination
      strategy: [no_reset, reset_receiver, pbf, iterated_learning]
      seed: [0, 1, 2, 3, 4]
    variants:                          overrides for the runs of one strategy
      reset_receiver: {iterations_per_generation: 6000}

Settings are the fields of `python -m games.referential` (`lr_sender`, `hidden_size`, ...),
written as config keys. Precedence: built-in default < preset < base < grid < variants. `preset`
may be a grid key too (`preset: [paper, ren]`); to vary a list-valued field give a list of lists
(`n_values: [[8, 4], [4, 4]]`). Every run is validated before any starts; errors name the grid key.

Each run writes DIR/[KEY=VALUE,...]/STRATEGY/seedSEED (one KEY=VALUE per grid key other than
strategy and seed), an ordinary run directory, so `python -m analysis.plot DIR --x iteration`
reads the whole tree. Re-launching the command skips finished runs and resumes unfinished ones from
their checkpoints; crashed runs are retried (`--retries`). As in the game scripts, runs train on
the batched engine: those of one shape (seeds, strategies with the same generation length;
iterated learning with iterated learning) train together, up to `--batch` per task
(`--engine reference`: each alone). Backends: `local` (a process pool on this machine,
`--workers`) or `ray` (Ray tasks; `--address auto` joins a running cluster, whose nodes must see
DIR and have this package installed; needs `pip install -e ".[dist]"`).
A grid file is read strictly: a key given twice in one mapping, aliases that expand to more than
100,000 values, and two grid values that make one run twice (`temperature: [1, 1.0]`) are errors.
A run directory that another live process still writes (a sweep still running) stops the sweep.
Exit status: 0 all runs done, 1 some failed (or a fault: disk full), 2 bad input (nothing ran),
130 interrupted (Ctrl-C or SIGTERM; the workers are ended, run the command again to resume).
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import re
import sys
from typing import Any, Callable, Sequence

from analysis.cli import run_command, starting

with starting(__name__):  # Ctrl-C while torch loads: one line, exit 130
    from emergent_frl.relearn import RelearnConfig
    from emergent_frl.runs import seed_folder
    from emergent_frl.batched import ENGINES
    from emergent_frl.sweeps import (
        BACKENDS, DEFAULT_BATCH, SweepError, SweepRun, check_sweep, default_workers, describe_tasks, plan_tasks, run_sweep,
        shorten, sigterm_interrupts,
    )
    from emergent_frl.training import ConfigError, LanguageGameConfig
    from games.cli import DEFAULT_RUN, ArgumentParser, resolve_length
    from games.presets import SWEEP_DIR, YamlError, available_presets, available_sweeps, load_preset, read_yaml

SECTIONS = ("description", "base", "grid", "variants")
FIELDS = (*LanguageGameConfig.__dataclass_fields__, *RelearnConfig.__dataclass_fields__)
SETTINGS = (*FIELDS, "preset", "iterations")
_MAX_NAME = 200
MAX_RUNS = 10_000
INTERRUPTED = "interrupted; run the same command again to resume"


def _show(key: Any) -> str:
    """A key as typed, or its (shortened) repr when it is no short plain printable text (messages
    stay one short line)."""
    plain = isinstance(key, str) and key and key.isprintable() and key.strip() == key and len(key) <= 80
    return key if plain else shorten(key)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SweepError(f"{where}: must be a mapping of settings, got {type(value).__name__} {shorten(value)}")
    for key in value:
        if not isinstance(key, str) or key not in SETTINGS:
            raise SweepError(f"{where}.{_show(key)}: unknown setting; known: {sorted(SETTINGS)}")
    return value


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_slug(v) for v in value)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))
    return text if text and not text.startswith(".") else f"_{text}"


def expand_grid(spec: Any, presets: Callable[[str], dict[str, Any]] = load_preset) -> list[SweepRun]:
    """The validated runs of a grid spec (a parsed grid file); SweepError names the key at fault."""
    if not isinstance(spec, dict):
        raise SweepError(f"grid file: must be a mapping with keys {list(SECTIONS)}, got {type(spec).__name__}")
    unknown = [key for key in spec if key not in SECTIONS]
    if unknown:
        raise SweepError(f"{_show(unknown[0])}: unknown section; a grid file has {list(SECTIONS)}")
    if not isinstance(spec.get("description", ""), (str, type(None))):
        raise SweepError("description: must be text")
    base = _mapping(spec.get("base"), "base")
    grid = _mapping(spec.get("grid"), "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid.{key}: must be a non-empty list of values, got {shorten(values)}")
    size = 1
    for key, values in grid.items():
        size *= len(values)
        if size > MAX_RUNS:
            raise SweepError(f"grid.{key}: the grid expands to more than {MAX_RUNS} runs")
    variants = spec.get("variants") or {}
    if not isinstance(variants, dict):
        raise SweepError(f"variants: must map a strategy to its settings, got {type(variants).__name__}")
    for strategy, overrides in variants.items():
        where = f"variants.{_show(strategy)}"
        _mapping(overrides, where)
        for key in ("strategy", "preset"):
            if isinstance(overrides, dict) and key in overrides:
                raise SweepError(f"{where}.{key}: cannot be set in a variant (variants are chosen by strategy)")

    runs, used = [], set()
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo))
        run = _expand_point(base, point, variants, presets)
        used.add(run.config["strategy"])
        runs.append(run)
    for strategy in variants:
        if strategy not in used:
            raise SweepError(f"variants.{_show(strategy)}: no run of the grid has this strategy; "
                             f"the grid's strategies: {sorted(used)}")
    seen = set()
    for run in runs:
        if run.name in seen:
            raise SweepError(f"grid: several runs get the directory {run.name}; make the grid's values distinct")
        seen.add(run.name)
    return runs


def _expand_point(base: dict, point: dict, variants: dict, presets) -> SweepRun:
    preset = point.get("preset", base.get("preset"))
    preset_where = "grid.preset" if "preset" in point else "base.preset"
    values: dict[str, Any] = dict(DEFAULT_RUN)
    sources: dict[str, str] = {}
    if preset is not None:
        if not isinstance(preset, str) or preset not in available_presets():
            raise SweepError(f"{preset_where}: {shorten(preset)}: unknown preset; available: {available_presets()}")
        try:
            from_preset = presets(preset)
        except ValueError as error:
            raise SweepError(f"{preset_where}: {error}") from None
        values.update(from_preset)
        sources.update({k: f"preset {preset}" for k in from_preset})
    layers = [("base", base), ("grid", point)]
    strategy = {**values, **base, **point}.get("strategy")
    if isinstance(strategy, str) and strategy in variants:
        layers.append((f"variants.{strategy}", variants[strategy] or {}))
    explicit: dict[str, Any] = {}
    for where, layer in layers:
        for key, value in layer.items():
            if key != "preset":
                values[key] = explicit[key] = value
                sources[key] = where
    values.setdefault("game", "referential")
    label = ", ".join(f"{k}={shorten(v, 40)}" for k, v in point.items())

    def failure(error: ValueError) -> SweepError:
        if isinstance(error, ConfigError):
            where = sources.get(error.field, "default")
            return SweepError(f"{where}.{error.field}: {shorten(error.value)}: {error.allowed}"
                              + (f" (grid point {label})" if label else ""))
        return SweepError(f"{str(error).splitlines()[0]}" + (f" (grid point {label})" if label else ""))

    try:
        total = values.pop("iterations", None)
        if total is not None:  # resolve_length multiplies these: check their type first
            for key in ("generations", "iterations_per_generation"):
                value = explicit.get(key, 1)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(key, value, "must be an integer >= 1")
        resolve_length(values, explicit, total)
        run = SweepRun("", values).validated()
    except ValueError as error:
        raise failure(error) from None
    config = run.config
    prefix = ",".join(f"{key}={_slug(config.get(key, point[key]))}" for key in point
                      if key not in ("strategy", "seed"))
    name = "/".join([*([prefix] if prefix else []), config["strategy"], seed_folder(config["seed"])])
    if len(prefix) > _MAX_NAME:
        raise SweepError(f"grid: directory name {prefix[:60]}... too long; use fewer grid keys")
    return SweepRun(name, config)


def find_grid_file(grid: str) -> pathlib.Path:
    """A grid file path, or the name of a shipped sweep (games/presets/sweeps/NAME.yaml)."""
    path = pathlib.Path(grid)
    if path.is_file():
        return path
    if grid in available_sweeps():
        return SWEEP_DIR / f"{grid}.yaml"
    raise SweepError(f"{grid}: no such grid file; shipped sweeps: {available_sweeps()}")


def load_grid(grid: str) -> tuple[dict[str, Any], list[SweepRun]]:
    """(the parsed grid file, its validated runs)."""
    path = find_grid_file(grid)
    try:
        spec = read_yaml(path, grid)  # bounded: an alias bomb or a repeated key is refused
    except YamlError as error:
        raise SweepError(str(error)) from None
    return spec, expand_grid(spec)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m games.sweep", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help=f"grid YAML file, or a shipped sweep: {', '.join(available_sweeps())}")
    parser.add_argument("--out", required=True, help="folder of the sweep's run directories")
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: process pool on this machine (default); ray: Ray tasks")
    parser.add_argument("--address", default=None,
                        help="ray: cluster address, HOST:PORT, ray://HOST:PORT or 'auto' (the cluster running here); "
                             "an address that answers nothing fails in seconds; default: start a local Ray")
    parser.add_argument("--workers", type=int, default=None,
                        help="local: parallel runs (default: CPU cores / --threads); "
                             "ray without --address: CPUs of the local Ray instance")
    parser.add_argument("--retries", type=int, default=2,
                        help="extra attempts of a crashed run, each resuming from its checkpoint (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per task (default 1)")
    parser.add_argument("--engine", choices=ENGINES, default="batched",
                        help="batched (default, as the game scripts): runs of one shape train together, "
                             "--batch at most per task; reference: every run alone. Started runs keep their "
                             "own engine (runs without one recorded: reference)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                        help=f"batched engine: at most this many runs per task (default {DEFAULT_BATCH}); "
                             "batches are split further so that every worker gets work")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default="auto",
                        help="batched engine: torch.compile the training step (default: where this machine "
                             "can, else eager with a warning)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    return parser


def print_plan(args: argparse.Namespace, runs: list[SweepRun]) -> None:
    """--dry-run: every run's state and engine, and the worker tasks the sweep would start (with
    --workers, or this machine's CPUs / --threads, as the workers a Ray cluster would have)."""
    runs, states = check_sweep(runs, args.out)
    slots = args.workers or default_workers(args.threads)
    todo = [run for run in runs if states[run.name] != "finished"]
    tasks = plan_tasks(todo, pathlib.Path(args.out), states, args.engine, args.batch, slots, args.compile)
    engine_of = {run.name: task.engine for task in tasks for run in task.runs}
    for run in runs:
        print(f"{states[run.name]:>8}  {run.name}  ({run.config['generations']} x "
              f"{run.config['iterations_per_generation']} iterations)  {engine_of.get(run.name, '')}".rstrip())
    plan = f"{len(tasks)} tasks for {slots} workers: {describe_tasks(tasks)}" if tasks else "nothing to do"
    print(f"{len(runs)} runs, {len(runs) - len(todo)} finished; {plan}")


def run_from_args(args: argparse.Namespace) -> int:
    """The command's work once its flags are parsed: 0 all runs done, 1 some failed."""
    for flag in ("workers", "retries", "threads", "batch"):
        value, minimum = getattr(args, flag), 0 if flag == "retries" else 1
        if value is not None and value < minimum:
            raise SweepError(f"--{flag} {value}: must be an integer >= {minimum}")
    spec, runs = load_grid(args.grid)
    if args.dry_run:
        print_plan(args, runs)
        return 0
    summary = run_sweep(runs, args.out, backend=args.backend, workers=args.workers, address=args.address,
                        retries=args.retries, threads=args.threads, engine=args.engine, batch=args.batch,
                        compile=args.compile, spec=spec)
    print(summary.report())
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 all runs done; 1 some failed (or a fault: disk full, out of memory); 2 bad input,
    nothing ran; 130 Ctrl-C or SIGTERM, workers ended. Every failure is one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def body() -> int:
        try:
            with sigterm_interrupts():
                return run_from_args(args)
        except ValueError as error:
            parser.error(str(error) or type(error).__name__)  # exit 2, one line
        except KeyboardInterrupt:
            raise KeyboardInterrupt(INTERRUPTED) from None

    return run_command(body, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
