"""Settings of one language-forgetting run, each declared once as a knob (emergent_frl.knobs):
validation and the script's flags (`--x-y` for field `x_y`) are read from the declaration.

Defaults: the paper's README runs (ease_of_teaching/mixed_language_forget_samebatch.py): 8 colors x
4 shapes, vocabulary 8, two symbols, half the objects compositional; an LSTM speaker of 100 units
trained by Adam at 1e-3 on the whole batch of 32 objects with its own greedy symbols fed back;
at every measurement a copy re-initialized with keep 0.5 (a new Bernoulli mask each time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emergent_frl.agents import CELLS
from emergent_frl.forgetting import ForgettingOperator, MaskCriterion, ParameterSelection, ResetValue
from emergent_frl.knobs import ConfigError, check_knobs, knob
from emergent_frl.training import MAX_SEED, SpaceSettings

from .languages import CODES, MixedLanguage, check_code, mixed_language
from .readout import FEEDBACKS

LANGUAGE = "language"
TRAINING = "speaker and training"
FORGETTING = "measurement and forgetting"
BATCHES = ("all", "sample")
MASKS = ("bernoulli", "magnitude")
TIMINGS = ("each", "once_init", "once_trained")
RESETS = ("reinit", "zero", "rewind")
MAX_OBJECTS = 4096  # the permutation is an assignment problem, cubic in the permuted objects


@dataclass
class LanguageForgettingConfig(SpaceSettings):
    """Every knob of one run: the target language, the speaker and its training, what is forgotten."""

    n_attributes: int = knob(2, minimum=1, maximum=64, flag_group=LANGUAGE, help="attributes per object")
    n_values: int | list[int] = knob([8, 4], many=True, minimum=1, flag_group=LANGUAGE,
                                     checked_by="the object space rule",
                                     help="values per attribute: one count for all, or one per attribute")
    vocab_size: int = knob(8, minimum=2, flag_group=LANGUAGE, help="symbols in the vocabulary")
    max_len: int = knob(2, minimum=1, flag_group=LANGUAGE, help="symbols per message")
    code: str = knob("direct", kind=str, choices=CODES, flag_group=LANGUAGE,
                     help="compositional code: direct = one symbol per attribute (needs max_len == "
                          "n_attributes and vocab_size >= max(n_values)); mixed_radix = each attribute in "
                          "base-vocab digits, padded with 0 (default direct)")
    compositional_fraction: float = knob(0.5, kind=float, minimum=0.0, maximum=1.0, flag_group=LANGUAGE,
                                         help="share of objects with their compositional message; the others "
                                              "get a permutation of theirs")
    language_seed: int | None = knob(None, minimum=0, maximum=MAX_SEED, optional=True, flag_group=LANGUAGE,
                                     help="seed of which objects are permuted and how (default none: the run's seed)")
    hidden_size: int = knob(100, minimum=1, flag_group=TRAINING, help="speaker RNN hidden size")
    cell: str = knob("lstm", kind=str, choices=sorted(CELLS), flag_group=TRAINING, help="speaker RNN cell")
    lr: float = knob(1e-3, kind=float, greater_than=0, flag_group=TRAINING, help="Adam learning rate")
    feedback: str = knob("greedy", kind=str, choices=FEEDBACKS, flag_group=TRAINING,
                         help="symbol fed back while training: greedy = the speaker's own argmax (the paper), "
                              "teacher = the target's (default greedy)")
    batch: str = knob("all", kind=str, choices=BATCHES, flag_group=TRAINING,
                      help="all = every object once per iteration; sample = --batch-size objects drawn with "
                           "repetition (default all)")
    batch_size: int = knob(100, minimum=1, flag_group=TRAINING, help="objects per batch with --batch sample")
    iterations: int = knob(1000, minimum=1, flag_group=TRAINING, help="training iterations")
    seed: int = knob(0, minimum=0, maximum=MAX_SEED, flag_group=TRAINING,
                     help="seed of the speaker's weights, its batches and the forgetting draws")
    measure_every: int = knob(20, minimum=1, flag_group=FORGETTING,
                              help="iterations between measurements (must divide --iterations)")
    draws: int = knob(10, minimum=1, maximum=1000, flag_group=FORGETTING,
                      help="forgotten copies averaged per measurement")
    keep_fraction: float = knob(0.5, kind=float, minimum=0.0, maximum=1.0, flag_group=FORGETTING,
                                help="share of each parameter tensor kept")
    forget_mask: str = knob("bernoulli", kind=str, choices=MASKS, flag_group=FORGETTING,
                            help="bernoulli = random entries; magnitude = the smallest |w| are forgotten "
                                 "(default bernoulli)")
    mask_timing: str = knob("each", kind=str, choices=TIMINGS, flag_group=FORGETTING,
                            help="each = a new mask per forgetting; once_init = one mask from the initial "
                                 "weights (the paper's --same_mask); once_trained = fixed at the first "
                                 "measurement (default each)")
    reset: str = knob("reinit", kind=str, choices=RESETS, flag_group=FORGETTING,
                      help="what forgotten entries become: a fresh draw, zero, or their initial value "
                           "(default reinit)")
    relearn_every: int = knob(0, minimum=0, flag_group=FORGETTING,
                              help="forget-and-relearn: every N iterations the speaker itself becomes a "
                                   "forgotten copy (a multiple of --measure-every; default 0: never)")

    def language(self) -> MixedLanguage:
        """The target language, drawn from `language_seed` (else `seed`)."""
        seed = self.seed if self.language_seed is None else self.language_seed
        generator = torch.Generator().manual_seed(seed)
        return mixed_language(self.space(), self.vocab_size, self.max_len, self.compositional_fraction,
                              generator, self.code)

    def operator(self) -> ForgettingOperator:
        """The forgetting operator over every speaker parameter (biases and LSTM gates included,
        as the reference code does)."""
        return ForgettingOperator(ParameterSelection(), MaskCriterion(self.forget_mask, self.keep_fraction,
                                                                      timing=self.mask_timing),
                                  ResetValue(self.reset), seed=self.seed)

    def validate(self) -> "LanguageForgettingConfig":
        """ConfigError (a ValueError) naming the first bad field: each against its knob, then the
        rules tying fields together; the target language is built once to prove it exists."""
        check_knobs(self)
        try:
            space = self.space()
        except (ValueError, TypeError):
            raise ConfigError("n_values", self.n_values,
                              f"must be an integer >= 1 or a list of {self.n_attributes} integers >= 1") from None
        if not 2 <= space.n_objects <= MAX_OBJECTS:
            raise ConfigError("n_values", self.n_values,
                              f"the space holds {space.n_objects} objects; between 2 and {MAX_OBJECTS} are allowed")
        try:
            check_code(space, self.vocab_size, self.max_len, self.code)
        except ValueError as error:
            raise ConfigError("code", self.code, str(error)) from None
        if self.iterations % self.measure_every:
            raise ConfigError("measure_every", self.measure_every,
                              f"must divide --iterations ({self.iterations})")
        if self.relearn_every % self.measure_every:
            raise ConfigError("relearn_every", self.relearn_every,
                              f"must be 0 or a multiple of --measure-every ({self.measure_every})")
        try:
            self.language()
        except ValueError as error:
            raise ConfigError("compositional_fraction", self.compositional_fraction, str(error)) from None
        return self
