"""Training one generation of a language game, and greedy evaluation of the language.

The generational engine (relearn.py) calls these building blocks every generation:

    config = LanguageGameConfig(...)              # every knob, validated
    game = build_game(config)                     # space, split, sender, receiver on config.device
    optimizers = build_optimizers(game, config)   # {"sender": Adam, "receiver": Adam}
    generator = make_generator(config)            # the run's random stream, on the device
    train_iterations(game, optimizers, 6000, generator=generator, eval_every=1000, on_eval=print)
    metrics = evaluate(game)                      # greedy accuracy, topsim, posdis, ... + messages

`train_iterations` never changes the agents' train/eval modes and only steps the optimizers it is
given, so a caller can freeze an agent (eval mode = greedy, no optimizer) for one phase.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.compositionality import bosdis, message_entropy, posdis, topographic_similarity
from emergent_frl.devices import DeviceError, machine_device
from emergent_frl.agents import CELLS, CHANNELS, ReconstructionReceiver, ReferentialReceiver, Sender
from emergent_frl.games import LanguageGame, ReconstructionGame, ReferentialGame
from emergent_frl.objects import ObjectSpace

GAMES = ("referential", "reconstruction")
# The games enumerate every object for evaluation and topsim: a bound keeps a typo from
# allocating the impossible before a clean error can be given.
MAX_OBJECTS = 1_000_000
DEVICE_TYPES = ("cpu", "cuda")
HOLDOUTS = ("none", "random", "systematic")
# Seeds are numpy's range: every seed a researcher writes fits, and derived streams
# (seed * 1_000_003 + stream) stay inside torch's 64-bit seeds.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A config field with a value outside its allowed range; scripts map `field` to its flag."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name}={value!r}: {allowed}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, saying where it stopped: the last record and checkpoint on disk are
    from the generations before `generation`, so `--resume run_dir` continues from there."""

    def __init__(self, generation: int | None, iteration: int | None, run_dir: str | None = None):
        self.generation, self.iteration, self.run_dir = generation, iteration, run_dir
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"interrupted at generation {self.generation}, iteration {self.iteration}"
        return where + (f"; continue with --resume {self.run_dir}" if self.run_dir else "")


def check_device(name: Any, field_name: str = "device") -> torch.device:
    """A device of this machine the language games run on: the CPU or a CUDA GPU."""
    try:
        return machine_device(name, kinds=DEVICE_TYPES, auto=False)
    except DeviceError as error:
        raise ConfigError(field_name, name, error.reason) from None


