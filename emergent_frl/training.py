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
import warnings
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.compositionality import bosdis, message_entropy, posdis, topographic_similarity
from analysis.language_metrics import language_metrics
from emergent_frl.devices import DeviceError, machine_device
from emergent_frl.user_agents import build_agents as build_user_agents, load_factory
from emergent_frl.difficulty_probes import build_probe_sets, probe_accuracies
from emergent_frl.agents import CELLS, CHANNELS, ReconstructionReceiver, ReferentialReceiver, Sender
from emergent_frl.games import (
    RECEIVER_TRAINING, TRAINING_STATS, LanguageGame, ReconstructionGame, ReferentialGame, check_receiver_training,
)
from emergent_frl.knobs import ConfigError, check_knob, check_knobs, knob
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
# The argument groups of the game scripts' flags (games/cli.py) the knobs below go in.
GAME, TRAINING, OUTPUT = "game", "training", "evaluation and output"


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


SettingsT = TypeVar("SettingsT", bound="SpaceSettings")


class SpaceSettings:
    """What every config over an attribute-value space (fields `n_attributes`, `n_values`) offers:
    reading from and writing to plain dicts (config.json, YAML), and the space itself."""

    n_attributes: int
    n_values: int | list[int]

    @classmethod
    def from_dict(cls: type[SettingsT], values: dict[str, Any]) -> SettingsT:
        """Build from a plain dict (JSON/YAML); unknown keys are an error, missing keys default."""
        return dataclass_from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if isinstance(out["n_values"], tuple):
            out["n_values"] = list(out["n_values"])
        return out

    def space(self) -> ObjectSpace:
        return ObjectSpace(self.n_attributes, self.n_values)


