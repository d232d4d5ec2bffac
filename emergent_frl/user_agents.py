"""A researcher's own agents, named as `MODULE:FUNCTION` (`--agents myagents:build`, the sweep key
`agents:`, the config field `agents`): FUNCTION(config) returns (sender, receiver) for a
`LanguageGameConfig`, and the run builds, trains, forgets, records, resumes and sweeps them as it
does the built-in agents. config.json records the name, so `--resume` rebuilds the same agents.

MODULE is imported by the ordinary import system: a module on `sys.path`, or a `.py` file in the
directory the command runs from (which is put on the path, as `python -m` does).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable

from emergent_frl.knobs import ConfigError

SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
FORM = "MODULE:FUNCTION, e.g. myagents:build (FUNCTION(config) returns (sender, receiver))"


def load_factory(spec: Any) -> Callable[[Any], Any]:
    """The function `spec` names; ValueError naming what is wrong (form, module, function)."""
    if not isinstance(spec, str) or not SPEC.match(spec):
        raise ConfigError("agents", str(spec)[:80], f"must be {FORM}")
    module_name, function_name = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a myagents.py beside the command, as `python -m` finds modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError("agents", spec, f"cannot import {module_name} ({error})") from None
    except Exception as error:  # noqa: BLE001 - the user's module failed while importing
        raise ConfigError("agents", spec, f"importing {module_name} failed: {_first_line(error)}") from None
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ConfigError("agents", spec, f"{module_name} has no function {function_name}")
    return factory


def build_agents(spec: str, config: Any, *, imitation: bool = False) -> tuple[Any, Any]:
    """(sender, receiver) from the user's factory, checked against the protocols before any work."""
    from emergent_frl.protocols import check_pair

    factory = load_factory(spec)
    try:
        pair = factory(config)
    except Exception as error:  # noqa: BLE001 - reported as the user's function failing, in one line
        raise ConfigError("agents", spec, f"{spec}(config) failed: {_first_line(error)}") from None
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ConfigError("agents", spec, f"{spec}(config) must return (sender, receiver), got {type(pair).__name__}")
    sender, receiver = pair
    try:
        check_pair(sender, receiver, imitation=imitation)
    except ValueError as error:
        raise ConfigError("agents", spec, str(error)) from None
    return sender, receiver


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__
