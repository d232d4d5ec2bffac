"""Value checks shared by the image track's configurations.

Every setting reaches a configuration either from the command line (argparse has typed it) or from
a run's config.json, which a user may have edited ("10" for 10, null, NaN written as a bare word).
One check per field covers its type, its finiteness and its range, and the message names the flag
and the allowed range, so a bad value stops before any data is loaded or any folder is created.
Comparisons alone are not enough: `nan` fails every comparison silently, and `"10" <= 5` is a
TypeError, i.e. a traceback instead of one line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing

MAX_SEED = 2**32 - 1  # seeds feed numpy's SeedSequence as uint32 words: 0..4294967295


def flag_of(name: str) -> str:
    """The command-line flag of a configuration field: split_rate -> --split-rate."""
    return "--" + name.replace("_", "-")


def _allowed_types(hint: object) -> tuple[type, ...] | None:
    """The plain types a field annotated `hint` accepts (None: a nested configuration, not checked here)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    members = typing.get_args(hint) if union else (hint,)
    if any(dataclasses.is_dataclass(member) for member in members):
        return None
    return tuple(members)


def _accepts(allowed: tuple[type, ...], value: object) -> bool:
    """isinstance, except that a bool is no number and an int is a fine float."""
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, tuple(t for t in allowed if t is not bool))


def _describe(allowed: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "text", bool: "true or false", type(None): "none"}
    return " or ".join(names.get(t, t.__name__) for t in allowed)


def check_types(config: object, flags: dict[str, str] | None = None) -> None:
    """Each field of the dataclass `config` holds a value of its annotated type; ValueError naming
    the flag otherwise (`flags`: fields whose flag is not their name; nested configurations are
    left to their own `validate`)."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        allowed = _allowed_types(hints[item.name])
        value = getattr(config, item.name)
        if allowed is not None and not _accepts(allowed, value):
            flag = (flags or {}).get(item.name, flag_of(item.name))
            raise ValueError(f"{flag} {value!r}: expected {_describe(allowed)}")


def check_count(flag: str, value: int, low: int, high: int) -> None:
    """An integer setting within low..high (both included)."""
    if not low <= value <= high:
        raise ValueError(f"{flag} {value}: allowed range is {low}..{high}")


def check_real(flag: str, value: float, low: float, high: float, *, open_low: bool = False,
               open_high: bool = False) -> None:
    """A finite real setting within [low, high]; `open_low`/`open_high` exclude an end."""
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if not _finite(value):
        raise ValueError(f"{flag} {value}: not a finite number; allowed range is {interval}")
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    if not (above and below):
        raise ValueError(f"{flag} {value}: allowed range is {interval}")


def _finite(value: float) -> bool:
    """math.isfinite, for an int past float's range (a config.json may hold 1e400 written out) too."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_seed(flag: str, value: int) -> None:
    """A seed: what numpy's SeedSequence takes as one uint32 word."""
    check_count(flag, value, 0, MAX_SEED)
