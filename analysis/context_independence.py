"""Context independence (Bogin, Geva & Berant 2018): does each concept keep one symbol in every context?

Bogin, Geva & Berant, "Emergence of communication in an interactive world with consistent
speakers" (arXiv:1809.00549, 2018). A concept c is one attribute taking one value (attribute j =
value v); a symbol is one vocabulary item. From the co-occurrence counts

    n(c, v) = sum over objects that have concept c of the number of times symbol v occurs in
              the object's message

come p(v | c) = n(c, v) / sum_v' n(c, v') and p(c | v) = n(c, v) / sum_c' n(c', v), and

    CI = 1/|C| sum_c p(v_c | c) * p(c | v_c),

the mean over the concepts present. CI is 1 only when every concept has one symbol used for it
alone and always; on count estimates a perfectly compositional language with k attributes
scores 1/k^2 (each symbol co-occurs with the k - 1 other attributes' values as often as with
its own), e.g. 0.25 for two attributes, the value Korbak et al.'s test expects.

The symbol chosen for each concept is where implementations part (``CI_CONVENTIONS``):

- ``"bogin"`` (default): v_c = argmax_v p(c | v), the symbol that most specifically names c,
  as the formula is published.
- ``"korbak"``: v_c = argmax_v n(c, v) (= argmax_v p(v | c)), the most frequent symbol with c,
  as in the implementation of Korbak et al. 2020 ("Measuring non-trivial compositionality in
  emergent communication"; tomekkorbak/measuring-non-trivial-compositionality,
  ``metrics/context_independence.py``), which later work reuses. Korbak's code adds 1e-7 to
  every count; that shifts its values by less than 1e-6 and is not done here.

Ties go to the lowest symbol. The probabilities are plug-in co-occurrence estimates under both.
With ``eos`` set, each message is cut at its first EOS and only the symbols before it count (the
EOS and padding co-occur with every concept and name none); without ``eos`` every position counts.
"""
from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Any

import numpy as np

from ._inputs import as_attributes, as_messages, check_same_count
from .segments import content_lengths

__all__ = ["CI_CONVENTIONS", "concept_symbol_counts", "context_independence"]

CI_CONVENTIONS = MappingProxyType({
    "bogin": "v_c = argmax_v p(c | v), the formula as Bogin et al. 2018 publish it.",
    "korbak": "v_c = argmax_v n(c, v) = argmax_v p(v | c), as Korbak et al. 2020's implementation.",
})


def _check_vocab(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int (symbols 0..vocab_size-1), got {vocab_size!r}")
    return int(vocab_size)


def concept_symbol_counts(attributes: Any, messages: Any, vocab_size: int, *,
                          eos: int | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """n(c, v) for every concept present and every symbol 0..vocab_size-1, and the concepts.

    Returns ``(counts, concepts)``: counts is (n_concepts, vocab_size) int, row k for concept
    ``concepts[k] = (attribute index, value)``. ``eos`` as in ``context_independence``.
    """
    vocab_size = _check_vocab(vocab_size)
    attrs = as_attributes(attributes)
    msgs = as_messages(messages, eos=eos)
    check_same_count(attrs.shape[0], msgs.n, "attributes", "messages")
    lengths = content_lengths(msgs, eos)
    inside = np.arange(msgs.symbols.shape[1])[None, :] < lengths[:, None]
    used = msgs.symbols[inside]
    if used.size and int(used.max()) >= vocab_size:
        raise ValueError(
            f"messages hold symbol {int(used.max())}, outside vocab_size={vocab_size} (symbols 0..{vocab_size - 1})"
        )
    rows = np.broadcast_to(np.arange(msgs.n)[:, None], msgs.symbols.shape)[inside]
    per_message = np.bincount(rows * vocab_size + used, minlength=msgs.n * vocab_size).reshape(msgs.n, vocab_size)
    concepts, indicators = [], []
    for j in range(attrs.shape[1]):
        values, codes = np.unique(attrs[:, j], return_inverse=True)
        concepts += [(j, int(v)) for v in values]
        indicators.append(np.eye(values.size, dtype=np.int64)[codes.ravel()])
    return np.concatenate(indicators, axis=1).T @ per_message, concepts


def context_independence(attributes: Any, messages: Any, vocab_size: int, *, convention: str = "bogin",
                         eos: int | None = None) -> float:
    """Context independence CI = mean over concepts c of p(v_c | c) * p(c | v_c), in [0, 1].

    Args:
        attributes: (N, n_attributes) integer attribute values (not one-hot); every (attribute,
            value) pair present is a concept.
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences (ragged allowed).
        vocab_size: number of symbols (0..vocab_size-1); a larger symbol raises ValueError.
        convention: ``"bogin"`` (v_c = argmax p(c | v)) or ``"korbak"`` (v_c = argmax n(c, v)),
            see ``CI_CONVENTIONS``.
        eos: count only the symbols before each message's first ``eos``; None: every position.

    Returns:
        CI as a float; a concept that never co-occurs with a symbol contributes 0. nan, with a
        RuntimeWarning, when no message holds a symbol.
    """
    if not isinstance(convention, str) or convention not in CI_CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CI_CONVENTIONS)}, got {convention!r}")
    counts, _ = concept_symbol_counts(attributes, messages, vocab_size, eos=eos)
    if counts.sum() == 0:
        warnings.warn("no message holds a symbol: context independence is undefined, returning nan",
                      RuntimeWarning, stacklevel=2)
        return float("nan")
    counts = counts.astype(np.float64)
    per_concept = counts.sum(axis=1, keepdims=True)
    per_symbol = counts.sum(axis=0, keepdims=True)
    p_symbol_given_concept = np.divide(counts, per_concept, out=np.zeros_like(counts), where=per_concept > 0)
    p_concept_given_symbol = np.divide(counts, per_symbol, out=np.zeros_like(counts), where=per_symbol > 0)
    chooser = p_concept_given_symbol if convention == "bogin" else counts
    chosen = chooser.argmax(axis=1)  # first (lowest) symbol among ties
    rows = np.arange(counts.shape[0])
    return float(np.mean(p_symbol_given_concept[rows, chosen] * p_concept_given_symbol[rows, chosen]))
