"""The field's wider metric set on one language, in one call: ``language_metrics``.

Topsim, posdis and bosdis (``analysis.compositionality``) are what the training records hold;
this adds the quantities other papers report, so a study can record them per generation and
rescore a run's language.json with them (``python -m analysis.language_scores --metric NAME``):

    mutual_information               I(M; O), bits                     (analysis.information)
    entropy_messages_given_objects   H(M | O), synonymy, bits          (analysis.information)
    entropy_objects_given_messages   H(O | M), homonymy, bits          (analysis.information)
    context_independence             Bogin et al. 2018                 (analysis.context_independence)
    has_boundaries_per_message       Ueda et al. 2023 HAS boundaries   (analysis.segments)
    has_mean_segment_length          mean length of HAS segments       (analysis.segments)
    has_vocabulary_size              distinct HAS segments             (analysis.segments)
    zla                              Kendall tau(frequency, length)    (analysis.abbreviation)
    mean_message_length              mean length, EOS counted          (analysis._inputs)

``DEFAULT_CONVENTIONS`` names the convention each is computed under unless told otherwise;
``METRIC_CONVENTIONS`` lists the others. numpy/scipy only.
"""
from __future__ import annotations

import warnings
from types import MappingProxyType
from typing import Any, Callable

import numpy as np

from ._inputs import as_attributes, as_messages, check_same_count
from .abbreviation import ZLA_CORRELATIONS, zla_correlation
from .context_independence import CI_CONVENTIONS, context_independence
from .information import INFORMATION_CONVENTIONS, information_scores
from .segments import HAS_CONVENTIONS, has_segmentation
from .segments import _check as check_threshold

__all__ = ["DEFAULT_CONVENTIONS", "METRIC_CONVENTIONS", "WIDER_METRICS", "language_metrics", "score_language"]

_INFORMATION = ("mutual_information", "entropy_messages_given_objects", "entropy_objects_given_messages")
_HAS = ("has_boundaries_per_message", "has_mean_segment_length", "has_vocabulary_size")
WIDER_METRICS = _INFORMATION + ("context_independence",) + _HAS + ("zla", "mean_message_length")

# Conventions each metric can be scored under (empty: a single definition).
METRIC_CONVENTIONS = MappingProxyType({
    **{name: tuple(INFORMATION_CONVENTIONS) for name in _INFORMATION},
    "context_independence": tuple(CI_CONVENTIONS),
    **{name: tuple(HAS_CONVENTIONS) for name in _HAS},
    "zla": tuple(ZLA_CORRELATIONS),
    "mean_message_length": (),
})
# What ``language_metrics`` uses. The information metrics follow ``eos``: "egg" (messages as
# given) without it, "egg_eos" (cut after the first EOS) with eos=0.
DEFAULT_CONVENTIONS = MappingProxyType({
    **{name: "egg, or egg_eos with eos=0" for name in _INFORMATION},
    "context_independence": "bogin",
    **{name: "ueda" for name in _HAS},
    "zla": "kendall",
    "mean_message_length": None,
})


def _check_eos(eos: Any) -> None:
    if eos is not None and (isinstance(eos, bool) or not isinstance(eos, (int, np.integer)) or eos < 0):
        raise ValueError(f"eos must be None or a non-negative int symbol, got {eos!r}")


def _check_language(objects: Any, messages: Any, vocab_size: Any, eos: int | None) -> None:
    """Every input problem as a ValueError naming the argument, before any metric runs."""
    _check_eos(eos)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive int (symbols 0..vocab_size-1), got {vocab_size!r}")
    attrs = as_attributes(objects, "objects")
    msgs = as_messages(messages, eos=eos)
    check_same_count(attrs.shape[0], msgs.n, "objects", "messages")
    inside = np.arange(msgs.symbols.shape[1])[None, :] < msgs.lengths[:, None]
    if inside.any() and int(msgs.symbols[inside].max()) >= vocab_size:
        raise ValueError(f"messages hold symbol {int(msgs.symbols[inside].max())}, outside "
                         f"vocab_size={vocab_size} (symbols 0..{vocab_size - 1})")


def _check_convention(metric: str, convention: Any) -> None:
    allowed = METRIC_CONVENTIONS[metric]
    if convention is not None and convention not in allowed:
        detail = f"one of {list(allowed)}" if allowed else "None (it has a single definition)"
        raise ValueError(f"convention {convention!r} does not apply to {metric}: use {detail}")


def _information_eos(convention: str | None, eos: int | None) -> dict[str, Any]:
    return {"eos": eos} if convention is None else {"convention": convention}


