"""Named presets for the game scripts: `games/presets/<name>.yaml`, loaded with `load_preset`."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

PRESET_DIR = pathlib.Path(__file__).resolve().parent


def available_presets() -> list[str]:
    """Names of the presets shipped with the package (file names without .yaml)."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's settings as a dict (config fields plus run-level keys such as `iterations`)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"--preset {name!r}: unknown preset; available: {available_presets()}")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"preset {path}: must hold a mapping of settings, got {type(values).__name__}")
    return values
