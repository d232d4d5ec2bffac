"""Config knobs declared once: each field of a config dataclass says its type, range, choices,
help text and whether it fixes tensor shapes, and validation, command-line flags and batch
grouping are read from that one declaration, so a new knob is one line:

    @dataclass
    class MyConfig:
        width: int = knob(64, minimum=1, shape=True, help="hidden units")

    check_knobs(config)                        # ConfigError naming the first bad field, field order
    add_knob_arguments(group, MyConfig, "game")  # --width WIDTH, help "hidden units (default 64)"
    shape_fields(MyConfig)                     # ("width",): runs must agree on it to share a batch

Rules that tie fields together (a count bounded by another field, a device this machine has)
stay short explicit code in the dataclass's `validate`, after `check_knobs`; the fields they
check say so with `checked_by` and are skipped by `check_knobs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

KNOB = "knob"  # the dataclass field metadata key holding a field's `Knob`
KINDS = (int, float, str, bool)


class ConfigError(ValueError):
    """A config field with a value outside its allowed range; scripts map `field` to its flag."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name}={value!r}: {allowed}")


@dataclass(frozen=True)
class Knob:
    """What one config field accepts and how it is offered on the command line (see `knob`)."""

    kind: type = int
    minimum: float | None = None
    greater_than: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    optional: bool = False
    many: bool = False
    finite: bool = True
    shape: bool = False
    help: str = ""
    flag_group: str | None = "game"
    games: tuple[str, ...] | None = None
    checked_by: str | None = None
    combined_message: bool = False

    def bounds(self) -> str:
        """The range in words: '>= 1', '> 0', 'in [0, 1]', '' when unbounded."""
        low = self.minimum if self.greater_than is None else self.greater_than
        if low is not None and self.maximum is not None:
            return f"in {'[' if self.greater_than is None else '('}{low}, {self.maximum}]"
        if low is not None:
            return f"{'>=' if self.greater_than is None else '>'} {low}"
        return "" if self.maximum is None else f"<= {self.maximum}"

    def in_range(self, value: float) -> bool:
        """Written so that nan is out of every bounded range."""
        return ((self.minimum is None or value >= self.minimum)
                and (self.greater_than is None or value > self.greater_than)
                and (self.maximum is None or value <= self.maximum))


def knob(default: Any, *, kind: type = int, minimum: float | None = None, greater_than: float | None = None,
         maximum: float | None = None, choices: tuple[Any, ...] | list[Any] | None = None,
         optional: bool = False, many: bool = False, finite: bool = True, shape: bool = False,
         help: str, flag_group: str | None = "game", games: tuple[str, ...] | None = None,
         checked_by: str | None = None, combined_message: bool = False) -> Any:
    """A dataclass field with its `Knob` in the metadata.

    kind: int, float, str or bool (a knob with `choices` takes one of them and nothing else).
    minimum / maximum: inclusive bounds; greater_than: an exclusive lower bound. optional: None
    is allowed too. many: an integer or a list of integers (flag: `nargs="+"`). finite: a float
    knob refuses inf and nan. shape: runs must agree on it to share one batch (it fixes tensor
    shapes or the training loop). help: the flag's help; " (default X)" is added unless the text
    already speaks of its default. flag_group: the title of the argument group its flag goes in
    (None: no flag). games: the game scripts that offer its flag (None: all). checked_by: the
    cross-field rule of the dataclass's `validate` that checks it instead of `check_knobs`.
    combined_message: one error text for a wrong type and a value out of range ("must be an
    integer >= 1"), instead of saying which of the two failed ("must be >= 1").
    """
    if kind not in KINDS:
        raise TypeError(f"knob kind {kind!r}: must be one of {[k.__name__ for k in KINDS]}")
    spec = Knob(kind, minimum, greater_than, maximum, None if choices is None else tuple(choices),
                optional, many, finite, shape, help, flag_group, games, checked_by, combined_message)
    metadata = {KNOB: spec}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def knobs(cls: Any) -> dict[str, Knob]:
    """Every field of a config dataclass (or instance) with its `Knob`, in declaration order;
    a TypeError names a field declared without `knob(...)`."""
    out = {}
    for f in dataclasses.fields(cls):
        if KNOB not in f.metadata:
            raise TypeError(f"{getattr(cls, '__name__', type(cls).__name__)}.{f.name}: declared without knob(...)")
        out[f.name] = f.metadata[KNOB]
    return out


def shape_fields(cls: Any) -> tuple[str, ...]:
    """The fields runs must agree on to be trained as one batch, in declaration order."""
    return tuple(name for name, spec in knobs(cls).items() if spec.shape)


