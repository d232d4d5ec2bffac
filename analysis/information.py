"""Mutual information between objects and whole messages, and the two conditional entropies.

A language is a sample of (object, message) pairs, one per row. Objects are whole rows of
attribute values (or feature vectors), messages whole symbol strings; every quantity is the
plug-in estimate from the empirical joint distribution, in bits:

    H(M) = -sum_m p(m) log2 p(m)         H(O) likewise      H(M, O) on (object, message) pairs
    I(M; O) = H(M) + H(O) - H(M, O)      H(M | O) = H(M, O) - H(O)      H(O | M) = H(M, O) - H(M)

H(M | O) is the speaker's synonymy (0 for a deterministic speaker), H(O | M) its homonymy (0
when no two objects share a message). This is EGG's ``egg.core.language_analysis.mutual_info``
and emlangkit's ``compute_mutual_information``; Kharitonov et al. 2020 ("Entropy minimization in
emergent languages", ICML) use these quantities. With every object once and a deterministic
speaker, I(M; O) = H(M) and H(O | M) = log2 N - H(M).

What counts as "the same message" is the one choice papers differ on, named in
``INFORMATION_CONVENTIONS``:

- ``"egg"``: messages as given, every position (EOS, padding and post-EOS symbols) included:
  what EGG's ``mutual_info`` and emlangkit's ``compute_mutual_information`` compute.
- ``"egg_eos"``: each message cut after its first EOS (symbol 0), the EOS kept, as
  ``analysis._inputs.as_messages`` and EGG's ``find_lengths`` do, so post-EOS symbols do not
  split one message into several. The two agree whenever everything after the first EOS is
  padding with one symbol (this project's senders pad with 0).

numpy only: rows are compared with ``np.unique``, never in Python loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from ._disentanglement import _entropy_of_codes
from ._inputs import as_meanings, as_messages, check_same_count

__all__ = [
    "INFORMATION_CONVENTIONS",
    "InformationScores",
    "entropy_messages_given_objects",
    "entropy_objects_given_messages",
    "information_scores",
    "mutual_information",
]

INFORMATION_CONVENTIONS = MappingProxyType({
    "egg": "Messages as given, padding and post-EOS symbols included (EGG's mutual_info, emlangkit's "
           "compute_mutual_information).",
    "egg_eos": "Messages cut after their first EOS (symbol 0, kept), as EGG's find_lengths; post-EOS "
               "symbols are ignored.",
})
_CONVENTION_EOS = {"egg": None, "egg_eos": 0}


@dataclass(frozen=True)
class InformationScores:
    """Plug-in entropies (bits) of one language; see the module docstring for the definitions."""

    message_entropy: float  # H(M)
    object_entropy: float  # H(O)
    joint_entropy: float  # H(M, O)

    @property
    def mutual_information(self) -> float:
        return max(0.0, self.message_entropy + self.object_entropy - self.joint_entropy)

    @property
    def messages_given_objects(self) -> float:  # H(M | O): synonymy
        return max(0.0, self.joint_entropy - self.object_entropy)

    @property
    def objects_given_messages(self) -> float:  # H(O | M): homonymy
        return max(0.0, self.joint_entropy - self.message_entropy)


def _resolve_eos(convention: str | None, eos: Any) -> int | None:
    if convention is not None and (not isinstance(convention, str) or convention not in INFORMATION_CONVENTIONS):
        raise ValueError(f"convention must be None or one of {list(INFORMATION_CONVENTIONS)}, got {convention!r}")
    if convention is None:
        return eos
    preset = _CONVENTION_EOS[convention]
    if eos is None:
        return preset
    if eos != preset:
        cut = "uses messages as given" if preset is None else f"cuts messages after eos={preset!r}"
        raise ValueError(f"eos={eos!r} conflicts with convention={convention!r}, which {cut}")
    return eos


def _row_codes(array: np.ndarray) -> np.ndarray:
    return np.unique(array, axis=0, return_inverse=True)[1].ravel()


def information_scores(objects: Any, messages: Any, *, convention: str | None = None,
                       eos: int | None = None) -> InformationScores:
    """H(M), H(O) and H(M, O) of the (object, message) rows, in bits.

    Args:
        objects: (N, n_attributes) integer attribute values or (N, D) float vectors; each whole
            row is one object (so one-hot and attribute encodings of the same objects agree).
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences (ragged allowed).
        convention: ``"egg"`` (messages as given) or ``"egg_eos"`` (cut after the first EOS 0);
            None: messages as given unless ``eos`` is set.
        eos: cut each message after its first ``eos`` symbol (kept; ``as_messages``). With a
            convention it must match it (``"egg"``: None, ``"egg_eos"``: 0).
    """
    eos = _resolve_eos(convention, eos)
    object_array = as_meanings(objects, "objects")
    msgs = as_messages(messages, eos=eos)
    check_same_count(object_array.shape[0], msgs.n, "objects", "messages")
    # The length column keeps a message apart from a shorter one padded with the same symbols.
    message_codes = _row_codes(np.concatenate([msgs.lengths[:, None], msgs.symbols], axis=1))
    object_codes = _row_codes(object_array)
    joint_codes = object_codes * (int(message_codes.max()) + 1) + message_codes
    return InformationScores(
        message_entropy=_entropy_of_codes(message_codes),
        object_entropy=_entropy_of_codes(object_codes),
        joint_entropy=_entropy_of_codes(np.unique(joint_codes, return_inverse=True)[1].ravel()),
    )


def mutual_information(objects: Any, messages: Any, *, convention: str | None = None,
                       eos: int | None = None) -> float:
    """I(M; O) = H(M) + H(O) - H(M, O) in bits, over whole objects and whole messages.

    Plug-in estimate (Kharitonov et al. 2020; EGG's ``mutual_info``; emlangkit's
    ``compute_mutual_information``). ``convention``/``eos`` as in ``information_scores``:
    ``"egg"`` scores messages as given, ``"egg_eos"`` cuts them after the first EOS (0).
    """
    return information_scores(objects, messages, convention=convention, eos=eos).mutual_information


def entropy_messages_given_objects(objects: Any, messages: Any, *, convention: str | None = None,
                                   eos: int | None = None) -> float:
    """H(M | O) = H(M, O) - H(O) in bits: how many messages the speaker uses per object (synonymy).

    0 for a deterministic speaker scored once per object. Arguments as ``information_scores``.
    """
    return information_scores(objects, messages, convention=convention, eos=eos).messages_given_objects


def entropy_objects_given_messages(objects: Any, messages: Any, *, convention: str | None = None,
                                   eos: int | None = None) -> float:
    """H(O | M) = H(M, O) - H(M) in bits: how many objects share a message (homonymy).

    0 when every object has its own message. Arguments as ``information_scores``.
    """
    return information_scores(objects, messages, convention=convention, eos=eos).objects_given_messages
