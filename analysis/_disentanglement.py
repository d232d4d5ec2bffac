"""Positional and bag-of-symbols disentanglement (Chaabouni et al. 2020) and message entropy.

All entropies and mutual informations are plug-in estimates from counts, in bits, matching
EGG's ``egg.core.language_analysis`` (``Disent.posdis``, ``Disent.bosdis``, ``calc_entropy``).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._inputs import as_attributes, as_messages, check_same_count


def _codes(column: np.ndarray) -> np.ndarray:
    return np.unique(column, return_inverse=True)[1].ravel()


def _entropy_of_codes(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def _mutual_information(x: np.ndarray, y: np.ndarray, h_x: float, h_y: float) -> float:
    joint = x * (int(y.max()) + 1) + y
    return h_x + h_y - _entropy_of_codes(_codes(joint))


def mi_gap(attributes: np.ndarray, features: np.ndarray) -> float:
    """Mean over non-constant feature columns of (top MI - second MI) / H(feature), in bits.

    Columns with zero entropy (e.g. trailing EOS positions) are skipped, as in EGG; if every
    column is constant the score is undefined and nan is returned with a warning.
    """
    attribute_codes = [_codes(attributes[:, i]) for i in range(attributes.shape[1])]
    attribute_entropies = [_entropy_of_codes(c) for c in attribute_codes]
    gaps = []
    for j in range(features.shape[1]):
        feature = _codes(features[:, j])
        h_feature = _entropy_of_codes(feature)
        if h_feature <= 0.0:
            continue
        infos = sorted(
            (_mutual_information(a, feature, h_a, h_feature) for a, h_a in zip(attribute_codes, attribute_entropies)),
            reverse=True,
        )
        gaps.append((infos[0] - infos[1]) / h_feature)
    if not gaps:
        warnings.warn(
            "every message feature is constant: disentanglement is undefined, returning nan", RuntimeWarning, stacklevel=3
        )
        return float("nan")
    return float(np.mean(gaps))


def _checked_attributes(attributes: Any, n_messages: int) -> np.ndarray:
    array = as_attributes(attributes)
    if array.shape[1] < 2:
        raise ValueError(f"attributes must have at least 2 columns (attributes) for a MI gap, got {array.shape[1]}")
    check_same_count(array.shape[0], n_messages, "attributes", "messages")
    return array


def posdis(attributes: Any, messages: Any) -> float:
    """Positional disentanglement: how much each message position encodes a single attribute.

    ``attributes``: (N, n_attributes) integer attribute values (not one-hot), n_attributes >= 2.
    ``messages``: (N, L) integer symbols, used as given (EOS and post-EOS symbols included), which
    is both EGG's ``Disent.posdis`` and emlangkit's ``compute_posdis``: unlike bosdis and topsim,
    posdis has one definition, so it takes no ``convention``. For each position j with
    H(s_j) > 0: gap_j = (MI(a_(1); s_j) - MI(a_(2); s_j)) / H(s_j),
    the two largest mutual informations over attributes; posdis is the mean gap. 1.0 for a
    language whose every position names one attribute; nan (with a warning) if no position varies.
    """
    msgs = as_messages(messages)
    if not msgs.rectangular:
        raise ValueError("messages must all have the same length for posdis (it compares positions)")
    attrs = _checked_attributes(attributes, msgs.n)
    return mi_gap(attrs, msgs.symbols)


# Which symbols bosdis counts, by convention name (see ``bosdis``).
BOSDIS_CONVENTIONS = {
    "egg": "EGG's Disent.bosdis: counts of symbols 1..vocab_size-1; symbol 0 is EOS and is dropped.",
    "emlangkit": "emlangkit's compute_bosdis: counts of every symbol 0..vocab_size-1, symbol 0 included "
                 "(in fixed-length messages symbol 0 is content; with EOS its count is EOS plus padding).",
}


def _all_symbol_counts(messages: Any, vocab_size: int) -> np.ndarray:
    """(N, vocab_size) counts of symbols 0..vocab_size-1 per message (inside its length)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an int >= 2 (it counts the EOS symbol 0), got {vocab_size!r}")
    msgs = as_messages(messages)
    inside = np.arange(msgs.symbols.shape[1])[None, :] < msgs.lengths[:, None]
    used = msgs.symbols[inside]
    if used.size and int(used.max()) >= vocab_size:
        raise ValueError(
            f"messages hold symbol {int(used.max())}, outside vocab_size={vocab_size} (symbols 0..{vocab_size - 1})"
        )
    rows = np.broadcast_to(np.arange(msgs.n)[:, None], msgs.symbols.shape)[inside]
    counts = np.bincount(rows * vocab_size + used, minlength=msgs.n * vocab_size)
    return counts.reshape(msgs.n, vocab_size)


def symbol_counts(messages: Any, vocab_size: int) -> np.ndarray:
    """(N, vocab_size - 1) counts of symbols 1..vocab_size-1 per message; EOS (0) is dropped."""
    return _all_symbol_counts(messages, vocab_size)[:, 1:]


def bosdis(attributes: Any, messages: Any, vocab_size: int, *, convention: str = "egg") -> float:
    """Bag-of-symbols disentanglement: the MI gap over per-message symbol counts.

    ``convention`` names which symbols are counted (the gap formula and the skipping of constant
    features are those of ``posdis`` under both):

    - ``"egg"`` (default; EGG's ``Disent.bosdis``): counts of symbols 1..vocab_size-1; column 0
      is dropped as EOS. Right for messages with an EOS, where 0 marks the end and the padding.
    - ``"emlangkit"`` (emlangkit's ``compute_bosdis``): counts of every symbol 0..vocab_size-1.
      Right for fixed-length messages, where symbol 0 is content like any other. Training
      records store bosdis under this convention (``emergent_frl.training.RECORD_CONVENTIONS``).

    The two differ only through the count of symbol 0. Messages may be ragged (a list of 1-D
    sequences; only symbols inside each message are counted). Unlike EGG, which silently ignores
    symbols >= vocab_size, such symbols raise a ValueError, since they mean ``vocab_size`` is wrong.
    """
    if not isinstance(convention, str) or convention not in BOSDIS_CONVENTIONS:
        raise ValueError(f"convention must be one of {list(BOSDIS_CONVENTIONS)}, got {convention!r}")
    counts = _all_symbol_counts(messages, vocab_size)
    if convention == "egg":
        counts = counts[:, 1:]
    attrs = _checked_attributes(attributes, counts.shape[0])
    return mi_gap(attrs, counts)


def message_entropy(messages: Any, *, eos: int | None = None) -> float:
    """Plug-in entropy in bits of the empirical distribution of whole messages.

    Messages are used as given (EGG's ``MessageEntropy`` includes post-EOS symbols); with
    ``eos`` set, each message is cut after its first EOS first, so post-EOS noise is ignored.
    """
    msgs = as_messages(messages, eos=eos)
    keyed = np.concatenate([msgs.lengths[:, None], msgs.symbols], axis=1)
    _, inverse = np.unique(keyed, axis=0, return_inverse=True)
    return _entropy_of_codes(inverse.ravel())