@dataclass
class LanguageGameConfig(SpaceSettings):
    """Every knob of one language game and its training. Defaults: the paper's game (Li & Bowling
    2019 / Zhou et al. 2022: 8 colors x 4 shapes, vocab 8, length 2, 5 candidates, hidden 100,
    batch 100, Adam 1e-3 per agent, entropy 0.1 per agent), trained as EGG trains (tanh-RNN agents,
    a deterministic listener without a message head trained by cross-entropy, a REINFORCE
    baseline), which learns well on games no preset tunes; `--preset paper` trains as the paper.

    Each field is a `knob` (emergent_frl.knobs) declaring its type, range, help and whether it
    fixes tensor shapes; `validate`, the game scripts' flags and batch grouping read it there.
    """

    game: str = knob("referential", kind=str, choices=GAMES, shape=True, flag_group=None,
                     help="which game: the game script sets it")
    n_attributes: int = knob(2, minimum=1, maximum=1000, shape=True, help="attributes per object")
    n_values: int | list[int] = knob(
        [8, 4], many=True, minimum=1, shape=True, checked_by="the object space rule",
        help="values per attribute: one count for all, or one per attribute")
    vocab_size: int = knob(8, minimum=2, shape=True, help="symbols in the vocabulary")
    max_len: int = knob(2, minimum=1, shape=True, help="symbols per message")
    n_candidates: int = knob(5, minimum=2, shape=True, games=("referential",),
                             checked_by="the training objects rule (referential only)",
                             help="candidates shown to the receiver")
    hidden_size: int = knob(100, minimum=1, shape=True, help="RNN hidden size of both agents")
    embed_size: int | None = knob(None, minimum=1, optional=True, shape=True,
                                  help="symbol embedding size (default none: one-hot symbols enter the RNN)")
    cell: str = knob("rnn", kind=str, choices=sorted(CELLS), shape=True,
                     help="RNN cell of both agents (default rnn, as EGG: it learns faster than lstm on "
                          "untuned games, docs/RESULTS.md section 8.1; the paper preset uses lstm)")
    channel: str = knob("reinforce", kind=str, choices=CHANNELS, shape=True,
                        help="reinforce (sampled symbols) or gumbel (Gumbel-Softmax relaxation)")
    receiver_training: str = knob(
        "cross_entropy", kind=str, choices=RECEIVER_TRAINING, shape=True, games=("referential",),
        help="how the referential receiver learns: cross_entropy (deterministic, from the cross-entropy of "
             "its candidate scores, as EGG) or reinforce (samples its choice, 0/1 reward: the paper preset)")
    receiver_head: bool = knob(
        False, kind=bool, shape=True, games=("referential",),
        help="a Linear layer on the referential listener's message encoding before the candidate scores "
             "(the paper's; default off: the RNN state meets the candidates directly, as EGG)")
    temperature: float = knob(1.0, kind=float, greater_than=0, shape=True, help="Gumbel-Softmax temperature")
    straight_through: bool = knob(True, kind=bool, shape=True,
                                  help="hard one-hot forward, soft gradients on the gumbel channel")
    eos: bool = knob(False, kind=bool, shape=True,
                     help="symbol 0 ends a message (EGG); default off: fixed length (the paper)")
    learned_start: bool = knob(False, kind=bool, shape=True,
                               help="learned start-of-message input instead of zeros")
    batch_size: int = knob(100, minimum=1, shape=True, flag_group=TRAINING, help="objects per batch")
    lr_sender: float = knob(1e-3, kind=float, greater_than=0, flag_group=TRAINING,
                            help="sender Adam learning rate")
    lr_receiver: float = knob(1e-3, kind=float, greater_than=0, flag_group=TRAINING,
                              help="receiver Adam learning rate")
    sender_entropy_coeff: float = knob(0.1, kind=float, minimum=0, flag_group=TRAINING,
                                       help="sender entropy bonus")
    receiver_entropy_coeff: float = knob(0.1, kind=float, minimum=0, flag_group=TRAINING,
                                         help="receiver entropy bonus")
    baseline: bool = knob(True, kind=bool, shape=True, flag_group=TRAINING,
                          help="subtract a running mean of the loss in REINFORCE (default on, as EGG does; "
                               "the paper preset turns it off)")
    easy_limit: int | None = knob(
        None, minimum=0, optional=True, games=("referential",), checked_by="the n_candidates rule",
        help="at most this many distractors differing from the target in every attribute (default none: "
             "no limit)")
    holdout: str = knob("none", kind=str, choices=HOLDOUTS, help="objects kept out of training")
    holdout_fraction: float = knob(0.0, kind=float, checked_by="the holdout rule",
                                   help="fraction of objects held out: 0 without a holdout, else in (0, 1)")
    seed: int = knob(0, minimum=0, maximum=MAX_SEED, flag_group=TRAINING,
                     help="seed of weights, batches and sampling")
    device: str = knob("cpu", kind=str, shape=True, flag_group=TRAINING, checked_by="the device rule",
                       help="torch device, e.g. cpu, cuda, cuda:1")
    eval_every: int = knob(1000, minimum=0, shape=True, flag_group=OUTPUT,
                           help="greedy evaluation every N iterations (default 1000; 0: only per generation)")
    eval_repeats: int = knob(10, minimum=1, flag_group=OUTPUT,
                             help="fixed candidate sets per object in referential evaluation")
    difficulty_probes: bool = knob(
        False, kind=bool, games=("referential",), flag_group=OUTPUT,
        help="add per-object difficulty probes to every evaluation: greedy accuracy on fixed candidate sets whose "
             "distractors share the target's value on one attribute, share nothing, or are random "
             "(emergent_frl.difficulty_probes)")
    wider_metrics: bool = knob(
        False, kind=bool, flag_group=OUTPUT,
        help="also record mutual information, H(M|O), H(O|M), context independence, HAS segments and Zipf's "
             "law of abbreviation at every evaluation (analysis.language_metrics, docs/metrics.md)")
    agents: str | None = knob(
        None, kind=str, optional=True, shape=True, checked_by="the agents rule",
        help="your own agents: MODULE:FUNCTION, where FUNCTION(config) returns (sender, receiver) "
             "(docs/own_agents.md; default none: the built-in agents of --cell, --hidden-size, ...)")

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> "LanguageGameConfig":
        """Raise ConfigError (a ValueError) naming the first bad field, its value and the allowed
        range: each field against its knob, then the rules that tie fields together."""
        check_knobs(self)
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
        if self.holdout == "none":
            if self.holdout_fraction != 0.0:
                raise ConfigError("holdout_fraction", self.holdout_fraction,
                                  "must be 0 when holdout is 'none'")
        else:
            value = self.holdout_fraction
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ConfigError("holdout_fraction", value, "must be in (0, 1) with a holdout")
        check_device(self.device)
        try:
            split = space.split(self.holdout, self.holdout_fraction, self.seed)
        except ValueError as error:
            raise ConfigError("holdout_fraction", self.holdout_fraction, str(error)) from None
        if self.game == "referential":
            check_receiver_training(self.channel, self.receiver_training)
            check_knob(self, "n_candidates", maximum=int(split.train.numel()))
            check_knob(self, "easy_limit", maximum=self.n_candidates - 1)
        if self.agents is not None:
            check_knob(self, "agents")
            load_factory(self.agents)  # importable and callable, before any work
        return self


