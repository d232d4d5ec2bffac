"""Named presets for the game scripts: `games/presets/<name>.yaml`, loaded with `load_preset`;
shipped sweep grids: `games/presets/sweeps/<name>.yaml`, found with `available_sweeps`."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

PRESET_DIR = pathlib.Path(__file__).resolve().parent
SWEEP_DIR = PRESET_DIR / "sweeps"


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


def available_sweeps() -> list[str]:
    """Names of the sweep grids shipped with the package (`python -m games.sweep NAME --out DIR`)."""
    return sorted(path.stem for path in SWEEP_DIR.glob("*.yaml"))
