"""Compositionality metrics of an emergent language: topographic similarity, posdis, bosdis, entropy.

Topographic similarity (topsim) correlates, over pairs of objects, how far apart two meanings
are with how far apart their messages are. Papers differ in the distances, the correlation and
which pairs they use, and those choices change the numbers, so every choice is an argument and
``convention=`` names the combinations of EGG, Li & Bowling (2019) and Ren et al. (2020).
bosdis likewise has named conventions (``BOSDIS_CONVENTIONS``: EGG drops symbol 0, emlangkit
counts it); posdis has a single definition.

Everything here is numpy/scipy only (no torch) and vectorised: pair distances are computed in
bounded-size blocks of pairs, never with one Python call per pair (except for user callables),
so scoring 4,096 objects (8.4M pairs) every generation stays cheap in time and memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ._disentanglement import BOSDIS_CONVENTIONS, bosdis, message_entropy, posdis, symbol_counts
from ._edit_distance import upper_mask
from ._inputs import as_meanings, as_messages, check_same_count
from ._pair_distances import Distance, Side, blocks, condensed, joint_counts, meaning_side, message_side
from ._rank_correlation import average_ranks, code_ranks, table_correlation, weighted_pearson

__all__ = [
    "BOSDIS_CONVENTIONS",
    "CONVENTIONS",
    "TopsimConvention",
    "bosdis",
    "message_entropy",
    "pairwise_meaning_distances",
    "pairwise_message_distances",
    "posdis",
    "symbol_counts",
    "topographic_similarity",
]

MEANING_DISTANCES = ("hamming", "cosine", "euclidean")
MESSAGE_DISTANCES = ("edit", "levenshtein", "hamming")
CORRELATIONS = ("spearman", "pearson")
PAIR_SETS = ("distinct", "all")

# Largest joint (meaning code x message code) count table before falling back to pair vectors.
_MAX_TABLE = 1 << 22


@dataclass(frozen=True)
class TopsimConvention:
    """A named combination of topsim choices, so a user can match a paper's numbers."""

    meaning_distance: str
    message_distance: str
    correlation: str
    pairs: str
    description: str
    eos: int | None = None  # None: messages as given; an int: cut after the first such symbol


CONVENTIONS = MappingProxyType({
    "egg": TopsimConvention(
        "hamming", "edit", "spearman", "distinct",
        "EGG's TopographicSimilarity: Spearman of Hamming (fraction of differing attributes) vs "
        "Levenshtein / mean length of the two messages, over unordered pairs i<j, on the messages "
        "as given (padding and post-EOS symbols included): the number EGG's callback prints.",
    ),
    "egg_eos": TopsimConvention(
        "hamming", "edit", "spearman", "distinct",
        "EGG's distances and correlation on messages cut after their first EOS (symbol 0, kept and "
        "counted in the length, as EGG's find_lengths), so padding does not count. EGG itself does "
        "not cut before scoring topsim.",
        eos=0,
    ),
    "li_bowling": TopsimConvention(
        "cosine", "levenshtein", "spearman", "all",
        "Li & Bowling 2019 (and the forget-and-relearn reference code): cosine distance of one-hot "
        "object vectors vs raw Levenshtein, Spearman, over all N x N ordered pairs including i==j. "
        "They report -Spearman(Levenshtein, cosine similarity), which equals this.",
    ),
    "ren": TopsimConvention(
        "hamming", "levenshtein", "pearson", "all",
        "Ren et al. 2020 (neural iterated learning): attribute Hamming vs raw Levenshtein, Pearson, "
        "over all N x N ordered pairs including i==j.",
    ),
})


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------
def _check_choice(name: str, value: Any, allowed: tuple[str, ...], allow_callable: bool) -> None:
    if allow_callable and callable(value):
        return
    if not isinstance(value, str) or value not in allowed:
        extra = " or a callable(u, v) -> float" if allow_callable else ""
        raise ValueError(f"{name} must be one of {list(allowed)}{extra}, got {value!r}")


