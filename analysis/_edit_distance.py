"""Levenshtein distance between every row of one message block and every row of another.

Topographic similarity needs the edit distance of millions of message pairs (4,096 objects
give 8.4M pairs), so each step of the algorithm runs once for a whole rectangle of pairs, as one
numpy operation over a (rows x cols) array of small unsigned ints, instead of a Python call per
pair. Messages of up to 64 symbols use a bit-parallel algorithm (one step per symbol of the
second message); longer ones the plain dynamic programme (one step per DP cell). Callers bound
memory by choosing the rectangle size (see ``row_blocks`` and ``block_cells``).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np


def row_blocks(n: int, max_elements: int) -> Iterator[tuple[int, int]]:
    """Split the upper triangle of an n x n pair matrix into rectangles of bounded size.

    Yields ``(a, b)``: the rectangle is rows ``a..b-1`` against columns ``a..n-1``. Its strict
    upper triangle (column > row), read row by row, is exactly the slice of scipy's condensed
    pair vector for rows ``a..b-1``, so consecutive rectangles concatenate into that vector.
    """
    a = 0
    while a < n - 1:
        cols = n - a
        b = min(n - 1, a + max(1, max_elements // cols))
        yield a, b
        a = b


def upper_mask(a: int, b: int, n: int) -> np.ndarray:
    """Boolean (b-a, n-a) mask of the pairs (i, j) with j > i in rectangle ``(a, b)``."""
    rows = np.arange(a, b)[:, None]
    cols = np.arange(a, n)[None, :]
    return cols > rows


_MAX_BITS = 64  # longest message the bit-parallel algorithm takes (one uint64 per DP column)


def levenshtein_block(
    xs: np.ndarray, x_len: np.ndarray, ys: np.ndarray, y_len: np.ndarray
) -> np.ndarray:
    """Levenshtein distance of every x against every y, as a (len(xs), len(ys)) int array.

    ``xs`` (B, Lx) and ``ys`` (M, Ly) are padded matrices of dense non-negative symbol codes
    (see ``dense_symbols``) and ``x_len``/``y_len`` their true lengths; symbols past a length
    never reach the answer. Messages up to 64 symbols use the bit-parallel algorithm, longer
    ones the plain dynamic programme.
    """
    if int(x_len.max(initial=0)) <= _MAX_BITS:
        return _bit_parallel_block(xs, x_len, ys, y_len)
    return _dp_block(xs, x_len, ys, y_len)


def block_cells(width: int) -> int:
    """Pairs per ``levenshtein_block`` call for messages of ``width`` symbols: a few MB of work arrays."""
    if width <= _MAX_BITS:
        return 1 << 17
    return max(1024, (1 << 21) // (2 * (width + 1)))


def dense_symbols(symbols: np.ndarray) -> np.ndarray:
    """Relabel symbols to 0..K-1 (order kept), so per-symbol tables stay small."""
    return np.unique(symbols, return_inverse=True)[1].reshape(symbols.shape)


def _bit_parallel_block(xs: np.ndarray, x_len: np.ndarray, ys: np.ndarray, y_len: np.ndarray) -> np.ndarray:
    """Hyyro's bit-vector form of Myers' algorithm, run on all (x, y) pairs at once.

    Each x is the pattern: one bit per position, so a DP column of all pairs is one array of
    unsigned ints, and each symbol of y advances every pair's column with ~15 bitwise ops.
    The distance starts at len(x) and moves by the horizontal delta in row len(x). Arrays are
    laid out (y, x) so that looking up the current y symbol's match bits is a contiguous gather.
    """
    n_x, n_y = len(xs), len(ys)
    width_x, width_y = int(x_len.max(initial=0)), int(y_len.max(initial=0))
    dtype = np.uint16 if width_x <= 16 else np.uint32 if width_x <= 32 else np.uint64
    n_symbols = int(max(xs[:, :width_x].max(initial=0), ys[:, :width_y].max(initial=0))) + 1
    one = dtype(1)

    # match[c, r]: bit k set where x_r[k] == c.
    match = np.zeros((n_symbols, n_x), dtype=dtype)
    for k in range(width_x):
        rows = np.flatnonzero(x_len > k)
        match[xs[rows, k], rows] |= dtype(1 << k)
    last_bit = (one << np.maximum(x_len - 1, 0).astype(dtype))[None, :]
    distance = np.broadcast_to(x_len.astype(np.int16)[None, :], (n_y, n_x)).copy()
    ragged_y = bool(np.any(y_len != width_y))

    shape = (n_y, n_x)
    vp = np.full(shape, np.iinfo(dtype).max, dtype=dtype)
    vn = np.zeros(shape, dtype=dtype)
    d0, hp, hn, bits = (np.empty(shape, dtype=dtype) for _ in range(4))
    step = np.empty(shape, dtype=bool)
    for t in range(width_y):
        eq = match[ys[:, t]]  # (M, B): match bits of y's t-th symbol in every x
        np.bitwise_and(eq, vp, out=d0)
        d0 += vp
        d0 ^= vp
        d0 |= eq
        d0 |= vn
        np.bitwise_or(d0, vp, out=hp)
        np.invert(hp, out=hp)
        hp |= vn
        np.bitwise_and(d0, vp, out=hn)
        for delta, sign in ((hp, 1), (hn, -1)):  # horizontal +1 / -1 in the pattern's last row
            np.bitwise_and(delta, last_bit, out=bits)
            np.not_equal(bits, 0, out=step)
            if ragged_y:
                step &= (t < y_len)[:, None]
            if sign > 0:
                distance += step
            else:
                distance -= step
        hp <<= one
        hp |= one
        hn <<= one
        np.bitwise_or(d0, hp, out=vp)
        np.invert(vp, out=vp)
        vp |= hn
        np.bitwise_and(hp, d0, out=vn)
    distance[:, x_len == 0] = y_len.astype(np.int16)[:, None]
    return distance.T


def _dp_block(xs: np.ndarray, x_len: np.ndarray, ys: np.ndarray, y_len: np.ndarray) -> np.ndarray:
    """Plain Wagner-Fischer DP: one numpy op per DP cell over all (x, y) pairs at once."""
    n_x, n_y = len(xs), len(ys)
    width_x = int(x_len.max(initial=0))
    width_y = int(y_len.max(initial=0))
    dtype = np.uint8 if max(width_x, width_y) < 255 else np.uint16
    y_columns = np.ascontiguousarray(ys[:, :width_y].T)  # (Ly, M): one contiguous row per position
    fixed = bool(np.all(x_len == width_x) and np.all(y_len == width_y))

    prev = np.empty((width_y + 1, n_x, n_y), dtype=dtype)
    cur = np.empty_like(prev)
    for j in range(width_y + 1):
        prev[j] = j
    differs = np.empty((n_x, n_y), dtype=bool)
    best_other = np.empty((n_x, n_y), dtype=dtype)

    if not fixed:
        out = np.empty((n_x, n_y), dtype=dtype)
        out[x_len == 0] = y_len.astype(dtype)[None, :]
        col_index = np.arange(n_y)[None, :]
        y_index = y_len[None, :]
    for i in range(1, width_x + 1):
        cur[0] = i
        x_symbol = xs[:, i - 1][:, None]
        for j in range(1, width_y + 1):
            np.not_equal(x_symbol, y_columns[j - 1][None, :], out=differs)
            np.add(prev[j - 1], differs, out=cur[j])  # substitute (or match)
            np.minimum(prev[j], cur[j - 1], out=best_other)  # delete / insert
            best_other += 1
            np.minimum(cur[j], best_other, out=cur[j])
        if not fixed:
            ending = np.flatnonzero(x_len == i)
            if ending.size:
                out[ending] = cur[y_index, ending[:, None], col_index]
        prev, cur = cur, prev
    if fixed:
        return prev[width_y].copy()
    return out
