"""Zipf's law of abbreviation (ZLA) for messages with an EOS: are frequent messages shorter?

Zipf (1935): in natural languages more frequent words are shorter. Chaabouni, Kharitonov,
Dupoux & Baroni, "Anti-efficient encoding in emergent communication" (NeurIPS 2019) test it in
emergent languages by plotting message length against frequency and find the opposite
(frequent inputs get long messages). The number reported here is the rank correlation between
how often a message type is used and its length, over message types, as the law is tested in
quantitative linguistics and animal communication (Ferrer-i-Cancho et al. 2013, "Compression
as a universal principle of animal behavior", Cognitive Science): Kendall's tau-b (scipy's
``kendalltau``) by default, Spearman's rho on request (``ZLA_CORRELATIONS``). Negative values
mean the law holds; positive values are Chaabouni et al.'s anti-efficiency.

A message type's frequency is the number of rows that carry it, or the sum of their
``frequencies`` when the inputs are not uniform (Chaabouni et al. draw inputs from a power law:
pass each object's probability or count). With every object once (this project's evaluation)
a type's frequency is the number of objects that share it, so the statistic asks whether
messages used for many objects are shorter.

Lengths follow ``analysis._inputs.as_messages``: with ``eos`` each message ends at its first EOS,
which is counted (EGG's ``find_lengths``; a message without EOS has the full length), so a
message of k symbols before its EOS has length k + 1. Counting the EOS or not shifts every
length that has one by 1 and leaves the correlation unchanged except against EOS-less
messages of full length. Without ``eos`` (or ragged input) lengths are as given; fixed-length
messages have one length and no correlation (nan).

emlangkit's ``metrics.zla`` is a different quantity (mean lengths per frequency of HAS
segments) and is not used as an oracle.
"""
from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Any

import numpy as np

from ._inputs import as_messages

__all__ = ["ZLA_CORRELATIONS", "message_types", "zla_correlation"]

ZLA_CORRELATIONS = MappingProxyType({
    "kendall": "Kendall's tau-b (scipy.stats.kendalltau) between type frequency and length, as tests of the "
               "law of abbreviation (Ferrer-i-Cancho et al. 2013).",
    "spearman": "Spearman's rho (scipy.stats.spearmanr) between type frequency and length.",
})


def message_types(messages: Any, *, eos: int | None = None,
                  frequencies: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct messages with their frequency and length: ``(types, frequency, length)``.

    ``types`` is (T, L) padded with 0 past each type's length; ``frequency`` (T,) float is the
    number of rows (or the summed ``frequencies``) carrying the type; ``length`` (T,) int.
    """
    msgs = as_messages(messages, eos=eos)
    weights = np.ones(msgs.n)
    if frequencies is not None:
        array = np.asarray(frequencies)
        if array.dtype.kind not in "iuf" or array.shape != (msgs.n,):
            raise ValueError(f"frequencies must be a 1-D array of {msgs.n} numbers (one per message), "
                             f"got dtype {array.dtype} and shape {array.shape}")
        weights = array.astype(np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("frequencies must be finite and >= 0")
    keyed = np.concatenate([msgs.lengths[:, None], msgs.symbols], axis=1)
    unique, inverse = np.unique(keyed, axis=0, return_inverse=True)
    frequency = np.bincount(inverse.ravel(), weights=weights, minlength=unique.shape[0])
    present = frequency > 0
    return unique[present, 1:], frequency[present], unique[present, 0]


def zla_correlation(messages: Any, *, eos: int | None = None, frequencies: Any = None,
                    correlation: str = "kendall") -> float:
    """Rank correlation between message-type frequency and message length (module docstring).

    Args:
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences (ragged allowed).
        eos: cut each message after its first ``eos`` (kept, counted in the length); None:
            lengths as given.
        frequencies: optional (N,) non-negative weight of each row (how often its object is
            seen); None: each row once.
        correlation: ``"kendall"`` (tau-b, default) or ``"spearman"``.

    Returns:
        The correlation; negative when frequent messages are shorter (ZLA holds). nan, with a
        ``scipy.stats.ConstantInputWarning``, when all types share one length or one frequency
        (e.g. fixed-length messages without EOS), or there is a single type.
    """
    if not isinstance(correlation, str) or correlation not in ZLA_CORRELATIONS:
        raise ValueError(f"correlation must be one of {list(ZLA_CORRELATIONS)}, got {correlation!r}")
    _, frequency, length = message_types(messages, eos=eos, frequencies=frequencies)
    from scipy import stats  # importing scipy.stats costs about a second: only when scoring

    if np.unique(frequency).size < 2 or np.unique(length).size < 2:
        which = "frequencies" if np.unique(frequency).size < 2 else "lengths"
        warnings.warn(f"all message types have the same {which}: ZLA's correlation is undefined, returning nan",
                      stats.ConstantInputWarning, stacklevel=2)
        return float("nan")
    if correlation == "kendall":
        return float(stats.kendalltau(frequency, length).statistic)
    return float(stats.spearmanr(frequency, length).statistic)