def dataclass_from_dict(cls, values: dict[str, Any]):
    """`cls(**values)` for a config dataclass, with unknown keys named in a ValueError."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
    return cls(**values)


@dataclass
class LanguageGameConfig:
    """Every knob of one language game and its training. Defaults: the paper's setting
    (Li & Bowling 2019 / Zhou et al. 2022: 8 colors x 4 shapes, vocab 8, length 2, 5 candidates,
    LSTM 100, batch 100, Adam 1e-3 per agent, entropy 0.1 per agent, REINFORCE without baseline).
    """

    game: str = "referential"
    n_attributes: int = 2
    n_values: int | list[int] = field(default_factory=lambda: [8, 4])
    vocab_size: int = 8
    max_len: int = 2
    n_candidates: int = 5
    hidden_size: int = 100
    embed_size: int | None = None
    cell: str = "lstm"
    channel: str = "reinforce"
    temperature: float = 1.0
    straight_through: bool = True
    eos: bool = False
    learned_start: bool = False
    batch_size: int = 100
    lr_sender: float = 1e-3
    lr_receiver: float = 1e-3
    sender_entropy_coeff: float = 0.1
    receiver_entropy_coeff: float = 0.1
    baseline: bool = False
    easy_limit: int | None = None
    holdout: str = "none"
    holdout_fraction: float = 0.0
    seed: int = 0
    device: str = "cpu"
    eval_every: int = 1000
    eval_repeats: int = 10

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LanguageGameConfig":
        """Build from a plain dict (JSON/YAML); unknown keys are an error, missing keys default."""
        return dataclass_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(out["n_values"], tuple):
            out["n_values"] = list(out["n_values"])
        return out

    def space(self) -> ObjectSpace:
        return ObjectSpace(self.n_attributes, self.n_values)

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> "LanguageGameConfig":
        """Raise ConfigError (a ValueError) naming the first bad field, its value and the allowed range."""

        def integer(name: str, minimum: int, maximum: int | None = None, optional: bool = False):
            value = getattr(self, name)
            if value is None and optional:
                return
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(name, value, "must be an integer" + (" or None" if optional else ""))
            if value < minimum or (maximum is not None and value > maximum):
                allowed = f"must be >= {minimum}" if maximum is None else f"must be in [{minimum}, {maximum}]"
                raise ConfigError(name, value, allowed)

        def positive(name: str, allow_zero: bool = False):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(name, value, "must be a number")
            if not math.isfinite(value):
                raise ConfigError(name, value, "must be a finite number " + (">= 0" if allow_zero else "> 0"))
            if value < 0 or (value == 0 and not allow_zero):
                raise ConfigError(name, value, "must be >= 0" if allow_zero else "must be > 0")

        def choice(name: str, allowed):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(name, value, f"must be one of {list(allowed)}")

        choice("game", GAMES)
        integer("n_attributes", 1, 1000)
        try:
            space = self.space()
        except (ValueError, TypeError):
            raise ConfigError(
                "n_values", self.n_values,
                f"must be an integer >= 1 or a list of {self.n_attributes} integers >= 1",
            ) from None
        if space.n_objects > MAX_OBJECTS:
            raise ConfigError("n_values", self.n_values,
                              f"the space would hold {space.n_objects} objects; at most {MAX_OBJECTS:,} are allowed")
        integer("vocab_size", 2)
        integer("max_len", 1)
        integer("hidden_size", 1)
        integer("embed_size", 1, optional=True)
        choice("cell", sorted(CELLS))
        choice("channel", CHANNELS)
        positive("temperature")
        for flag in ("straight_through", "eos", "learned_start", "baseline"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, getattr(self, flag), "must be true or false")
        integer("batch_size", 1)
        positive("lr_sender")
        positive("lr_receiver")
        positive("sender_entropy_coeff", allow_zero=True)
        positive("receiver_entropy_coeff", allow_zero=True)
        choice("holdout", HOLDOUTS)
        if self.holdout == "none":
            if self.holdout_fraction != 0.0:
                raise ConfigError("holdout_fraction", self.holdout_fraction,
                                  "must be 0 when holdout is 'none'")
        else:
            value = self.holdout_fraction
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError("holdout_fraction", value, "must be in (0, 1) with a holdout")
        integer("seed", 0, MAX_SEED)
        integer("eval_every", 0)
        integer("eval_repeats", 1)
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError, ValueError):
            device = None
        check_device(self.device)
        try:
            split = space.split(self.holdout, self.holdout_fraction, self.seed)
        except ValueError as error:
            raise ConfigError("holdout_fraction", self.holdout_fraction, str(error)) from None
        if self.game == "referential":
            n_train = int(split.train.numel())
            integer("n_candidates", 2, n_train)
            integer("easy_limit", 0, self.n_candidates - 1, optional=True)
        return self


def build_game(config: LanguageGameConfig, *, loss=None) -> LanguageGame:
    """Space, split, sender and receiver, initialised from `config.seed`, on `config.device`.

    Initialisation draws from a forked copy of torch's global RNG seeded with config.seed, so the
    same config always builds the same weights and the caller's RNG state is left untouched.
    """
    config.validate()
    space = config.space()
    split = space.split(config.holdout, config.holdout_fraction, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        sender = Sender(
            space.input_size, config.vocab_size, config.max_len, config.hidden_size,
            cell=config.cell, embed_size=config.embed_size, eos=config.eos, channel=config.channel,
            temperature=config.temperature, straight_through=config.straight_through,
            learned_start=config.learned_start,
        )
        common = dict(
            channel=config.channel, loss=loss, sender_entropy_coeff=config.sender_entropy_coeff,
            receiver_entropy_coeff=config.receiver_entropy_coeff, baseline=config.baseline,
            split=split, batch_size=config.batch_size,
        )
        if config.game == "referential":
            receiver = ReferentialReceiver(
                space.input_size, config.vocab_size, config.hidden_size, cell=config.cell,
                embed_size=config.embed_size,
            )
            game = ReferentialGame(
                space, sender, receiver, n_candidates=config.n_candidates,
                easy_limit=config.easy_limit, eval_repeats=config.eval_repeats,
                eval_seed=config.seed, **common,
            )
        else:
            receiver = ReconstructionReceiver(
                space.n_values, config.vocab_size, config.hidden_size, cell=config.cell,
                embed_size=config.embed_size,
            )
            game = ReconstructionGame(space, sender, receiver, **common)
    return game.to(config.device)


def build_optimizers(game: LanguageGame, config: LanguageGameConfig) -> dict[str, torch.optim.Optimizer]:
    """One Adam per agent (the reference code's setting), learning rates from the config."""
    return {
        "sender": torch.optim.Adam(game.sender.parameters(), lr=config.lr_sender),
        "receiver": torch.optim.Adam(game.receiver.parameters(), lr=config.lr_receiver),
    }


def make_generator(config: LanguageGameConfig, stream: int = 0) -> torch.Generator:
    """The run's random stream on the config's device (batches, message and choice sampling).

    `stream` separates independent streams of one seed (e.g. per phase) without reusing draws.
    """
    generator = torch.Generator(device=torch.device(config.device))
    return generator.manual_seed(config.seed * 1_000_003 + stream)


class _TrainingStats:
    """Sums of per-batch means, kept on the device: no host sync until `read()`."""

    names = ("train_accuracy", "train_loss", "train_sender_entropy", "train_receiver_entropy")

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.names), device=device)
        self.count = 0

    def add(self, out) -> None:
        self.sums += torch.stack([
            out.accuracy.mean(), out.task_loss.mean(), out.sender_entropy.mean(),
            out.receiver_entropy.mean(),
        ])
        self.count += 1

    def read(self) -> dict[str, float]:
        values = (self.sums / max(self.count, 1)).tolist()
        self.sums.zero_()
        self.count = 0
        return dict(zip(self.names, values))


