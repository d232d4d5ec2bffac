"""The command line shared by the language game scripts (`python -m games.referential ...`).

A script builds its parser, and `main` turns the flags into a validated flat config (game knobs
plus generation knobs, see `emergent_frl.relearn.split_config`) and runs it:

    parser = build_parser("referential", description)   # preset, game, training, generations, output
    args = parser.parse_args(argv)
    values = values_from_args(args, "referential")       # built-in default < preset < explicit flags
    run_from_args(args, values, argv)                    # the generations, the run directory, the plot

Bad input is reported as one line on stderr with exit code 2, before any file is written. Flags
default to None so a preset's values survive unless a flag is given explicitly; each config field
`x_y` has the flag `--x-y`, made from the field's knob (emergent_frl.knobs: type, choices, help),
so errors on fields are reported under their flag. Only the flags that are no config field
(--preset, --lr, --iterations, --seeds, --engine, ...) are written here.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time
from typing import Any, Iterator, NoReturn, Sequence

import torch

from emergent_frl.batched import ENGINES, parse_seeds, recorded_engine, run_language_batched
from emergent_frl.compiling import resolve_auto
from emergent_frl.logging_sinks import check_available, open_sinks
from emergent_frl.knobs import add_knob_arguments, flag_for
from emergent_frl.relearn import (EVALUATIONS_FILE, GENERATIONS, NonFiniteError, RelearnConfig, run_language,
                                  split_config)
from emergent_frl.runs import CONFIG_FILE, check_new_folder, dumps, read_settings, seed_folder
from emergent_frl.settings_history import saved_game_settings
from emergent_frl.training import GAME, OUTPUT, TRAINING, ConfigError, Interrupted, LanguageGameConfig
from analysis.cli import ArgumentParser, one_line, run_command
from games.presets import available_presets, load_preset

# The built-in default run (no preset, no flags): the paper's object space and agents, partial
# balanced forgetting every 2,500 iterations for 4 generations: about 55 s of CPU on 2 cores,
# eager (docs/RESULTS.md, Speed), so a first run shows forgetting and relearning within a minute.
DEFAULT_RUN = {"strategy": "pbf", "generations": 4, "iterations_per_generation": 2500}
PLOT_FILE = "topsim.png"
DYNAMICS_PLOT_FILE = "dynamics.png"  # topsim and accuracy inside generations, forgetting marked


def fail(parser: argparse.ArgumentParser, error: Exception) -> NoReturn:
    """Report a bad value under its flag (ConfigError) or as is, then exit 2."""
    if isinstance(error, ConfigError):
        value = error.value
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        parser.error(f"{flag_for(error.field)} {value}: {error.allowed}")
    parser.error(str(error).splitlines()[0] if str(error) else type(error).__name__)


@contextlib.contextmanager
def exit_on_error(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Turn ValueError raised inside the block (bad input found before work) into exit code 2."""
    try:
        yield
    except ValueError as error:
        fail(parser, error)


# -- argument groups -------------------------------------------------------------------------
def add_preset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=available_presets(), default=None,
        help="start from a named preset (games/presets/NAME.yaml); explicit flags override it",
    )


def add_game_arguments(parser: argparse.ArgumentParser, game: str) -> argparse._ArgumentGroup:
    """Object space, channel and agent architecture (the knobs of LanguageGameConfig's game group;
    some, e.g. --n-candidates, only for the referential game)."""
    group = parser.add_argument_group(GAME)
    add_knob_arguments(group, LanguageGameConfig, GAME, game=game)
    return group


