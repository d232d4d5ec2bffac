"""Pair distances between meanings and between messages, computed in bounded blocks of pairs.

A "side" computes one kind of distance for rectangle ``(a, b)`` of ``row_blocks``: rows a..b-1
against rows a..n-1, of which the pairs with column > row are wanted. A discrete side returns
small integer codes plus a value per code (Hamming counts, Levenshtein distances), so meaning and
message codes can be counted into a small joint table and no pair vector is ever stored; a
continuous side (float cosine/euclidean, user callables) returns float distances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Union

import numpy as np

from ._edit_distance import block_cells, dense_symbols, levenshtein_block, row_blocks, upper_mask
from ._inputs import Messages

Distance = Union[str, Callable[[np.ndarray, np.ndarray], float]]

# Cells per rectangle for the cheap kernels: a few MB of work arrays, negligible numpy overhead.
_BLOCK_CELLS = 1 << 20


@dataclass(frozen=True)
class Side:
    rect: Callable[[int, int], np.ndarray]  # (a, b) -> (b-a, n-a) codes or distances
    diagonal: np.ndarray  # codes or distances of each item to itself
    code_values: np.ndarray | None  # value of each code; None for a continuous side
    block_cells: int  # largest rectangle this side's kernel should get

    @property
    def discrete(self) -> bool:
        return self.code_values is not None

    def to_values(self, codes_or_values: np.ndarray) -> np.ndarray:
        if self.code_values is None:
            return codes_or_values.astype(np.float64, copy=False)
        return self.code_values[codes_or_values]


def blocks(n: int, *sides: Side) -> Iterator[tuple[int, int]]:
    return row_blocks(n, max(1, min(s.block_cells for s in sides)))


def condensed(side: Side, n: int) -> np.ndarray:
    """All pairs i<j in scipy's condensed order, as float distances."""
    parts = [side.to_values(side.rect(a, b)[upper_mask(a, b, n)]) for a, b in blocks(n, side)]
    return np.concatenate(parts) if parts else np.zeros(0)


def joint_counts(n: int, rows: Side, cols: Side) -> np.ndarray:
    """table[r, c] = number of pairs i<j whose codes are r (rows side) and c (cols side)."""
    n_rows, n_cols = rows.code_values.size, cols.code_values.size
    table = np.zeros(n_rows * n_cols, dtype=np.int64)
    for a, b in blocks(n, rows, cols):
        joint = rows.rect(a, b).astype(np.int64) * n_cols + cols.rect(a, b)
        height = b - a
        # Columns >= b are all above the diagonal; only the leading square needs a mask.
        table += np.bincount(joint[:, height:].ravel(), minlength=table.size)
        table += np.bincount(joint[:, :height][upper_mask(a, b, b)], minlength=table.size)
    return table.reshape(n_rows, n_cols)


def _callable_side(items: list[np.ndarray], fn: Callable) -> Side:
    """User distance: one Python call per pair (unavoidable), computed once up front."""
    n = len(items)
    flat = np.fromiter(
        (fn(items[i], items[j]) for i in range(n) for j in range(i + 1, n)), dtype=np.float64, count=n * (n - 1) // 2
    )
    diagonal = np.fromiter((fn(x, x) for x in items), dtype=np.float64, count=n)
    starts = np.concatenate([[0], np.cumsum(np.arange(n - 1, 0, -1))])

    def rect(a: int, b: int) -> np.ndarray:
        i = np.arange(a, b)[:, None]
        j = np.arange(a, n)[None, :]
        return flat[np.where(j > i, starts[i] + j - i - 1, 0)]

    return Side(rect, diagonal, None, _BLOCK_CELLS)