def build_agents(config: LanguageGameConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(sender, receiver) of `config`: the user's (`config.agents`, checked against
    emergent_frl.protocols) or the built-in ones its knobs describe. Draws from torch's global RNG:
    `build_game` seeds a fork of it."""
    if config.agents is not None:
        return build_user_agents(config.agents, config)
    space = config.space()
    sender = Sender(
        space.input_size, config.vocab_size, config.max_len, config.hidden_size,
        cell=config.cell, embed_size=config.embed_size, eos=config.eos, channel=config.channel,
        temperature=config.temperature, straight_through=config.straight_through,
        learned_start=config.learned_start,
    )
    if config.game == "referential":
        receiver = ReferentialReceiver(space.input_size, config.vocab_size, config.hidden_size, cell=config.cell,
                                       embed_size=config.embed_size,
                                       deterministic=config.receiver_training == "cross_entropy",
                                       message_head=config.receiver_head)
    else:
        receiver = ReconstructionReceiver(space.n_values, config.vocab_size, config.hidden_size, cell=config.cell,
                                          embed_size=config.embed_size)
    return sender, receiver


def build_game(config: LanguageGameConfig, *, loss=None) -> LanguageGame:
    """Space, split, sender and receiver (`build_agents`), initialised from `config.seed`, on
    `config.device`.

    Initialisation draws from a forked copy of torch's global RNG seeded with config.seed, so the
    same config always builds the same weights and the caller's RNG state is left untouched.
    """
    config.validate()
    space = config.space()
    split = space.split(config.holdout, config.holdout_fraction, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        sender, receiver = build_agents(config)
        common = dict(
            channel=config.channel, loss=loss, sender_entropy_coeff=config.sender_entropy_coeff,
            receiver_entropy_coeff=config.receiver_entropy_coeff, baseline=config.baseline,
            split=split, batch_size=config.batch_size,
        )
        if config.game == "referential":
            game = ReferentialGame(
                space, sender, receiver, n_candidates=config.n_candidates,
                easy_limit=config.easy_limit, receiver_training=config.receiver_training,
                eval_repeats=config.eval_repeats,
                eval_seed=config.seed, **common,
            )
        else:
            game = ReconstructionGame(space, sender, receiver, **common)
    game.wider_metrics = config.wider_metrics
    if config.difficulty_probes:
        if config.game != "referential":
            raise ConfigError("difficulty_probes", True, "the probes are candidate sets: referential game only")
        game.difficulty_probes = build_probe_sets(space, config.n_candidates, seed=config.seed)
    game = game.to(config.device)
    if config.difficulty_probes:
        game.difficulty_probes = game.difficulty_probes.to(config.device)
    return game


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


class TrainingStats:
    """Sums of per-batch `TRAINING_STATS`, one row per run, kept on the device: no host sync
    until `read()`, which returns each run's means since the last read and starts again."""

    def __init__(self, device: torch.device, runs: int = 1):
        self.sums = torch.zeros(runs, len(TRAINING_STATS), device=device)
        self.count = 0

    def add(self, stats: torch.Tensor) -> None:
        """One iteration's stats: [runs, 4] (or [4] for one run)."""
        self.sums += stats
        self.count += 1

    def read(self) -> list[dict[str, float]]:
        rows = (self.sums / max(self.count, 1)).tolist()
        self.sums.zero_()
        self.count = 0
        return [dict(zip(TRAINING_STATS, row)) for row in rows]


