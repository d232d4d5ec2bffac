"""Lazy access to EGG (facebookresearch/EGG): imported only when a function needs it.

EGG is not on PyPI (the PyPI package named ``egg`` is unrelated), so nothing in emergent_frl
imports it at module level; the functions that build EGG objects call ``require_egg()``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

INSTALL_HINT = (
    "EGG (facebookresearch/EGG) is not on PyPI; install it from a clone of its repository:\n"
    "    git clone https://github.com/facebookresearch/EGG.git\n"
    "    pip install --no-deps -e EGG\n"
    "    pip install editdistance rich wandb\n"
    "(egg.core imports wandb at top level; editdistance and rich are its other import-time needs)"
)


def require_egg() -> ModuleType:
    """``egg.core``, or an ImportError that says what is wrong and how to install EGG."""
    try:
        return importlib.import_module("egg.core")
    except ImportError as error:
        missing = getattr(error, "name", None) or ""
        if missing == "egg":
            reason = f"EGG is not installed ({error})"
        elif missing == "egg.core":
            reason = ("a package named 'egg' is installed but has no egg.core: it is probably the unrelated "
                      "PyPI package 'egg', not facebookresearch/EGG")
        else:
            reason = f"EGG is installed but importing egg.core failed: {error}"
        raise ImportError(f"{reason}.\n{INSTALL_HINT}") from error
