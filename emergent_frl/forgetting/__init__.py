"""Forgetting operators for any ``nn.Module`` (the project's central abstraction).

An operator answers three questions, each a small swappable piece:

* which parameters: :class:`ParameterSelection` (named modules, "from layer L on", complement),
* which entries: :class:`MaskCriterion` (all, Bernoulli, magnitude, KE's KELS/WELS; once or each time),
* what they become: :class:`ResetValue` (fresh draw from the module's own initializer, zero, rewind),

plus the policy around the weights (optimizer state, normalization statistics, IMP's rewinding of
survivors and holding pruned weights at zero). The factories build the paper's named operators::

    op = later_layer_forgetting("layer4")      # ResNet18: layer4 convs + fc.weight re-drawn
    op.prepare(model)                           # at init, before training
    ...train...
    report = op.apply(model, generator=g)       # between generations
"""
from .masks import MaskCriterion
from .operator import ForgetReport, ForgettingOperator
from .presets import full_reset, knowledge_evolution, later_layer_forgetting, magnitude_pruning, partial_forgetting
from .reinit import ResetValue, reset_module
from .selection import ParameterSelection

__all__ = [
    "ForgettingOperator",
    "ParameterSelection",
    "MaskCriterion",
    "ResetValue",
    "ForgetReport",
    "full_reset",
    "partial_forgetting",
    "later_layer_forgetting",
    "knowledge_evolution",
    "magnitude_pruning",
    "reset_module",
]