def train_iterations(
    game: LanguageGame,
    optimizers: dict[str, torch.optim.Optimizer],
    n_iterations: int,
    *,
    generator: torch.Generator,
    eval_every: int | None = None,
    on_eval: Callable[[dict[str, Any]], bool | None] | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    iteration_offset: int = 0,
) -> dict[str, Any]:
    """Play `n_iterations` batches, stepping each given optimizer after every batch.

    Every `eval_every` iterations (and never otherwise) the loop syncs with the device: it reads
    the mean training stats since the last evaluation, runs `evaluate(game)` and passes the record
    (iteration, train_*, greedy metrics; no message tensor) to `on_eval`; if `on_eval` returns
    True, training stops there. Iterations are numbered from `iteration_offset + 1` (a generational
    caller passes the iterations done so far). `progress`: a tqdm bar on terminals (tqdm's
    disable=None); False: none.

    Returns {"iterations" run, train_* over the iterations since the last evaluation (or all of
    them), "evaluations": the records passed to on_eval}.
    """
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, int) or n_iterations < 0:
        raise ValueError(f"n_iterations={n_iterations!r}: must be an integer >= 0")
    if eval_every is not None and (not isinstance(eval_every, int) or eval_every < 0):
        raise ValueError(f"eval_every={eval_every!r}: must be an integer >= 0 or None")
    batch_size = game.batch_size if batch_size is None else batch_size
    stats = _TrainingStats(game.device)
    evaluations: list[dict[str, Any]] = []
    last = stats.read()
    bar = tqdm(total=n_iterations, disable=None if progress else True, desc=game.kind, leave=False)
    done = 0
    try:
        for step in range(1, n_iterations + 1):
            batch = game.sample_batch(batch_size, generator)
            out = game.play(batch, generator)
            game.zero_grad(set_to_none=True)
            if out.loss.requires_grad:
                out.loss.backward()
                for optimizer in optimizers.values():
                    optimizer.step()
            stats.add(out)
            done = step
            bar.update(1)
            if eval_every and step % eval_every == 0:
                last = stats.read()
                metrics = evaluate(game)
                metrics.pop("messages")
                record = {"iteration": iteration_offset + step, **last, **metrics}
                evaluations.append(record)
                bar.set_postfix(acc=f"{metrics['accuracy']:.3f}", topsim=f"{metrics['topsim']:.3f}")
                if on_eval is not None and on_eval(record) is True:
                    break
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(None, iteration_offset + done) from None
    bar.close()
    if stats.count:
        last = stats.read()
    return {"iterations": done, **last, "evaluations": evaluations}


