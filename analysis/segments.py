"""Harris's articulation scheme (HAS): entropy-based segment boundaries of messages.

Ueda, Ishii & Miyao, "On the word boundaries of emergent languages based on Harris's
articulation scheme", ICLR 2023 (reference code: github.com/wedddy0707/HarrisSegmentation;
emlangkit's ``emlangkit.metrics.has`` is that code). Over all substrings of the messages, with
f(s) the number of occurrences of string s (the empty string counts every symbol):

    branching entropy   h(s) = -sum_a P(a | s) log2 P(a | s),   P(a | s) = f(s a) / f(s)
    conditional entropy H(n) = sum_{|s| = n} f(s) h(s) / sum_{|s| = n} f(s)

As in the reference code, f(s) also counts occurrences of s at the end of a message, so P(. | s)
sums to less than 1 when s can end a message, and a string never followed by a symbol has h = 0.

Boundaries (the paper's Algorithm 1, from Tanaka-Ishii 2005): in a message x_0 .. x_{n-1},
for every start i and every width w >= 2 with i + w <= n - 1, if
h(x_i .. x_{i+w-1}) - h(x_i .. x_{i+w-2}) > threshold, a boundary lies before x_{i+w}
(position i + w). The boundaries cut the message into "hypo-segments". ``threshold`` is the
paper's only parameter; the paper reports results for each of 0, 0.25, ..., 2 rather than one
value. The default here is 0, the scheme itself (a boundary wherever the branching entropy
rises, the paper's Eq. 3) and the reference code's default; emlangkit's ``Language`` uses 0.8.
An entropy rise within 1e-9 bits of the threshold counts as no rise, so mathematically equal
entropies never make a boundary through floating-point noise.

Named conventions (``HAS_CONVENTIONS``) say which (i, w) are tested:

- ``"ueda"`` (default): Algorithm 1 as printed in the paper: boundaries lie strictly inside
  the message, at positions 2 .. n-1.
- ``"emlangkit"``: the reference code's loop, which emlangkit's ``compute_boundaries``,
  ``compute_segments`` and ``Language(has_threshold=0.8)`` reproduce. It also tests the last
  two starts, so it can put a boundary at n (the end of the message) and at n + 1 (past it,
  comparing the last symbol with the empty string), which adds an empty segment. Its default
  threshold is emlangkit's 0.8.

Messages: with ``eos`` set, each message is cut at its first EOS and the EOS itself is dropped:
the scheme segments what was said, and the EOS is the end of the string, not a symbol of it
(Ueda et al.'s messages have no EOS: fixed length 32 over symbols 1..8). Without ``eos``
every position is a symbol, as in emlangkit.

Substrings of one width are counted at once with ``np.unique`` over sliding windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._inputs import Messages, as_messages

__all__ = [
    "HAS_CONVENTIONS",
    "HasSegmentation",
    "branching_entropies",
    "conditional_entropies",
    "content_lengths",
    "has_segmentation",
]

HAS_CONVENTIONS = MappingProxyType({
    "ueda": "Algorithm 1 of Ueda et al. 2023 as printed: widths w >= 2 with i + w <= n - 1, so boundaries "
            "lie strictly inside the message. Default threshold 0 (the scheme itself; the reference "
            "code's default).",
    "emlangkit": "The reference code's loop (= emlangkit's compute_boundaries): also tests the last two "
                 "starts, so boundaries can fall at n and n + 1. Default threshold 0.8 (emlangkit's "
                 "Language).",
})
DEFAULT_THRESHOLDS = MappingProxyType({"ueda": 0.0, "emlangkit": 0.8})
_TIE = 1e-9  # bits: entropy rises this small are floating-point noise, not rises


def content_lengths(msgs: Messages, eos: int | None) -> np.ndarray:
    """Length of each message without its EOS (``as_messages`` keeps the EOS in the length)."""
    if eos is None:
        return msgs.lengths
    last = msgs.symbols[np.arange(msgs.n), np.maximum(msgs.lengths - 1, 0)]
    return msgs.lengths - ((last == eos) & (msgs.lengths > 0))


@dataclass(frozen=True)
class _Windows:
    """Every substring occurrence of one width: ids[m, i] = id of x_i .. x_{i+w-1} in message m."""

    ids: np.ndarray  # (N, L - w + 1) int, -1 where the window runs past the message
    counts: np.ndarray  # f(s) per id
    strings: np.ndarray  # (n_ids, w) the strings


@dataclass(frozen=True)
class _Table:
    symbols: np.ndarray  # (N, L) content symbols
    lengths: np.ndarray  # (N,) content lengths
    windows: list  # windows[w] for w = 1 .. L (index 0 unused)
    entropy: list  # entropy[w][id] = h of that width-w string; entropy[0] = h(empty string)


def _window_ids(symbols: np.ndarray, lengths: np.ndarray, width: int) -> _Windows:
    n, length = symbols.shape
    starts = length - width + 1
    valid = np.arange(starts)[None, :] + width <= lengths[:, None]
    ids = np.full((n, starts), -1, dtype=np.int64)
    if not valid.any():
        return _Windows(ids, np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.int64))
    strings, inverse, counts = np.unique(sliding_window_view(symbols, width, axis=1)[valid], axis=0,
                                         return_inverse=True, return_counts=True)
    ids[valid] = inverse.ravel()
    return _Windows(ids, counts, strings)


def _entropy_from_successors(context: np.ndarray, successor: np.ndarray, context_counts: np.ndarray) -> np.ndarray:
    """h per context id from every (context id, next symbol) occurrence, summed over symbols in
    increasing order as the reference code does: -sum_a f(sa) (log2 f(sa) - log2 f(s)) / f(s)."""
    pairs, pair_counts = np.unique(np.stack([context, successor], axis=1), axis=0, return_counts=True)
    owner = pairs[:, 0]
    terms = pair_counts * (np.log2(pair_counts) - np.log2(context_counts[owner].astype(np.float64)))
    totals = np.bincount(owner, weights=terms, minlength=context_counts.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(context_counts > 0, -1 * totals / np.maximum(context_counts, 1), 0.0)


def _table(messages: Any, eos: int | None) -> _Table:
    msgs = as_messages(messages, eos=eos)
    lengths = content_lengths(msgs, eos)
    inside = np.arange(msgs.symbols.shape[1])[None, :] < lengths[:, None]
    symbols = np.where(inside, msgs.symbols, -1)  # -1 never matches a symbol
    total = int(lengths.sum())
    if total == 0:  # every message is empty once its EOS is dropped: nothing to segment
        return _Table(symbols, lengths, [None], [np.array([np.nan])])
    width_max = int(lengths.max())
    windows = [None] + [_window_ids(symbols, lengths, w) for w in range(1, width_max + 1)]
    # h(empty string): its successors are the unigrams, f(empty) = number of symbols; summed in
    # increasing symbol order (cumsum is sequential, as the reference code's sum).
    terms = windows[1].counts * (np.log2(windows[1].counts) - np.log2(float(total)))
    entropy = [np.array([-1 * np.cumsum(terms)[-1] / total])]
    for w in range(1, width_max + 1):
        here, longer = windows[w], (windows[w + 1] if w < width_max else None)
        if longer is None:
            entropy.append(np.zeros(here.counts.size))
            continue
        follows = longer.ids >= 0  # a width-(w+1) window at (m, i) is the width-w one at (m, i) plus x_{i+w}
        context = here.ids[:, : longer.ids.shape[1]][follows]
        successor = symbols[:, w:][:, : longer.ids.shape[1]][follows]
        entropy.append(_entropy_from_successors(context, successor, here.counts))
    return _Table(symbols, lengths, windows, entropy)


def _check(convention: Any, threshold: Any) -> float:
    if not isinstance(convention, str) or convention not in HAS_CONVENTIONS:
        raise ValueError(f"convention must be one of {list(HAS_CONVENTIONS)}, got {convention!r}")
    if threshold is None:
        return DEFAULT_THRESHOLDS[convention]
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number of bits (e.g. 0 to 2), got {threshold!r}")
    return float(threshold)


def branching_entropies(messages: Any, *, eos: int | None = None) -> dict[tuple[int, ...], float]:
    """h(s) in bits for the empty string and every substring s of the messages (module docstring).

    Equals emlangkit's ``compute_branching_entropy(*has_init(messages))`` on messages without EOS.
    """
    table = _table(messages, eos)
    result = {(): float(table.entropy[0][0])}
    for w in range(1, len(table.windows)):
        for string, h in zip(table.windows[w].strings, table.entropy[w]):
            result[tuple(int(x) for x in string)] = float(h)
    return result


def conditional_entropies(messages: Any, *, eos: int | None = None) -> np.ndarray:
    """H(n) in bits for n = 0 .. longest message: the f-weighted mean of h over strings of length n.

    The paper's Eq. 2 (its Q1: H(n) should fall as n grows). Strings never followed by a symbol
    have h = 0 and count in the mean, as in emlangkit's ``compute_conditional_entropy``.
    """
    table = _table(messages, eos)
    values = [float(table.entropy[0][0])]
    for w in range(1, len(table.windows)):
        counts = table.windows[w].counts
        values.append(float(counts @ table.entropy[w] / counts.sum()))
    return np.array(values)


@dataclass(frozen=True)
class HasSegmentation:
    """Boundaries and hypo-segments of every message, and the statistics Ueda et al. report."""

    convention: str
    threshold: float
    boundaries: list  # per message, the sorted boundary positions (a tuple of ints)
    segments: list  # per message, a tuple of segments, each a tuple of symbols

    @property
    def boundaries_per_message(self) -> float:
        """Mean number of boundaries per message (the paper's Figure 5 and Table 1)."""
        return float(np.mean([len(b) for b in self.boundaries]))

    @property
    def mean_segment_length(self) -> float:
        """Mean length in symbols over all segments of all messages (nan when there are none)."""
        lengths = [len(s) for message in self.segments for s in message]
        return float(np.mean(lengths)) if lengths else float("nan")

    @property
    def vocabulary_size(self) -> int:
        """Number of distinct segments (the paper's "vocabulary size")."""
        return len({s for message in self.segments for s in message})


def _rises(table: _Table, threshold: float) -> np.ndarray:
    """rise[m, p] = True when a tested (start, width) of message m puts a boundary at position p."""
    n, length = table.symbols.shape
    rise = np.zeros((n, length + 2), dtype=bool)
    for w in range(2, len(table.windows)):
        ids, shorter = table.windows[w].ids, table.windows[w - 1].ids[:, : table.windows[w].ids.shape[1]]
        valid = ids >= 0
        diff = np.where(valid, table.entropy[w][np.maximum(ids, 0)] - table.entropy[w - 1][np.maximum(shorter, 0)], 0.0)
        position = np.arange(ids.shape[1])[None, :] + w
        tested = valid & (position <= table.lengths[:, None] - 1)
        hit = tested & (diff > threshold + _TIE)
        rows, cols = np.nonzero(hit)
        rise[rows, cols + w] = True
    return rise


def _emlangkit_tail(table: _Table, threshold: float, rise: np.ndarray) -> None:
    """The reference loop's last two starts: (n-2, width 2) -> position n, (n-1, 1 symbol vs
    the empty string) -> position n + 1."""
    n_msgs = table.symbols.shape[0]
    lengths = table.lengths
    rows = np.arange(n_msgs)
    two = lengths >= 2
    if two.any() and len(table.windows) > 2:
        start = lengths[two] - 2
        ids2 = table.windows[2].ids[rows[two], start]
        ids1 = table.windows[1].ids[rows[two], start]
        diff = table.entropy[2][ids2] - table.entropy[1][ids1]
        rise[rows[two][diff > threshold + _TIE], lengths[two][diff > threshold + _TIE]] = True
    one = lengths >= 1
    if not one.any():
        return
    ids1 = table.windows[1].ids[rows[one], lengths[one] - 1]
    diff = table.entropy[1][ids1] - table.entropy[0][0]
    hit = diff > threshold + _TIE
    rise[rows[one][hit], lengths[one][hit] + 1] = True


def has_segmentation(messages: Any, *, threshold: float | None = None, convention: str = "ueda",
                     eos: int | None = None) -> HasSegmentation:
    """Segment every message at its HAS boundaries (Ueda et al. 2023; see the module docstring).

    Args:
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences (ragged allowed).
        threshold: bits the branching entropy must rise by to make a boundary; None: the
            convention's default (``"ueda"``: 0, ``"emlangkit"``: 0.8).
        convention: ``"ueda"`` (the paper's Algorithm 1) or ``"emlangkit"`` (the reference code,
            = emlangkit's ``compute_boundaries`` / ``compute_segments``), see ``HAS_CONVENTIONS``.
        eos: cut each message at its first ``eos`` symbol and drop the EOS, so only what was
            said is segmented; None: every position is a symbol.

    Returns:
        A ``HasSegmentation``: per-message boundaries and segments, ``boundaries_per_message``,
        ``mean_segment_length`` and ``vocabulary_size``. A message that is empty once its EOS is
        dropped has no boundary and (``"ueda"``) no segment; under ``"emlangkit"`` it has one empty
        segment, as emlangkit's ``compute_segments`` gives.
    """
    threshold = _check(convention, threshold)
    table = _table(messages, eos)
    rise = _rises(table, threshold)
    if convention == "emlangkit":
        _emlangkit_tail(table, threshold, rise)
    boundaries, segments = [], []
    for row, n in zip(range(table.symbols.shape[0]), table.lengths.tolist()):
        cuts = tuple(int(p) for p in np.flatnonzero(rise[row]))
        boundaries.append(cuts)
        symbols = tuple(int(x) for x in table.symbols[row, :n])
        if n == 0 and convention == "ueda":
            segments.append(())
            continue
        edges = [0] + sorted(set(cuts) | {n})
        segments.append(tuple(symbols[a:b] for a, b in zip(edges[:-1], edges[1:])))
    return HasSegmentation(convention, threshold, boundaries, segments)
