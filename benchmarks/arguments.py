"""Argument types the benchmark scripts share (each script runs with this folder on sys.path)."""

from __future__ import annotations

import argparse


def positive(text: str) -> int:
    """An integer >= 1, or argparse's one-line error."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