def score_language(objects: Any, messages: Any, vocab_size: int, metric: str, *, eos: int | None = None,
                   convention: str | None = None, threshold: float | None = None) -> float:
    """One metric of ``WIDER_METRICS`` on one language, under ``convention`` (None: the default).

    ``eos`` says how the language ends its messages (None: fixed length), as in
    ``language_metrics``. For the information metrics a convention replaces ``eos``: ``"egg"``
    scores messages as given, ``"egg_eos"`` cuts them after the first 0. ``threshold`` (bits) is
    the HAS threshold (None: the convention's default). Undefined values are nan, silently.
    """
    if metric not in METRIC_CONVENTIONS:
        raise ValueError(f"metric must be one of {list(WIDER_METRICS)}, got {metric!r}")
    _check_convention(metric, convention)
    if threshold is not None and metric not in _HAS:
        raise ValueError(f"threshold applies to the HAS metrics {list(_HAS)} only, not {metric}")
    _check_language(objects, messages, vocab_size, eos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(_SCORERS[metric](objects, messages, vocab_size, eos, convention, threshold))


def _information(key: str) -> Callable[..., float]:
    def score(objects, messages, vocab_size, eos, convention, threshold) -> float:
        scores = information_scores(objects, messages, **_information_eos(convention, eos))
        return {"mutual_information": scores.mutual_information,
                "entropy_messages_given_objects": scores.messages_given_objects,
                "entropy_objects_given_messages": scores.objects_given_messages}[key]
    return score


def _has(key: str) -> Callable[..., float]:
    def score(objects, messages, vocab_size, eos, convention, threshold) -> float:
        segmentation = has_segmentation(messages, threshold=threshold, convention=convention or "ueda", eos=eos)
        return getattr(segmentation, key[len("has_"):])
    return score


_SCORERS: dict[str, Callable[..., float]] = {
    **{name: _information(name) for name in _INFORMATION},
    "context_independence": lambda o, m, v, eos, c, t: context_independence(o, m, v, convention=c or "bogin", eos=eos),
    **{name: _has(name) for name in _HAS},
    "zla": lambda o, m, v, eos, c, t: zla_correlation(m, eos=eos, correlation=c or "kendall"),
    "mean_message_length": lambda o, m, v, eos, c, t: float(as_messages(m, eos=eos).lengths.mean()),
}


def language_metrics(
    objects: Any,
    messages: Any,
    vocab_size: int,
    *,
    eos: int | None = None,
    ci_convention: str = "bogin",
    has_convention: str = "ueda",
    has_threshold: float | None = None,
    zla_method: str = "kendall",
) -> dict[str, float]:
    """Every metric of ``WIDER_METRICS`` on one language, as ``{name: float}`` (nan = undefined).

    Args:
        objects: (N, n_attributes) integer attribute values, one row per object.
        messages: (N, L) integer symbols, or a list of N 1-D integer sequences, as the sender
            emitted them.
        vocab_size: number of symbols (0..vocab_size-1); a larger symbol raises ValueError.
        eos: None for fixed-length messages (every position is a symbol); the EOS symbol (0 in
            this project) for messages that end at their first EOS. It decides what every metric
            reads: the information metrics cut messages after the EOS (convention ``"egg_eos"``
            when eos=0, ``"egg"`` without), context independence and HAS use the symbols before
            it, ZLA and the mean length count it (EGG's ``find_lengths``).
        ci_convention: ``"bogin"`` or ``"korbak"`` (``analysis.context_independence``).
        has_convention, has_threshold: ``"ueda"`` / ``"emlangkit"`` and the threshold in bits
            (None: 0 for ueda, 0.8 for emlangkit) (``analysis.segments``).
        zla_method: ``"kendall"`` or ``"spearman"`` (``analysis.abbreviation``).

    Undefined metrics (ZLA on fixed-length messages, CI when no message holds a symbol) are nan,
    without a warning, so the call is safe to make every generation. Bad arguments raise a
    ValueError naming the argument before any metric is computed.
    """
    _check_convention("context_independence", ci_convention)
    _check_convention("has_boundaries_per_message", has_convention)
    _check_convention("zla", zla_method)
    check_threshold(has_convention, has_threshold)
    _check_language(objects, messages, vocab_size, eos)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        information = information_scores(objects, messages, eos=eos)
        segmentation = has_segmentation(messages, threshold=has_threshold, convention=has_convention, eos=eos)
        return {
            "mutual_information": information.mutual_information,
            "entropy_messages_given_objects": information.messages_given_objects,
            "entropy_objects_given_messages": information.objects_given_messages,
            "context_independence": context_independence(objects, messages, vocab_size,
                                                         convention=ci_convention, eos=eos),
            "has_boundaries_per_message": segmentation.boundaries_per_message,
            "has_mean_segment_length": segmentation.mean_segment_length,
            "has_vocabulary_size": float(segmentation.vocabulary_size),
            "zla": zla_correlation(messages, eos=eos, correlation=zla_method),
            "mean_message_length": float(as_messages(messages, eos=eos).lengths.mean()),
        }
