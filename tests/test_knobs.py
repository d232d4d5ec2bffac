"""Each config knob is declared once (emergent_frl.knobs): validation, the game scripts' flags and
batch grouping all come from the dataclass field's metadata."""

import argparse
import dataclasses
import math
from dataclasses import dataclass

import pytest

import games.cli
from emergent_frl.batched.runs import RELEARN_SHAPE_FIELDS, SHAPE_FIELDS, batch_key
from emergent_frl.knobs import (
    ConfigError,
    add_knob_arguments,
    check_knobs,
    flag_for,
    help_text,
    knob,
    knobs,
    shape_fields,
)
from emergent_frl.relearn import RelearnConfig, split_config
from emergent_frl.training import LanguageGameConfig
from games.cli import DEFAULT_RUN, build_parser
from tiny_configs import TINY

CONFIGS = (LanguageGameConfig, RelearnConfig)
# The flags that are no config field, written by hand in games/cli.py.
HAND_WRITTEN = {"--preset", "--lr", "--iterations", "--seeds", "--engine", "--compile", "--no-compile",
                "--threads", "--out", "--resume", "--plot", "--no-plot", "--progress", "--no-progress",
                "--tensorboard", "--wandb"}


def config_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The parser's actions of config fields, by field name."""
    fields = {f.name for cls in CONFIGS for f in dataclasses.fields(cls)}
    return {action.dest: action for action in parser._actions if action.dest in fields}


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_is_a_knob_with_help(cls):
    specs = knobs(cls)
    assert list(specs) == [f.name for f in dataclasses.fields(cls)]
    for name, spec in specs.items():
        assert spec.help.strip(), name
    cls().validate()  # every default passes its own knob


@pytest.mark.parametrize("game", ["referential", "reconstruction"])
def test_the_scripts_config_flags_are_exactly_the_knobs(game):
    parser = build_parser(game)
    expected = {name for cls in CONFIGS for name, spec in knobs(cls).items()
                if spec.flag_group is not None and (spec.games is None or game in spec.games)}
    actions = config_actions(parser)
    assert set(actions) == expected
    flags = {o for action in parser._actions for o in action.option_strings} - {"-h", "--help"}
    knob_flags = {o for action in actions.values() for o in action.option_strings}
    assert flags - knob_flags == HAND_WRITTEN  # nothing else is declared by hand
    assert ("--n-candidates" in flags) == ("--easy-limit" in flags) == (game == "referential")
    assert "--game" not in flags  # the script sets the game


@pytest.mark.parametrize("game", ["referential", "reconstruction"])
def test_each_flag_is_made_from_its_knob(game):
    parser = build_parser(game)
    titles = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    shown = {**LanguageGameConfig().to_dict(), **RelearnConfig().to_dict(), **DEFAULT_RUN}
    for name, action in config_actions(parser).items():
        spec = {**knobs(LanguageGameConfig), **knobs(RelearnConfig)}[name]
        assert action.option_strings[0] == flag_for(name)
        assert action.help == help_text(spec, shown[name]) and "default" in action.help, name
        assert titles[name] == spec.flag_group
        assert action.default is None  # a preset's value survives a flag left out
        if spec.choices is not None:
            assert action.choices == list(spec.choices)
    for action in parser._actions:
        assert action.help, action.option_strings


def test_help_shows_the_commands_own_defaults():
    text = build_parser("referential").format_help()
    assert "(default pbf)" in text and "(default 4)" in text  # DEFAULT_RUN, not RelearnConfig's
    assert "(default 8 4)" in text and "(default none: no limit)" in text


def test_shape_fields_come_from_the_knobs_and_are_what_batch_key_compares():
    assert SHAPE_FIELDS == shape_fields(LanguageGameConfig)
    assert RELEARN_SHAPE_FIELDS == shape_fields(RelearnConfig) == ("generations", "iterations_per_generation")
    values = {**TINY, "strategy": "pbf", "generations": 2, "iterations_per_generation": 10}
    game, relearn = split_config(values)
    key = batch_key(values)
    assert key[:len(SHAPE_FIELDS)] == tuple(game.space().n_values if f == "n_values" else getattr(game, f)
                                            for f in SHAPE_FIELDS)
    assert key[len(SHAPE_FIELDS):-1] == tuple(getattr(relearn, f) for f in RELEARN_SHAPE_FIELDS)
    same_shape = {"lr_sender": 0.01, "lr_receiver": 0.01, "sender_entropy_coeff": 0.0, "seed": 3,
                  "receiver_entropy_coeff": 0.0, "easy_limit": 1, "eval_repeats": 2,
                  "holdout": "random", "receiver_keep_fraction": 0.5, "mask": "bernoulli"}
    other_shape = {"vocab_size": 5, "max_len": 3, "hidden_size": 8, "n_candidates": 2, "embed_size": 4,
                   "cell": "gru", "batch_size": 4, "baseline": False, "eval_every": 5, "generations": 3,
                   "iterations_per_generation": 20}
    for name, value in same_shape.items():
        changed = {**values, name: value, **({"holdout_fraction": 0.3} if name == "holdout" else {})}
        assert batch_key(changed) == key, name
    for name, value in other_shape.items():
        assert name in SHAPE_FIELDS + RELEARN_SHAPE_FIELDS
        assert batch_key({**values, name: value}) != key, name


