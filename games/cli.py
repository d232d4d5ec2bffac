"""Command-line building blocks shared by the game scripts (`python -m games.referential ...`).

A script builds its parser from argument groups, turns the parsed args into a validated
`LanguageGameConfig`, and reports bad input as one line on stderr with exit code 2:

    parser = build_parser("referential", description)      # preset, game, training, output groups
    group = parser.add_argument_group("generations")       # a script adds its own flags ...
    group.add_argument("--generations", type=int)
    args = parse_args(parser, argv)
    config = config_from_args(args, "referential")         # preset, then explicit flags
    ...                                                     # wrapped in `exit_on_error(parser)`

Flags default to None so a preset's values survive unless a flag is given explicitly; each config
field `x_y` has the flag `--x-y`, so errors on fields are reported under their flag.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any, Iterator, NoReturn, Sequence

import torch

from emergent_frl.agents import CELLS, CHANNELS
from emergent_frl.runs import RunDirectory
from emergent_frl.training import (
    HOLDOUTS,
    ConfigError,
    LanguageGameConfig,
    build_game,
    build_optimizers,
    evaluate,
    make_generator,
    train_iterations,
)
from games.presets import available_presets, load_preset

# Settings a preset may hold that are not LanguageGameConfig fields: the run's length.
RUN_KEYS = ("iterations",)
DEFAULT_ITERATIONS = 30_000


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ...`) with exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def flag_for(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


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


def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


# -- argument groups -------------------------------------------------------------------------
def add_preset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", choices=available_presets(), default=None,
        help="start from a named preset (games/presets/NAME.yaml); explicit flags override it",
    )


def add_game_arguments(parser: argparse.ArgumentParser, game: str) -> argparse._ArgumentGroup:
    """Object space, channel and agent architecture."""
    group = parser.add_argument_group("game")
    group.add_argument("--n-attributes", type=int, help="attributes per object (default 2)")
    group.add_argument(
        "--n-values", type=int, nargs="+", metavar="N",
        help="values per attribute: one count for all, or one per attribute (default 8 4)",
    )
    group.add_argument("--vocab-size", type=int, help="symbols in the vocabulary (default 8)")
    group.add_argument("--max-len", type=int, help="symbols per message (default 2)")
    if game == "referential":
        group.add_argument("--n-candidates", type=int, help="candidates shown to the receiver (default 5)")
        group.add_argument(
            "--easy-limit", type=_int_or_none,
            help="at most this many distractors differing from the target in every attribute",
        )
    group.add_argument("--hidden-size", type=int, help="RNN hidden size of both agents (default 100)")
    group.add_argument("--embed-size", type=_int_or_none,
                       help="symbol embedding size (default none: one-hot symbols enter the RNN)")
    group.add_argument("--cell", choices=sorted(CELLS), help="RNN cell of both agents (default lstm)")
    group.add_argument("--channel", choices=list(CHANNELS),
                       help="reinforce (sampled symbols) or gumbel (Gumbel-Softmax relaxation)")
    group.add_argument("--temperature", type=float, help="Gumbel-Softmax temperature (default 1.0)")
    group.add_argument("--straight-through", action=argparse.BooleanOptionalAction, default=None,
                       help="hard one-hot forward, soft gradients on the gumbel channel (default on)")
    group.add_argument("--eos", action=argparse.BooleanOptionalAction, default=None,
                       help="symbol 0 ends a message (EGG); default off: fixed length (the paper)")
    group.add_argument("--learned-start", action=argparse.BooleanOptionalAction, default=None,
                       help="learned start-of-message input instead of zeros")
    group.add_argument("--holdout", choices=list(HOLDOUTS), help="objects kept out of training")
    group.add_argument("--holdout-fraction", type=float, help="fraction of objects held out")
    return group


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("training")
    group.add_argument("--iterations", type=int, help=f"training batches (default {DEFAULT_ITERATIONS})")
    group.add_argument("--batch-size", type=int, help="objects per batch (default 100)")
    group.add_argument("--lr", type=float, help="learning rate of both agents (sets both below)")
    group.add_argument("--lr-sender", type=float, help="sender Adam learning rate (default 1e-3)")
    group.add_argument("--lr-receiver", type=float, help="receiver Adam learning rate (default 1e-3)")
    group.add_argument("--sender-entropy-coeff", type=float, help="sender entropy bonus (default 0.1)")
    group.add_argument("--receiver-entropy-coeff", type=float, help="receiver entropy bonus (default 0.1)")
    group.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                       help="subtract a running mean of the loss in REINFORCE (default off)")
    group.add_argument("--seed", type=int, help="seed of weights, batches and sampling (default 0)")
    group.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    group.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads (torch.set_num_threads); default: torch's choice")
    return group


def add_output_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("evaluation and output")
    group.add_argument("--eval-every", type=int,
                       help="greedy evaluation every N iterations (default 1000; 0: only at the end)")
    group.add_argument("--eval-repeats", type=int,
                       help="fixed candidate sets per object in referential evaluation (default 10)")
    group.add_argument("--stop-at-accuracy", type=float, default=None, metavar="A",
                       help="stop early once greedy accuracy over all objects reaches A")
    group.add_argument("--out", required=True, help="run directory (config.json, generations.jsonl)")
    group.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar (default: only on a terminal)")
    return group


def build_parser(game: str, description: str | None = None) -> ArgumentParser:
    """The parser of one game script with the preset, game, training and output groups."""
    parser = ArgumentParser(prog=f"python -m games.{game}", description=description)
    add_preset_arguments(parser)
    add_game_arguments(parser, game)
    add_training_arguments(parser)
    add_output_arguments(parser)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parser.parse_args(argv)


# -- args -> config ---------------------------------------------------------------------------
def preset_values(args: argparse.Namespace, game: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config fields, run-level keys) of the chosen preset; empty without --preset."""
    if getattr(args, "preset", None) is None:
        return {}, {}
    values = dict(load_preset(args.preset))
    preset_game = values.get("game", game)
    if preset_game != game:
        raise ValueError(
            f"--preset {args.preset}: is a {preset_game} preset; run it with python -m games.{preset_game}"
        )
    run = {key: values.pop(key) for key in RUN_KEYS if key in values}
    return values, run