def _resolve(convention: str | None, **explicit: Any) -> dict[str, Any]:
    """Fill the choices left as None from the convention (EGG's when None); refuse conflicts."""
    allowed = {
        "meaning_distance": (MEANING_DISTANCES, True),
        "message_distance": (MESSAGE_DISTANCES, True),
        "correlation": (CORRELATIONS, False),
        "pairs": (PAIR_SETS, False),
    }
    for name, value in explicit.items():
        if value is not None:
            _check_choice(name, value, *allowed[name])
    if convention is not None and (not isinstance(convention, str) or convention not in CONVENTIONS):
        raise ValueError(f"convention must be None or one of {list(CONVENTIONS)}, got {convention!r}")
    base = CONVENTIONS["egg" if convention is None else convention]
    chosen = {}
    for name, value in explicit.items():
        preset = getattr(base, name)
        if value is not None and convention is not None and (callable(value) or value != preset):
            raise ValueError(
                f"{name}={value!r} conflicts with convention={convention!r}, which uses {name}={preset!r}; "
                "pass either the convention or explicit choices, or matching values"
            )
        chosen[name] = preset if value is None else value
    return chosen


def _resolve_eos(convention: str | None, eos: Any) -> Any:
    """The convention's EOS cut when ``eos`` is None; a different explicit one is a conflict."""
    preset = None if convention is None else CONVENTIONS[convention].eos
    if eos is None:
        return preset
    if preset is not None and eos != preset:
        raise ValueError(
            f"eos={eos!r} conflicts with convention={convention!r}, which cuts messages after eos={preset!r}"
        )
    return eos


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
def pairwise_meaning_distances(meanings: Any, distance: Distance = "hamming") -> np.ndarray:
    """Distances of all unordered pairs i<j, as scipy's condensed vector (``squareform`` it).

    Integer (or bool) ``meanings`` are categorical attribute values: ``hamming`` is the fraction
    of differing attributes, and ``cosine``/``euclidean`` are taken on the concatenated one-hot
    encoding (h/n_attributes and sqrt(2h) for h differing attributes; this is what papers mean by
    cosine on one-hot objects). Float ``meanings`` are vectors used as given (scipy's hamming,
    cosine, euclidean). A callable gets two rows and returns a float.
    """
    _check_choice("distance", distance, MEANING_DISTANCES, True)
    array = as_meanings(meanings)
    return condensed(meaning_side(array, distance), array.shape[0])


def pairwise_message_distances(messages: Any, distance: Distance = "edit", *, eos: int | None = None) -> np.ndarray:
    """Distances of all unordered message pairs i<j, as scipy's condensed vector.

    ``edit``: Levenshtein / mean length of the two messages (EGG); ``levenshtein``: raw;
    ``hamming``: fraction of differing positions (positions past a shorter message's end count
    as differing). ``messages`` is an (N, L) int array or a list of 1-D int sequences; ``eos``
    cuts each message after its first EOS (kept). A callable gets two 1-D int arrays.
    """
    _check_choice("distance", distance, MESSAGE_DISTANCES, True)
    msgs = as_messages(messages, eos=eos)
    return condensed(message_side(msgs, distance), msgs.n)