def add_training_arguments(parser: argparse.ArgumentParser, game: str | None = None) -> argparse._ArgumentGroup:
    """The training knobs of LanguageGameConfig, then how this process trains."""
    group = parser.add_argument_group(TRAINING)
    add_knob_arguments(group, LanguageGameConfig, TRAINING, game=game)
    group.add_argument("--lr", type=float, help="learning rate of both agents (sets --lr-sender and --lr-receiver)")
    group.add_argument("--seeds", metavar="LIST",
                       help="several seeds in one process, trained as one batched computation, e.g. "
                            "0-15 or 0,3,7; each writes OUT/seedS")
    group.add_argument("--engine", choices=ENGINES,
                       help="batched (default): the fast stacked engine, also used for --seeds; "
                            "reference: the agents' own modules and torch optimizers (what the "
                            "Python run_language runs). Both follow the same seed in distribution, "
                            "not bit for bit. A resumed run keeps its engine")
    group.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="batched engine: torch.compile the training step (a warm-up of tens of "
                            "seconds, then a shorter step); default: compile when the work pays for the warm-up "
                            "(iterations x seeds >= 20,000) and the machine can, "
                            "else train eager; --compile: always; --no-compile: never")
    group.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (default 1: these small networks run fastest on one "
                            "thread, and a second one mostly waits; run seeds side by side instead)")
    return group


def add_generation_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """How long to train and what is forgotten between generations (RelearnConfig's knobs; the
    help shows this command's defaults, DEFAULT_RUN)."""
    group = parser.add_argument_group(
        GENERATIONS,
        "Total iterations = generations x iterations per generation; give any two of the three "
        "(--iterations alone: one generation, which only --strategy no_reset allows).")
    add_knob_arguments(group, RelearnConfig, GENERATIONS, default_overrides=DEFAULT_RUN)
    group.add_argument("--iterations", type=int, help="training batches in all generations together")
    return group


def add_output_arguments(parser: argparse.ArgumentParser, game: str | None = None) -> argparse._ArgumentGroup:
    group = parser.add_argument_group(OUTPUT)
    add_knob_arguments(group, LanguageGameConfig, OUTPUT, game=game)
    group.add_argument("--tensorboard", metavar="DIR", default=None,
                       help="also write every evaluation's and generation's scalars as TensorBoard event files "
                            "into DIR (DIR/seedS per seed); needs pip install -e \".[log]\"")
    group.add_argument("--wandb", action="store_true",
                       help="also log them to Weights & Biases (one run per seed, grouped; WANDB_MODE=offline "
                            "works offline); needs pip install -e \".[log]\"")
    group.add_argument("--out", help="run directory to create (config.json, generations.jsonl, ...); "
                                     "default runs/GAME-STRATEGY-seedS-TIME")
    group.add_argument("--resume", metavar="RUN_DIR",
                       help="continue an interrupted run from its checkpoint; --generations may extend it")
    group.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                       help=f"write RUN_DIR/{PLOT_FILE} (topsim and accuracy per generation) and RUN_DIR/{DYNAMICS_PLOT_FILE} "
                            "(inside generations, forgetting marked) (default on)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar (default: only on a terminal)")
    return group