def defaults(cls: Any) -> dict[str, Any]:
    """Each field's default value (a fresh copy for list defaults)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


# -- validation ---------------------------------------------------------------------------------
def problem(spec: Knob, value: Any) -> str | None:
    """What is wrong with `value` for this knob in words ("must be ..."), or None when it fits."""
    if value is None and spec.optional:
        return None
    if spec.choices is not None:
        return None if value in spec.choices else f"must be one of {list(spec.choices)}"
    if spec.kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if spec.kind is str:
        return None if isinstance(value, str) else "must be a string"
    if spec.many:
        return _many_problem(spec, value)
    bounds = spec.bounds()
    if spec.kind is int:
        type_ok = isinstance(value, int) and not isinstance(value, bool)
        either = " or None" if spec.optional else ""
        if spec.combined_message:
            ok = type_ok and spec.in_range(value)
            return None if ok else " ".join(filter(None, ("must be an integer", bounds))) + either
        if not type_ok:
            return "must be an integer" + either
        return None if spec.in_range(value) else f"must be {bounds}"
    type_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    finite = not isinstance(value, float) or math.isfinite(value)  # ints are finite, however large
    if spec.combined_message:
        ok = type_ok and (finite or not spec.finite) and spec.in_range(value)
        return None if ok else " ".join(filter(None, ("must be a number", bounds)))
    if not type_ok:
        return "must be a number"
    if spec.finite and not finite:
        return " ".join(filter(None, ("must be a finite number", bounds)))
    return None if spec.in_range(value) else f"must be {bounds}"


def _many_problem(spec: Knob, value: Any) -> str | None:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    one = dataclasses.replace(spec, many=False, optional=False, combined_message=True)
    if items and all(problem(one, item) is None for item in items):
        return None
    bounds = f" {spec.bounds()}" if spec.bounds() else ""
    return f"must be an integer{bounds} or a list of integers{bounds}"


def check_knob(config: Any, name: str, **overrides: Any) -> None:
    """Raise ConfigError when field `name` breaks its knob; `overrides` replace parts of the knob
    for this check (a cross-field rule passing the bound another field sets: maximum=...)."""
    spec = dataclasses.replace(knobs(config)[name], **overrides)
    value = getattr(config, name)
    reason = problem(spec, value)
    if reason is not None:
        raise ConfigError(name, value, reason)


def check_knobs(config: Any) -> None:
    """Check every field against its knob, in declaration order, except those a cross-field rule
    checks (`checked_by`); the first bad field is raised as ConfigError."""
    for name, spec in knobs(config).items():
        if spec.checked_by is None:
            check_knob(config, name)


# -- command-line flags -------------------------------------------------------------------------
def flag_for(field_name: str) -> str:
    """The flag of a config field: `x_y` -> `--x-y`."""
    return "--" + field_name.replace("_", "-")


def _int_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def help_text(spec: Knob, default: Any) -> str:
    """The knob's help, with " (default X)" added unless the text already speaks of its default."""
    return spec.help if "default" in spec.help else f"{spec.help} (default {_shown(default)})"


def flag_options(spec: Knob, default: Any) -> dict[str, Any]:
    """`add_argument` keywords for one knob. Every flag defaults to None, so a value set elsewhere
    (a preset, a resumed run's config) survives unless the flag is given."""
    options: dict[str, Any] = {"default": None, "help": help_text(spec, default)}
    if spec.kind is bool:
        options["action"] = argparse.BooleanOptionalAction
    elif spec.choices is not None:
        options["choices"] = list(spec.choices)
    elif spec.many:
        options.update(type=spec.kind, nargs="+", metavar="N")
    elif spec.optional and spec.kind is int:
        options["type"] = _int_or_none
    elif spec.kind is not str:
        options["type"] = spec.kind
    return options


def add_knob_arguments(group: argparse._ActionsContainer, cls: Any, flag_group: str, *,
                       game: str | None = None, default_overrides: Mapping[str, Any] | None = None) -> None:
    """Add `--x-y` for every field `x_y` of `cls` whose knob goes in `flag_group` (and is offered
    for `game`). `default_overrides`: defaults the command uses instead of the dataclass's, shown
    in the help."""
    shown = {**defaults(cls), **(default_overrides or {})}
    for name, spec in knobs(cls).items():
        if spec.flag_group != flag_group or (game is not None and spec.games is not None and game not in spec.games):
            continue
        group.add_argument(flag_for(name), **flag_options(spec, shown.get(name)))
