"""Compositionality metrics, run loading, reports and plots. Needs numpy/scipy/matplotlib only, never torch.

The metric functions are exported here lazily (PEP 562), so ``import analysis`` stays as cheap as
before and each command still imports only what it uses; docs/metrics.md lists them all. Two are
not, because a submodule has their name (and would shadow them once imported): import
``context_independence`` from ``analysis.context_independence`` and the one-call entry point
``language_metrics`` from ``analysis.language_metrics``.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "topographic_similarity": "compositionality",
    "posdis": "compositionality",
    "bosdis": "compositionality",
    "message_entropy": "compositionality",
    "mutual_information": "information",
    "entropy_messages_given_objects": "information",
    "entropy_objects_given_messages": "information",
    "information_scores": "information",
    "has_segmentation": "segments",
    "branching_entropies": "segments",
    "conditional_entropies": "segments",
    "zla_correlation": "abbreviation",
    "score_language": "language_metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