def test_fields_left_to_a_cross_field_rule_are_checked_by_validate():
    bad = {"n_values": [0], "n_candidates": 1000, "easy_limit": 99, "holdout_fraction": 0.5, "device": "gpu",
           "agents": "no_such_module_here:build"}
    ruled = {name for name, spec in knobs(LanguageGameConfig).items() if spec.checked_by}
    assert ruled == set(bad)
    for name, value in bad.items():
        with pytest.raises(ConfigError) as info:
            LanguageGameConfig(**{**TINY, name: value}).validate()
        assert info.value.field == name
    assert not any(spec.checked_by for spec in knobs(RelearnConfig).values())


def test_ease_of_teaching_needs_one_probe_evaluation():
    probe = {"ease_of_teaching_iterations": 10, "ease_of_teaching_eval_every": 50}
    with pytest.raises(ConfigError, match=r"eval_every=50: must be <= ease_of_teaching_iterations \(10\)"):
        RelearnConfig(ease_of_teaching=True, **probe).validate()
    RelearnConfig(**probe).validate()  # no probe, no rule


def test_a_field_without_a_knob_is_refused():
    @dataclass
    class Loose:
        width: int = 3

    with pytest.raises(TypeError, match=r"Loose.width: declared without knob"):
        knobs(Loose)


# -- a new knob: one line, and it is validated, has a flag and joins the batch key ------------
@dataclass
class Toy:
    width: int = knob(4, minimum=1, maximum=64, shape=True, help="units")
    rate: float = knob(0.5, kind=float, greater_than=0, help="a rate")
    coeff: float = knob(0.1, kind=float, minimum=0, help="a bonus")
    mode: str = knob("a", kind=str, choices=("a", "b"), help="a mode")
    switch: bool = knob(False, kind=bool, help="a switch")
    sizes: list = knob([2, 3], many=True, minimum=1, help="sizes")
    limit: int | None = knob(None, minimum=0, optional=True, help="a limit (default none: no limit)")
    count: int = knob(1, minimum=1, combined_message=True, help="a count")
    share: float = knob(0.5, kind=float, minimum=0, maximum=1, combined_message=True, help="a share")
    name: str = knob("x", kind=str, flag_group=None, help="set by the program")
    only: int = knob(1, minimum=0, games=("referential",), help="one game's knob")


@pytest.mark.parametrize("field, value, allowed", [
    ("width", 0, "must be in [1, 64]"), ("width", "8", "must be an integer"), ("width", True, "must be an integer"),
    ("rate", 0, "must be > 0"), ("rate", math.inf, "must be a finite number > 0"), ("rate", "1", "must be a number"),
    ("coeff", -0.5, "must be >= 0"), ("coeff", math.nan, "must be a finite number >= 0"),
    ("mode", "c", "must be one of ['a', 'b']"), ("switch", 1, "must be true or false"),
    ("sizes", [2, 0], "must be an integer >= 1 or a list of integers >= 1"),
    ("sizes", [], "must be an integer >= 1 or a list of integers >= 1"),
    ("limit", -1, "must be >= 0"), ("limit", 1.5, "must be an integer or None"),
    ("count", 0, "must be an integer >= 1"), ("count", "two", "must be an integer >= 1"),
    ("share", math.nan, "must be a number in [0, 1]"), ("share", 2, "must be a number in [0, 1]"),
    ("name", 3, "must be a string"),
])
def test_a_new_knob_is_validated(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        check_knobs(Toy(**{field: value}))
    assert (info.value.field, info.value.value, info.value.allowed) == (field, value, allowed)


def test_a_new_knobs_good_values_pass_and_the_first_bad_field_is_named():
    check_knobs(Toy())
    check_knobs(Toy(sizes=3, limit=2, rate=2**80, share=1))
    with pytest.raises(ConfigError) as info:
        check_knobs(Toy(count=0, width=0))
    assert info.value.field == "width"  # declaration order


def test_a_new_knob_gets_a_flag_and_joins_the_shape():
    parser = argparse.ArgumentParser()
    add_knob_arguments(parser.add_argument_group("game"), Toy, "game", game="reconstruction")
    args = parser.parse_args(["--width", "8", "--rate", "0.1", "--mode", "b", "--switch", "--sizes", "1", "2",
                              "--limit", "none", "--share", "0.25"])
    assert vars(args) == {"width": 8, "rate": 0.1, "coeff": None, "mode": "b", "switch": True, "sizes": [1, 2],
                          "limit": None, "count": None, "share": 0.25}
    assert parser.parse_args(["--limit", "3", "--no-switch"]).limit == 3
    text = parser.format_help()
    assert "units (default 4)" in text and "a switch (default off)" in text and "(default 2 3)" in text
    assert "--name" not in text and "--only" not in text  # no flag; another game's flag
    assert shape_fields(Toy) == ("width",)


def test_a_knob_added_to_the_language_config_needs_no_other_edit():
    @dataclass
    class Extended(LanguageGameConfig):
        dropout: float = knob(0.0, kind=float, minimum=0, maximum=1, shape=True, help="dropout of both agents")

    with pytest.raises(ConfigError, match=r"dropout=1.5: must be in \[0, 1\]"):
        Extended(**TINY, dropout=1.5).validate()
    parser = argparse.ArgumentParser()
    add_knob_arguments(parser, Extended, "game", game="referential")
    assert parser.parse_args(["--dropout", "0.2"]).dropout == 0.2
    assert shape_fields(Extended) == (*SHAPE_FIELDS, "dropout")


def test_the_scripts_read_every_config_flag():
    """A flag given on the command line lands in the config under its field's name."""
    parser = build_parser("referential")
    args = parser.parse_args(["--hidden-size", "17", "--ease-of-teaching-eval-every", "7", "--out", "x"])
    values = games.cli.values_from_args(args, "referential")
    assert values["hidden_size"] == 17 and values["ease_of_teaching_eval_every"] == 7