def config_from_args(args: argparse.Namespace, game: str) -> LanguageGameConfig:
    """Preset (if any), then every flag given explicitly; validated (ConfigError on a bad value)."""
    values, _ = preset_values(args, game)
    values["game"] = game
    if getattr(args, "lr", None) is not None:
        values["lr_sender"] = values["lr_receiver"] = args.lr
    for name in LanguageGameConfig.__dataclass_fields__:
        given = getattr(args, name, None)
        if name != "game" and given is not None:
            values[name] = given
    if isinstance(values.get("n_values"), list) and len(values["n_values"]) == 1:
        values["n_values"] = values["n_values"][0]
    return LanguageGameConfig.from_dict(values).validate()


def iterations_from_args(args: argparse.Namespace, game: str) -> int:
    """--iterations, else the preset's, else the default; must be >= 1."""
    _, run = preset_values(args, game)
    iterations = args.iterations if args.iterations is not None else run.get("iterations", DEFAULT_ITERATIONS)
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ConfigError("iterations", iterations, "must be an integer >= 1")
    return iterations


def check_run_arguments(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError("threads", args.threads, "must be >= 1")
    if args.stop_at_accuracy is not None and not 0 < args.stop_at_accuracy <= 1:
        raise ConfigError("stop_at_accuracy", args.stop_at_accuracy, "must be in (0, 1]")


# -- one run -----------------------------------------------------------------------------------
def run_single_generation(
    args: argparse.Namespace, game: str, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """Train one generation as the flags say and write the run directory.

    RUN_DIR/config.json: the config plus iterations, strategy "no_reset", generations 1, preset;
    RUN_DIR/evaluations.json: every periodic evaluation (rewritten atomically as training goes);
    RUN_DIR/generations.jsonl: one record (generation 0) after training;
    RUN_DIR/language.json: the final greedy language (objects' attribute values -> messages).
    """
    config = config_from_args(args, game)
    iterations = iterations_from_args(args, game)
    check_run_arguments(args)
    run_dir = RunDirectory(args.out)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    run_dir.write_config({
        **config.to_dict(), "iterations": iterations, "strategy": "no_reset", "generations": 1,
        "preset": args.preset, "argv": list(sys.argv[1:] if argv is None else argv),
    })
    game_obj = build_game(config)
    optimizers = build_optimizers(game_obj, config)
    generator = make_generator(config)
    evaluations: list[dict[str, Any]] = []
    first_reached: dict[str, int | None] = {"iteration": None}

    def on_eval(record: dict[str, Any]) -> bool:
        evaluations.append(record)
        run_dir.write_json("evaluations.json", evaluations)
        if first_reached["iteration"] is None and args.stop_at_accuracy is not None \
                and record["accuracy"] >= args.stop_at_accuracy:
            first_reached["iteration"] = record["iteration"]
        return first_reached["iteration"] is not None

    summary = train_iterations(
        game_obj, optimizers, iterations, generator=generator, eval_every=config.eval_every,
        on_eval=on_eval, progress=args.progress is not False,
    )
    metrics = evaluate(game_obj)
    messages = metrics.pop("messages")
    record = {
        "generation": 0, "iteration": summary["iterations"], "strategy": "no_reset",
        **{k: v for k, v in summary.items() if k.startswith("train_")}, **metrics,
    }
    run_dir.append_record(record)
    run_dir.write_json("language.json", {
        "objects": game_obj.space.objects().tolist(), "messages": messages.tolist(),
    })
    return record