@torch.no_grad()
def greedy_messages(game: LanguageGame, objects: torch.Tensor | None = None) -> torch.Tensor:
    """The sender's argmax messages [N, max_len] (Long, on the game's device) for the objects
    (default: the whole space), computed in eval mode; the sender's mode is restored."""
    objects = torch.arange(game.space.n_objects, device=game.device) if objects is None else objects
    was_training = game.sender.training
    game.sender.eval()
    try:
        return game.sender(game.space.encode_index(objects.to(game.device))).message
    finally:
        game.sender.train(was_training)


@torch.no_grad()
def evaluate(game: LanguageGame) -> dict[str, Any]:
    """Greedy scores of the current language (both agents in eval mode; modes restored after).

    accuracy: greedy accuracy over every object of the space (referential: on the game's fixed
    candidate sets, `eval_repeats` per object); train_split_accuracy / holdout_accuracy on the split's
    parts (holdout_accuracy None without a holdout); sender_entropy: mean over objects of the
    sender's policy entropy summed over positions (nats); distinct_messages: number of different
    greedy messages; topsim (EGG convention: attribute Hamming vs edit distance / mean length,
    Spearman, pairs i<j), posdis, bosdis, message_entropy (bits); messages: Long [N, max_len] CPU.
    """
    modes = (game.sender.training, game.receiver.training)
    game.sender.eval()
    game.receiver.eval()
    try:
        accuracy = {}
        for name, batch in game.evaluation_batches().items():
            accuracy[name] = game.play(batch).accuracy.mean()
        everything = torch.arange(game.space.n_objects, device=game.device)
        spoken = game.sender(game.space.encode_index(everything))
        # No "train" batch when nothing is held out: the training objects are all objects.
        train = accuracy.get("train", accuracy["all"])
        scalars = torch.stack([accuracy["all"], train, spoken.entropy.mean()]).tolist()
        holdout = float(accuracy["holdout"]) if "holdout" in accuracy else None
    finally:
        game.sender.train(modes[0])
        game.receiver.train(modes[1])
    messages = spoken.message.cpu()
    attributes = game.space.objects().numpy()
    symbols = messages.numpy()
    eos = 0 if game.sender.eos else None
    if game.sender.eos:
        bag, bag_vocab = symbols, game.sender.vocab_size  # symbols after EOS are already 0
    else:
        # Fixed length: every symbol, 0 included, is content; shift by one so bosdis keeps symbol 0.
        bag, bag_vocab = symbols + 1, game.sender.vocab_size + 1
    several_attributes = game.space.n_attributes >= 2  # the MI gaps need two attributes
    return {
        "accuracy": scalars[0],
        "train_split_accuracy": scalars[1],
        "holdout_accuracy": holdout,
        "sender_entropy": scalars[2],
        "distinct_messages": int(np.unique(symbols, axis=0).shape[0]),
        "topsim": _quiet(topographic_similarity, attributes, symbols, eos=eos),
        "posdis": _quiet(posdis, attributes, symbols) if several_attributes else None,
        "bosdis": _quiet(bosdis, attributes, bag, bag_vocab) if several_attributes else None,
        "message_entropy": float(message_entropy(symbols, eos=eos)),
        "messages": messages,
    }


def _quiet(metric, *args, **kwargs) -> float:
    """A metric that is undefined for a degenerate language (e.g. one message) is nan, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))