def _count_differences(x: np.ndarray) -> Callable[[int, int], np.ndarray]:
    """Kernel: number of differing columns between rows a..b-1 and rows a..n-1."""
    columns = np.ascontiguousarray(x.T)
    dtype = np.uint8 if x.shape[1] < 256 else np.int64

    def kernel(a: int, b: int) -> np.ndarray:
        count = np.zeros((b - a, x.shape[0] - a), dtype=dtype)
        for col in columns:
            count += col[a:b, None] != col[None, a:]
        return count

    return kernel


def meaning_side(meanings: np.ndarray, distance: Distance) -> Side:
    """Integer meanings are categorical (cosine/euclidean on their one-hot); floats are vectors."""
    n, width = meanings.shape
    if callable(distance):
        return _callable_side(list(meanings), distance)
    zeros = np.zeros(n, dtype=np.int64)
    cells = max(1, _BLOCK_CELLS // width)
    categorical = meanings.dtype.kind != "f"
    counts = np.arange(width + 1, dtype=np.float64)
    if distance == "hamming" or (categorical and distance == "cosine"):
        # On the concatenated one-hot encoding, cosine distance is h / n_attributes exactly.
        return Side(_count_differences(meanings), zeros, counts / width, cells)
    if categorical:  # euclidean between one-hot encodings: sqrt(2 h)
        return Side(_count_differences(meanings), zeros, np.sqrt(2.0 * counts), cells)
    if distance == "cosine":
        squared = np.einsum("ij,ij->i", meanings, meanings)
        if np.any(squared == 0):
            raise ValueError("meanings has an all-zero row: its cosine distance is undefined")

        def cosine(a: int, b: int) -> np.ndarray:
            dot = meanings[a:b] @ meanings[a:].T
            return np.clip(1.0 - dot / np.sqrt(squared[a:b, None] * squared[None, a:]), 0.0, 2.0)

        return Side(cosine, np.zeros(n), None, _BLOCK_CELLS)

    def euclidean(a: int, b: int) -> np.ndarray:
        diff = meanings[a:b, None, :] - meanings[None, a:, :]
        return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))

    return Side(euclidean, np.zeros(n), None, cells)


def message_side(msgs: Messages, distance: Distance) -> Side:
    """Message distances; ``edit`` is Levenshtein / mean length of the two messages (EGG)."""
    n, width = msgs.symbols.shape
    if callable(distance):
        return _callable_side([msgs.row(i) for i in range(n)], distance)
    zeros = np.zeros(n, dtype=np.int64)
    if distance == "hamming":
        # Positions past a message's end (ragged input, or after eos) hold a padding symbol (-1).
        padded = np.where(np.arange(width)[None, :] < msgs.lengths[:, None], msgs.symbols, -1)
        counts = np.arange(width + 1, dtype=np.float64)
        return Side(_count_differences(padded), zeros, counts / width, max(1, _BLOCK_CELLS // width))

    sym, lengths = dense_symbols(msgs.symbols), msgs.lengths
    cells = block_cells(width)

    def levenshtein(a: int, b: int) -> np.ndarray:
        return levenshtein_block(sym[a:b], lengths[a:b], sym[a:], lengths[a:])

    lev_values = np.arange(width + 1, dtype=np.float64)
    if distance == "levenshtein":
        return Side(levenshtein, zeros, lev_values, cells)
    if msgs.rectangular:  # every mean length is `width`: the code is the Levenshtein distance
        return Side(levenshtein, zeros, 2.0 * lev_values / (2 * width), cells)

    # Ragged: the code packs (Levenshtein, sum of the two lengths); value 2 lev / sum.
    n_sums = 2 * width + 1

    def edit_codes(a: int, b: int) -> np.ndarray:
        return levenshtein(a, b).astype(np.int64) * n_sums + (lengths[a:b, None] + lengths[None, a:])

    lev_part, sum_part = np.divmod(np.arange((width + 1) * n_sums), n_sums)
    values = np.where(sum_part > 0, 2.0 * lev_part / np.maximum(sum_part, 1), 0.0)  # two empty messages: 0
    return Side(edit_codes, 2 * lengths, values, cells)