def build_parser(game: str, description: str | None = None) -> ArgumentParser:
    """The parser of one game script: preset, game, training, generations and output groups."""
    parser = ArgumentParser(prog=f"python -m games.{game}", description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_preset_arguments(parser)
    add_game_arguments(parser, game)
    add_training_arguments(parser, game)
    add_generation_arguments(parser)
    add_output_arguments(parser, game)
    return parser


# -- args -> config ---------------------------------------------------------------------------
def _known_fields() -> list[str]:
    return [*LanguageGameConfig.__dataclass_fields__, *RelearnConfig.__dataclass_fields__]


def explicit_values(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given as flags (a flag left out is None and keeps the preset's value)."""
    values = {}
    if getattr(args, "lr", None) is not None:
        values["lr_sender"] = values["lr_receiver"] = args.lr
    for name in _known_fields():
        given = getattr(args, name, None)
        if name != "game" and given is not None:
            values[name] = given
    if isinstance(values.get("n_values"), list) and len(values["n_values"]) == 1:
        values["n_values"] = values["n_values"][0]
    return values


def preset_values(args: argparse.Namespace, game: str) -> dict[str, Any]:
    """The chosen preset's settings (empty without --preset); it must be a preset of this game."""
    if getattr(args, "preset", None) is None:
        return {}
    values = dict(load_preset(args.preset))
    preset_game = values.get("game", game)
    if preset_game != game:
        raise ValueError(
            f"--preset {args.preset}: is a {preset_game} preset; run it with python -m games.{preset_game}"
        )
    return values


def resolve_length(values: dict[str, Any], explicit: dict[str, Any], total: int | None) -> None:
    """Fill `generations` / `iterations_per_generation` from any two of (them, --iterations)."""
    if total is None:
        return
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ConfigError("iterations", total, "must be an integer >= 1")
    has_g, has_n = "generations" in explicit, "iterations_per_generation" in explicit
    if has_g and has_n:
        if explicit["generations"] * explicit["iterations_per_generation"] != total:
            raise ConfigError("iterations", total,
                              "must equal --generations x --iterations-per-generation when all three are given")
    elif has_n:
        per = explicit["iterations_per_generation"]
        if not isinstance(per, int) or per < 1 or total % per:
            raise ConfigError("iterations", total, f"must be a multiple of --iterations-per-generation ({per})")
        values["generations"] = total // per
    elif has_g:
        generations = explicit["generations"]
        if not isinstance(generations, int) or generations < 1 or total % generations:
            raise ConfigError("iterations", total, f"must be a multiple of --generations ({generations})")
        values["iterations_per_generation"] = total // generations
    else:
        strategy = values.get("strategy")
        if strategy != "no_reset":
            raise ConfigError("iterations", total,
                              f"alone makes one generation, so --strategy {strategy} would never forget; add "
                              "--generations G or --iterations-per-generation N (or --generations 1 for one "
                              "generation on purpose)")
        values["generations"], values["iterations_per_generation"] = 1, total


def values_from_args(args: argparse.Namespace, game: str) -> dict[str, Any]:
    """Built-in default < preset < explicit flags, as one validated flat config."""
    explicit = explicit_values(args)
    if getattr(args, "resume", None) is not None:
        values = saved_values(args.resume)
        if values.get("game", game) != game:
            raise ValueError(f"--resume {args.resume}: is a {values['game']} run; "
                             f"resume it with python -m games.{values['game']}")
        if args.preset is not None:
            raise ValueError("--preset: cannot be combined with --resume (the run's own config is used)")
    else:
        values = {**DEFAULT_RUN, **preset_values(args, game)}
    values.update(explicit)
    values["game"] = game
    resolve_length(values, explicit, getattr(args, "iterations", None))
    if args.threads is not None and args.threads < 1:
        raise ConfigError("threads", args.threads, "must be >= 1")
    if args.seeds is not None:
        parse_seeds(args.seeds)
        if args.seed is not None:
            raise ValueError("--seeds: give --seed or --seeds, not both")
        if args.resume is not None:
            raise ValueError("--seeds: cannot be combined with --resume; resume one seed with "
                             "--resume OUT/seedS, or launch the seeds with python -m games.sweep")
    check_available(args.tensorboard, args.wandb)
    engine = engine_from_args(args)
    if engine != "batched" and args.compile is not None:
        raise ValueError(f"{compile_flag(args)}: applies to the batched engine; this run uses --engine {engine}")
    if engine != "batched" and args.seeds is not None:
        raise ValueError("--seeds: trains on the batched engine; drop --engine reference, or run "
                         "the seeds one by one (python -m games.sweep)")
    game_config, relearn = split_config(values)
    game_config.validate()
    relearn.validate()
    values = {**game_config.to_dict(), **relearn.to_dict()}
    return values


def compile_flag(args: argparse.Namespace) -> str:
    """The compile flag as given, for error messages."""
    return "--compile" if args.compile else "--no-compile"


def saved_config(run_dir: str) -> dict[str, Any]:
    """An existing run's config.json, whole (config fields and launch details); ValueError naming
    the file when it is missing, no JSON, or no mapping of settings."""
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        seeds = sorted(p.parent.name for p in pathlib.Path(run_dir).glob(f"seed*/{CONFIG_FILE}"))
        if seeds:  # the folder of a --seeds launch: one run directory per seed
            raise ValueError(f"--resume: {run_dir} holds no {CONFIG_FILE} but the runs of {len(seeds)} seeds "
                             f"({', '.join(seeds[:4])}{', ...' if len(seeds) > 4 else ''}); resume each with "
                             f"--resume {run_dir}/seedS")
        raise ValueError(f"--resume: {run_dir} holds no {CONFIG_FILE}; is it a run directory?")
    return read_settings(path)


def _saved_launch(args: argparse.Namespace) -> dict[str, Any]:
    """A resumed run's config.json (empty for a new run)."""
    return {} if args.resume is None else saved_config(args.resume)


def engine_from_args(args: argparse.Namespace) -> str:
    """--engine, else a resumed run's own engine, else "batched". A resumed run keeps its engine:
    the two follow a seed in distribution, not bit for bit, so a switch would splice two runs."""
    if args.resume is not None:
        recorded = recorded_engine(_saved_launch(args), source=f"{args.resume}/{CONFIG_FILE}")[0]
        if args.engine is not None and args.engine != recorded:
            raise ValueError(f"--engine {args.engine}: {args.resume} was trained on the {recorded} engine and "
                             f"resumes on it; drop --engine")
        return recorded
    return args.engine or "batched"


def compile_from_args(args: argparse.Namespace) -> bool | str:
    """--compile / --no-compile, else a resumed run's own setting, else "auto" (compile where the
    machine can): a run resumes as it was made, so its records continue bit for bit."""
    if args.compile is None and args.resume is not None:
        return recorded_engine(_saved_launch(args), source=f"{args.resume}/{CONFIG_FILE}")[1]
    return "auto" if args.compile is None else args.compile


def saved_values(run_dir: str) -> dict[str, Any]:
    """The config fields of an existing run (launch details such as argv dropped)."""
    known = set(_known_fields())
    return {k: v for k, v in saved_game_settings(saved_config(run_dir)).items() if k in known}


# -- one run -----------------------------------------------------------------------------------
def _summary(record: dict[str, Any]) -> str:
    """One JSON line per generation (nan printed as null, as in generations.jsonl)."""
    keys = ("seed", "generation", "iteration", "accuracy", "topsim", "topsim_after_forgetting", "posdis")
    return dumps({k: (round(record[k], 4) if isinstance(record.get(k), float) else record.get(k))
                  for k in keys})


def write_plot(run_dir: pathlib.Path) -> pathlib.Path:
    """topsim and greedy accuracy against generation (mean and 95 % CI when `run_dir` holds one
    run per seed), drawn by the analysis package."""
    from analysis.dynamics import dynamics_figure
    from analysis.figures import save_figure
    from analysis.plot import plot_curves
    from analysis.runs import find_runs, load_run

    target = run_dir / PLOT_FILE
    runs = [load_run(path) for path in find_runs([run_dir])]
    plot_curves(runs, ["topsim", "accuracy"], str(target), title=str(run_dir))
    if any((run["path"] / EVALUATIONS_FILE).is_file() for run in runs):
        save_figure(dynamics_figure(runs, ["topsim", "accuracy"]), run_dir / DYNAMICS_PLOT_FILE,
                    f"{run_dir}: inside generations")
    return target


def default_out(values: dict[str, Any], seeds: str | None = None) -> str:
    """runs/<game>-<strategy>-seed<seed(s)>-<time>: a new directory each time no --out is given."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"runs/{values['game']}-{values['strategy']}-seed{seeds or values['seed']}-{stamp}"


def run_from_args(args: argparse.Namespace, values: dict[str, Any],
                  argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the generations the flags describe; one summary line per generation."""
    out = args.resume if args.resume is not None else args.out
    if out is None:
        out = default_out(values, args.seeds)
    if args.resume is not None and args.out is not None and pathlib.Path(args.out) != pathlib.Path(args.resume):
        raise ValueError(f"--out {args.out}: differs from --resume {args.resume}; give one of them")
    if args.resume is None:
        check_new_folder(out)  # the run's folder (or the seeds' parent) holds nothing foreign
    torch.set_num_threads(args.threads if args.threads is not None else 1)
    engine = engine_from_args(args)
    compile = compile_from_args(args)
    if args.resume is None:  # "auto" compiles only where the run's work pays for the warm-up
        n_seeds = len(parse_seeds(args.seeds)) if args.seeds is not None else 1
        compile = resolve_auto(compile, values["generations"] * values["iterations_per_generation"] * n_seeds)
    launch = {"iterations": values["generations"] * values["iterations_per_generation"],
              "preset": args.preset, "argv": list(sys.argv[1:] if argv is None else argv), "engine": engine}
    if engine == "batched":
        launch["compile"] = compile
    progress = args.progress is not False
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [values["seed"]]
    sinks = open_sinks(args.tensorboard, args.wandb, run_name=pathlib.Path(out).name,
                       config=[{**values, "seed": seed} for seed in seeds],
                       runs=[seed_folder(seed) for seed in seeds] if args.seeds is not None else None)

    def on_record(i: int, record: dict[str, Any]) -> None:
        print(_summary(record), flush=True)
        sinks.generation(i, record)

    try:
        if args.seeds is not None or engine == "batched":
            outs = [str(pathlib.Path(out) / seed_folder(seed)) for seed in seeds] if args.seeds is not None else [out]
            per_seed = run_language_batched(
                [{**values, "seed": seed} for seed in seeds], outs, resume=args.resume is not None,
                progress=progress, on_record=on_record, on_evaluation=sinks.evaluation, launch=launch,
                compile=compile)
            records = [record for run in per_seed for record in run]
        else:
            records = run_language(values, out, resume=args.resume is not None, progress=progress,
                                   on_record=lambda record: on_record(0, record),
                                   on_evaluation=lambda record: sinks.evaluation(0, record), launch=launch)
    finally:
        sinks.close()
    if args.plot:
        write_plot(pathlib.Path(out))
    where = out if args.seeds is None else f"{out}/seed{{{args.seeds}}}"
    print(f"wrote {where}: {CONFIG_FILE}, generations.jsonl, language.json, checkpoint.pt"
          + (f"; {out}/{PLOT_FILE}" if args.plot else ""))
    return records


def main(game: str, description: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m games.<game>`: exit 0; 2 on bad input; 1 on a fault (a run that
    diverged, a full disk); 130 on Ctrl-C, saying where the run stopped. Always one stderr line."""
    parser = build_parser(game, description=description)
    args = parser.parse_args(argv)

    def body() -> int:
        with exit_on_error(parser):
            values = values_from_args(args, game)
            try:
                run_from_args(args, values, argv)
            except NonFiniteError as error:
                print(f"{parser.prog}: stopped: {one_line(error)}", file=sys.stderr)
                return 1
            except Interrupted as interrupt:
                raise KeyboardInterrupt(interrupted_line(args, interrupt)) from None
        return 0

    return run_command(body, parser.prog)


def interrupted_line(args: argparse.Namespace, interrupt: Interrupted) -> str:
    """Where Ctrl-C stopped the run and the command that continues it (each seed, for --seeds)."""
    out = args.resume if args.resume is not None else args.out
    where = f"interrupted at generation {interrupt.generation}, iteration {interrupt.iteration}"
    if args.seeds is not None:
        return f"{where}; continue each seed with --resume {out}/seedS"
    return f"{where}; continue with --resume {interrupt.run_dir or out}"