def evaluation_record(game: LanguageGame, iteration: int, stats: dict[str, float]) -> dict[str, Any]:
    """What an evaluation inside a generation records: the iteration, the training stats since the
    last evaluation, and the greedy scores of `evaluate` (without the message tensor)."""
    metrics = evaluate(game)
    metrics.pop("messages")
    return {"iteration": iteration, **stats, **metrics}


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
    bar: Any = None,
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
    stats = TrainingStats(game.device)
    evaluations: list[dict[str, Any]] = []
    (last,) = stats.read()
    own_bar = bar is None  # `bar`: a caller's progress bar (e.g. the whole run's) to advance instead
    if own_bar:
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
            stats.add(out.training_stats())
            done = step
            bar.update(1)
            if eval_every and step % eval_every == 0:
                (last,) = stats.read()
                record = evaluation_record(game, iteration_offset + step, last)
                evaluations.append(record)
                bar.set_postfix(acc=f"{record['accuracy']:.3f}", topsim=f"{record['topsim']:.3f}")
                if on_eval is not None and on_eval(record) is True:
                    break
    except KeyboardInterrupt:
        if own_bar:
            bar.close()
        raise Interrupted(None, iteration_offset + done) from None
    if own_bar:
        bar.close()
    if stats.count:
        (last,) = stats.read()
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


# The named convention (analysis.compositionality) each recorded metric is scored under, the same
# with and without EOS: topsim as EGG's callback prints it (messages as given, padding included);
# bosdis counting every symbol, 0 included, as emlangkit does (in fixed-length messages 0 is
# content). posdis has a single definition (positions as given, EGG = emlangkit).
RECORD_CONVENTIONS = MappingProxyType({"topsim": "egg", "bosdis": "emlangkit"})


@torch.no_grad()
def evaluate(game: LanguageGame) -> dict[str, Any]:
    """Greedy scores of the current language (both agents in eval mode; modes restored after).

    accuracy: greedy accuracy over every object of the space (referential: on the game's fixed
    candidate sets, `eval_repeats` per object); train_split_accuracy / holdout_accuracy on the split's
    parts (holdout_accuracy None without a holdout); sender_entropy: mean over objects of the
    sender's policy entropy summed over positions (nats); distinct_messages: number of different
    greedy messages; topsim, posdis, bosdis, each of the messages as the sender emitted them
    (padded, EOS not cut) under the named convention in `RECORD_CONVENTIONS`, so rescoring
    language.json's objects and messages with that convention gives the recorded number;
    message_entropy (bits); messages: Long [N, max_len] CPU.
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
    vocab_size = game.sender.vocab_size
    several_attributes = game.space.n_attributes >= 2  # the MI gaps need two attributes
    probes = getattr(game, "difficulty_probes", None)
    return {
        **({} if probes is None else probe_accuracies(game, probes)),
        "accuracy": scalars[0],
        "train_split_accuracy": scalars[1],
        "holdout_accuracy": holdout,
        "sender_entropy": scalars[2],
        "distinct_messages": int(np.unique(symbols, axis=0).shape[0]),
        "topsim": _quiet(topographic_similarity, attributes, symbols, convention=RECORD_CONVENTIONS["topsim"]),
        "posdis": _quiet(posdis, attributes, symbols) if several_attributes else None,
        "bosdis": (
            _quiet(bosdis, attributes, symbols, vocab_size, convention=RECORD_CONVENTIONS["bosdis"])
            if several_attributes else None
        ),
        "message_entropy": float(message_entropy(symbols, eos=eos)),
        **(language_metrics(attributes, symbols, vocab_size, eos=eos) if getattr(game, "wider_metrics", False)
           else {}),
        "messages": messages,
    }


def _quiet(metric, *args, **kwargs) -> float:
    """A metric that is undefined for a degenerate language (e.g. one message) is nan, silently."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))
