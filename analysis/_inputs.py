"""Validation and normalisation of the arrays the compositionality metrics take.

Every check raises a ``ValueError`` that names the argument, before any work starts, so a
caller learns what was wrong with its input instead of getting a numpy error from deep inside
a distance kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Messages:
    """Messages as a padded symbol matrix plus true lengths (ragged input, EOS truncation)."""

    symbols: np.ndarray  # (N, L) int64, positions past ``lengths[i]`` are padding
    lengths: np.ndarray  # (N,) int64
    rectangular: bool  # every message has the full length L

    @property
    def n(self) -> int:
        return int(self.symbols.shape[0])

    def row(self, i: int) -> np.ndarray:
        return self.symbols[i, : self.lengths[i]]


def _integer_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0 and array.dtype.kind == "f":  # an empty list has no symbols to misread
        array = array.astype(np.int64)
    if array.dtype == object:
        raise ValueError(f"{name} must be an integer array, got an object array")
    if array.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must hold integer symbols, got dtype {array.dtype} "
            f"(cast explicitly, e.g. {name}.astype(int), if the values are whole numbers)"
        )
    return array.astype(np.int64, copy=False)


def as_messages(messages: Any, *, eos: int | None = None, name: str = "messages") -> Messages:
    """Normalise an (N, L) integer array or a list of 1-D integer sequences (ragged allowed).

    With ``eos`` set, each message ends at its first ``eos`` symbol, which is kept (EGG's
    ``find_lengths`` convention: the length counts the EOS); later symbols are dropped.
    """
    if eos is not None and (isinstance(eos, bool) or not isinstance(eos, (int, np.integer)) or eos < 0):
        raise ValueError(f"eos must be None or a non-negative int symbol, got {eos!r}")
    if isinstance(messages, (list, tuple)):
        rows = [_integer_array(m, f"{name}[{i}]") for i, m in enumerate(messages)]
        for i, row in enumerate(rows):
            if row.ndim != 1:
                raise ValueError(f"{name}[{i}] must be a 1-D sequence of symbols, got shape {row.shape}")
        if not rows:
            raise ValueError(f"{name} is empty: need at least one message")
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        symbols = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
        for i, row in enumerate(rows):
            symbols[i, : len(row)] = row
    else:
        symbols = _integer_array(messages, name)
        if symbols.ndim != 2:
            raise ValueError(f"{name} must be 2-D (N messages, L positions), got shape {symbols.shape}")
        if symbols.shape[0] == 0:
            raise ValueError(f"{name} is empty: need at least one message")
        lengths = np.full(symbols.shape[0], symbols.shape[1], dtype=np.int64)
    if symbols.shape[1] == 0:
        raise ValueError(f"{name} has no symbols: every message is empty")
    positions = np.arange(symbols.shape[1])
    inside = positions[None, :] < lengths[:, None]
    if np.any(symbols[inside] < 0):
        raise ValueError(f"{name} holds negative symbols (min {int(symbols[inside].min())}); symbols must be >= 0")
    if eos is not None:
        is_eos = (symbols == eos) & inside
        has_eos = is_eos.any(axis=1)
        lengths = np.where(has_eos, is_eos.argmax(axis=1) + 1, lengths)
        width = int(lengths.max())
        symbols, inside = symbols[:, :width], positions[None, :width] < lengths[:, None]
    symbols = np.where(inside, symbols, 0)
    rectangular = bool(np.all(lengths == symbols.shape[1]))
    return Messages(symbols=symbols, lengths=lengths, rectangular=rectangular)


def as_meanings(meanings: Any, name: str = "meanings") -> np.ndarray:
    """(N, D) array: integer or bool = categorical attribute values; float = feature vectors."""
    array = np.asarray(meanings)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be an integer (attribute values) or float (vectors) array, got dtype {array.dtype}"
        )
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (N objects, n_attributes or D features), got shape {array.shape}"
            " (use .reshape(-1, 1) for a single attribute)"
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one object")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has zero columns: need at least one attribute or feature")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} holds NaN or infinite values")
        return array.astype(np.float64, copy=False)
    return array.astype(np.int64, copy=False)


def as_attributes(attributes: Any, name: str = "attributes") -> np.ndarray:
    """(N, n_attributes) integer (or bool) attribute values, not one-hot columns."""
    array = np.asarray(attributes)
    array = array.astype(np.int64) if array.dtype.kind == "b" else _integer_array(array, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N objects, n_attributes), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one object")
    return array


def check_same_count(n_meanings: int, n_messages: int, meanings_name: str, messages_name: str) -> None:
    if n_meanings != n_messages:
        raise ValueError(
            f"{meanings_name} and {messages_name} must have the same number of rows, "
            f"got {n_meanings} and {n_messages}"
        )
