"""The language-side forgetting experiment: a speaker imitates a language that is half
compositional, half permuted; forgetting applied to copies shows which half it removes first
(Zhou et al. 2022, ease_of_teaching/mixed_language_forget*.py). `python -m games.language_forgetting`
runs it; docs/RESULTS.md, section 7, holds the results."""

from .config import LanguageForgettingConfig
from .experiment import LanguageForgettingRun, keyed_generator
from .languages import CODES, MixedLanguage, compositional_messages, derangement, mixed_language
from .readout import exact_match, imitation_loss, per_object, speak_with_logits

__all__ = [
    "CODES",
    "LanguageForgettingConfig",
    "LanguageForgettingRun",
    "MixedLanguage",
    "compositional_messages",
    "derangement",
    "exact_match",
    "imitation_loss",
    "keyed_generator",
    "mixed_language",
    "per_object",
    "speak_with_logits",
]