def topographic_similarity(
    meanings: Any,
    messages: Any,
    *,
    meaning_distance: Distance | None = None,
    message_distance: Distance | None = None,
    correlation: str | None = None,
    pairs: str | None = None,
    convention: str | None = None,
    eos: int | None = None,
) -> float:
    """Correlation between meaning distances and message distances over pairs of objects.

    Args:
        meanings: (N, n_attributes) integer attribute values (categorical), or (N, D) float vectors.
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences (ragged allowed).
        meaning_distance: ``"hamming"``, ``"cosine"``, ``"euclidean"`` or a callable(u, v) -> float
            (see ``pairwise_meaning_distances``; on integer meanings cosine/euclidean use one-hot).
        message_distance: ``"edit"`` (Levenshtein / mean length of the two messages, EGG),
            ``"levenshtein"`` (raw), ``"hamming"`` or a symmetric callable(u, v) -> float.
        correlation: ``"spearman"`` (ties get average ranks, as scipy) or ``"pearson"``.
        pairs: ``"distinct"``: unordered pairs i<j (EGG, scipy ``pdist``); ``"all"``: all N x N
            ordered pairs including i==j (Li & Bowling, Ren et al.). Self-pairs add n points at
            (0, 0), which usually raises the value: numbers under the two are not comparable.
        convention: a named set of the four choices above (and of EOS cutting), from ``CONVENTIONS``:

            - ``"egg"`` (also the defaults when no convention is given): hamming / edit /
              spearman / distinct, on the messages as given (padding and post-EOS symbols
              count), exactly what EGG's ``TopographicSimilarity`` callback prints (and
              emlangkit's ``compute_topographic_similarity``). A perfectly compositional
              language scores 1.0. Training records store topsim under this convention
              (``emergent_frl.training.RECORD_CONVENTIONS``), with and without ``--eos``.
            - ``"egg_eos"``: the same choices on messages cut after their first EOS symbol 0
              (``eos=0``), so trailing padding is not compared; not what EGG prints.
            - ``"li_bowling"``: cosine on one-hot objects / raw levenshtein / spearman / all.
              Their -Spearman(Levenshtein, cosine similarity) equals this.
            - ``"ren"``: attribute hamming / raw levenshtein / pearson / all.

            A convention fills the choices left as None. Passing a choice that differs from the
            convention's raises ValueError (a matching one is accepted), so a reported number
            always follows the convention it names.
        eos: None (default) uses messages as given, post-EOS symbols included, as EGG does
            (``"egg_eos"`` fills in 0). An int cuts each message after its first ``eos`` symbol
            (the EOS is kept and counts in the length, like EGG's ``find_lengths``); with
            ``"egg_eos"`` it must be 0. On top of a convention that scores messages as given
            (``"egg"``, ``"li_bowling"``, ``"ren"``) it is an extra choice, and the number is
            then no longer that convention's; pass ``convention="egg_eos"`` to cut by name.

    Returns:
        The correlation as a float. nan, with a ``scipy.stats.ConstantInputWarning``, when all
        meaning distances or all message distances are equal (e.g. a language with one message).

    Raises:
        ValueError: bad names, conflicting choices, mismatched N, empty input, fewer than 2
            objects, negative or non-integer symbols, NaN in float meanings.
    """
    chosen = _resolve(
        convention, meaning_distance=meaning_distance, message_distance=message_distance,
        correlation=correlation, pairs=pairs,
    )
    eos = _resolve_eos(convention, eos)
    meaning_array = as_meanings(meanings)
    msgs = as_messages(messages, eos=eos)
    check_same_count(meaning_array.shape[0], msgs.n, "meanings", "messages")
    n = msgs.n
    if n < 2:
        raise ValueError(f"meanings and messages need at least 2 objects to form pairs, got {n}")

    meanings_by_pair = meaning_side(meaning_array, chosen["meaning_distance"])
    messages_by_pair = message_side(msgs, chosen["message_distance"])
    method, all_pairs = chosen["correlation"], chosen["pairs"] == "all"

    if (
        meanings_by_pair.discrete
        and messages_by_pair.discrete
        and meanings_by_pair.code_values.size * messages_by_pair.code_values.size <= _MAX_TABLE
    ):
        table = joint_counts(n, meanings_by_pair, messages_by_pair)
        if all_pairs:  # each distinct pair twice (i, j and j, i), plus the n self-pairs
            table = 2 * table
            np.add.at(table, (meanings_by_pair.diagonal, messages_by_pair.diagonal), 1)
        return table_correlation(table, meanings_by_pair.code_values, messages_by_pair.code_values, method)

    meaning_parts, message_parts = [], []
    for a, b in blocks(n, meanings_by_pair, messages_by_pair):
        mask = upper_mask(a, b, n)
        meaning_parts.append(meanings_by_pair.rect(a, b)[mask])
        message_parts.append(messages_by_pair.rect(a, b)[mask])
    weights = None  # every distinct pair once
    if all_pairs:  # each distinct pair twice, plus the n self-pairs once
        meaning_parts.append(meanings_by_pair.diagonal)
        message_parts.append(messages_by_pair.diagonal)
        weights = np.concatenate([np.full(n * (n - 1) // 2, 2.0), np.ones(n)])
    return weighted_pearson(
        _scores(meanings_by_pair, meaning_parts, weights, method, "meaning_distance"),
        _scores(messages_by_pair, message_parts, weights, method, "message_distance"),
        weights,
    )


def _scores(side: Side, parts: list[np.ndarray], weights: np.ndarray | None, method: str, name: str) -> np.ndarray:
    """What Pearson correlates: the distances themselves, or their (weighted average) ranks."""
    data = np.concatenate(parts)
    if side.discrete:
        return code_ranks(data, weights, side.code_values) if method == "spearman" else side.code_values[data]
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} returned NaN or infinite distances")
    return average_ranks(data, weights) if method == "spearman" else data
