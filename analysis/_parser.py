"""Checks of the analysis commands' flags, and the one-line argument parser they share with every
other command of the project (analysis.cli): a bad flag is one stderr line and exit 2."""

from __future__ import annotations

import math

from .cli import ArgumentParser

__all__ = ["ArgumentParser", "confidence", "finite"]


def finite(flag: str, value: float | None) -> float | None:
    """`value` unless it is nan or infinite (argparse's float() takes 'nan'), which no record can match."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{flag} {value}: must be a finite number")
    return value


def confidence(value: float) -> float:
    """The confidence level of the intervals, checked before any run is read."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"--confidence {value}: allowed range is (0, 1)")
    return value
