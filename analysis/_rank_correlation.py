"""Spearman and Pearson correlation of pair-distance vectors, with pair weights.

Weights let "all ordered pairs including i == j" be computed from the distinct pairs alone:
each distinct pair stands for two ordered pairs (weight 2), each self-pair counts once. The
result equals scipy's correlation of the expanded vectors (tied values get their average rank,
as ``scipy.stats.rankdata`` does) without building N x N arrays.

When both distances take few distinct values (Hamming counts, Levenshtein distances), callers
pass a joint count table instead of vectors; the correlation of the table's cells equals that of
the underlying pairs, and costs nothing once the table is counted.
"""
from __future__ import annotations

import warnings

import numpy as np


def average_ranks(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """1-based average ranks of ``values`` in the data where value k occurs ``weights[k]`` times."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values)  # ties share one average rank, so the sort need not be stable
    ordered = values[order]
    starts = np.empty(ordered.shape, dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    group = np.cumsum(starts) - 1
    group_weight = np.bincount(group, weights=None if weights is None else np.asarray(weights, np.float64)[order])
    before = np.cumsum(group_weight) - group_weight
    ranks = np.empty(values.shape)
    ranks[order] = (before + (group_weight + 1.0) / 2.0)[group]
    return ranks


def code_ranks(codes: np.ndarray, weights: np.ndarray | None, code_values: np.ndarray) -> np.ndarray:
    """Average ranks of ``code_values[codes]`` without sorting the (possibly millions of) pairs."""
    per_code = np.bincount(codes, weights=weights, minlength=code_values.size)
    return average_ranks(code_values, per_code)[codes]


def _constant(name: str) -> float:
    # scipy's class, as scipy.stats.spearmanr (and so EGG) warns with it; imported only when
    # needed because importing scipy.stats costs about a second.
    from scipy.stats import ConstantInputWarning

    warnings.warn(
        f"{name} distances are constant over all pairs: the correlation is undefined, returning nan",
        ConstantInputWarning,
        stacklevel=4,
    )
    return float("nan")


def _n_distinct(values: np.ndarray, weights: np.ndarray) -> int:
    return int(np.unique(values[weights > 0]).size)


def _pearson_from_table(x: np.ndarray, y: np.ndarray, table: np.ndarray) -> float:
    """Weighted Pearson of x[r] against y[c] where cell (r, c) has weight table[r, c]."""
    total = table.sum()
    wx = table.sum(axis=1)
    wy = table.sum(axis=0)
    dx = x - (wx @ x) / total
    dy = y - (wy @ y) / total
    cov = dx @ table @ dy
    r = cov / np.sqrt((wx @ (dx * dx)) * (wy @ (dy * dy)))
    return float(np.clip(r, -1.0, 1.0))


def table_correlation(
    table: np.ndarray, row_values: np.ndarray, col_values: np.ndarray, method: str,
    names: tuple[str, str] = ("meaning", "message"),
) -> float:
    """Correlation of pairs summarised as ``table[r, c]`` = weight of pairs with values (r, c)."""
    table = np.asarray(table, dtype=np.float64)
    wx, wy = table.sum(axis=1), table.sum(axis=0)
    if _n_distinct(row_values, wx) < 2:
        return _constant(names[0])
    if _n_distinct(col_values, wy) < 2:
        return _constant(names[1])
    if method == "spearman":
        return _pearson_from_table(average_ranks(row_values, wx), average_ranks(col_values, wy), table)
    return _pearson_from_table(np.asarray(row_values, float), np.asarray(col_values, float), table)


def weighted_pearson(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray | None, names: tuple[str, str] = ("meaning", "message")
) -> float:
    """Pearson of x and y where pair k counts ``weights[k]`` (> 0; None: 1) times; pass ranks for Spearman."""
    if x.size == 0 or x.min() == x.max():
        return _constant(names[0])
    if y.min() == y.max():
        return _constant(names[1])
    weights = np.ones(x.shape) if weights is None else weights
    total = weights.sum()
    dx = x - (weights @ x) / total
    dy = y - (weights @ y) / total
    r = (weights @ (dx * dy)) / np.sqrt((weights @ (dx * dx)) * (weights @ (dy * dy)))
    return float(np.clip(r, -1.0, 1.0))
