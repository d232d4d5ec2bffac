"""Many language-game runs of one shape, trained as one batched computation in one process.

Forget-and-relearn science needs many seeds x many strategies x long runs of tiny networks. One
run's iteration is ~115 MFLOP in a few hundred tiny ops, so an eager loop is bound by per-op
overhead, not arithmetic. Here S runs whose games have the same shape (architecture, batch size,
channel, ...; seeds, strategies, learning rates and entropy coefficients may differ) share every
op: each parameter is the S runs' parameters stacked along a leading run dimension, every Linear /
RNN-cell matmul is one `torch.baddbmm` over the S runs, and Adam is torch's fused kernel on the
per-run slices.

    runs = BatchedLanguageRuns([game_config_0, ...], [relearn_0, ...], [RunDirectory(...), ...])
    runs.run()                                 # every generation of every run, per-run run dirs
    run_language_batched([values_0, ...], ["runs/s0", ...])   # the same from flat configs (CLI)

The pieces, bottom up:
- `BatchedGame`: the stacked parameters of S `LanguageGame`s and the batched training forward
  (sender, receiver, the game's own per-sample loss, EGG's REINFORCE / Gumbel loss with entropy
  bonuses and optional running-mean baseline). It draws each run's batch and sampling noise from
  that run's own `torch.Generator` with exactly the calls, shapes and order of the single-run game,
  so run i sees the batches and noise `LanguageRun` with the same seed sees; the batch is then
  assembled for all runs at once (one vectorised candidate draw, one-hot codes by table lookup).
- `StackedAdam`: one Adam per (run, agent), state per (run, parameter), so any run's state can be
  reset alone; a step is torch's fused Adam on the per-run views (Adam is elementwise).
- `BatchedLanguageRuns`: S `LanguageRun`s ("members") that keep their own configs, strategies
  and forgetting operators, generators, records and run directories. The batch trains them all;
  at every evaluation and generation boundary run i's slice is copied into its member's modules
  (weights, baseline, Adam state), the member's own code evaluates, records, forgets (the existing
  strategies and operators, untouched) and checkpoints, and the result is copied back. A member's
  run directory is what `LanguageRun` writes, so a batched run can be resumed or extended singly.
  A record's "seconds" include the (shared) wall time of the batch's training of that generation.

How the computation differs from the single-run modules, all exact up to float rounding: Linear
and cell weights are stored transposed (gradients come out contiguous for the fused Adam);
products with the zero initial receiver state and the zero start token are skipped; the sender's
first step uses (objects @ W_enc) @ W_hh = objects @ (W_enc @ W_hh) (matrix-chain order); the
referential scores use candidate . (W_c @ message) instead of encoding every candidate; tanh is
2 sigmoid(2x) - 1 (torch.tanh is slow on CPU). So given identical weights, batch and noise, each
run's loss and gradients equal the unbatched game's to rounding (tests/test_batched.py), but
trajectories are not bit-identical to `LanguageRun`'s: Adam's first steps turn ~1e-7 gradient
differences into ~lr weight differences and sampled symbols eventually flip. Batched run i follows
single-run seed i in distribution, on the same random stream. Runs in one batch do not influence
each other: run i's records do not change when another run's seed changes.

Not batched: `iterated_learning` (its imitation phase and listener-only warm-up are per-run
phases); `run_language_batched` runs those configs one by one with `run_language`.
Devices: written for CPU and CUDA alike (no host sync in the training step; `compile=
"reduce-overhead"` gives CUDA graphs), but exercised on CPU only so far.
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.adam import adam as adam_update
from tqdm.auto import tqdm

from emergent_frl.agents import (
    ReceiverOutput,
    SenderOutput,
    StartToken,
    categorical_entropy,
    exponential_noise,
    find_lengths,
)
from emergent_frl.games import LanguageGame, ReconstructionGame, ReferentialGame
from emergent_frl.objects import sample_objects
from emergent_frl.relearn import (
    LanguageRun,
    NonFiniteError,
    RelearnConfig,
    flat_config,
    run_language,
    split_config,
)
from emergent_frl.runs import RunDirectory
from emergent_frl.training import LanguageGameConfig, evaluate

# Fields that must agree between the runs of one batch (they fix tensor shapes or the loop).
SHAPE_FIELDS = (
    "game", "n_attributes", "n_values", "vocab_size", "max_len", "n_candidates", "hidden_size",
    "embed_size", "cell", "channel", "temperature", "straight_through", "eos", "learned_start",
    "batch_size", "baseline", "device", "eval_every",
)
RELEARN_SHAPE_FIELDS = ("generations", "iterations_per_generation")
UNBATCHED_STRATEGIES = ("iterated_learning",)
RELATION_TABLE_LIMIT = 1 << 24  # target x distractor pairs up to which the relation masks are tabulated
OBJECT_TABLE_LIMIT = 1 << 24  # objects x input size up to which the one-hot codes are tabulated
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
STAT_NAMES = ("train_accuracy", "train_loss", "train_sender_entropy", "train_receiver_entropy")


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than hand it back to the OS.

    A training step allocates and frees the same few-MB temporaries every iteration; by default
    glibc serves blocks that size with fresh mmap()s, so every iteration pays page faults on them
    (5-10 % of a batched CPU step). Process-wide (the memory stays with the process); returns
    False, changing nothing, where the C library has no mallopt (not glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
                and mallopt(m_top_pad, 64 << 20))


def batch_key(values: dict[str, Any]) -> tuple | None:
    """Runs with equal keys can share one batch; None: this run cannot be batched."""
    game, relearn = split_config(values)
    if relearn.strategy in UNBATCHED_STRATEGIES:
        return None
    g, r = game.to_dict(), relearn.to_dict()
    g["n_values"] = game.space().n_values  # 3 and [3, 3] are one shape
    return tuple(g[k] for k in SHAPE_FIELDS) + tuple(r[k] for k in RELEARN_SHAPE_FIELDS)


MAX_SEEDS = 4096


def parse_seeds(text: str) -> list[int]:
    """'0-15' -> [0..15]; '0,3,7' -> [0, 3, 7]; '0-3,8' -> [0, 1, 2, 3, 8] (for --seeds)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ValueError(f"--seeds {text}: expected integers, ranges like 0-15, or a comma list") from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds {text}: {part!r} is not a range of seeds >= 0")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise ValueError(f"--seeds {text}: at most {MAX_SEEDS} seeds in one process")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError(f"--seeds {text}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text}: a seed is given twice")
    return seeds


# -- where each single-run parameter lives in the stack ------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One single-run parameter as a stacked leaf tensor [S, ...].

    Weights of Linear layers and RNN cells are stored transposed ([in, out] per run), so the
    batched matmuls read them as they are and their gradients come out contiguous (which the fused
    Adam kernel needs). `leaf`: the key in `BatchedGame.leaves`.
    """

    name: str
    leaf: str
    transposed: bool = False

    def to_single(self, block: torch.Tensor) -> torch.Tensor:
        """One run's block of a leaf-shaped tensor -> the single-run parameter's layout (a view)."""
        return block.t() if self.transposed else block


def parameter_layout(game: LanguageGame) -> list[Slot]:
    """The slots of every parameter of `game`, in `named_parameters()` order."""
    slots: dict[str, Slot] = {}
    for prefix, module in game.named_modules():
        if isinstance(module, nn.Linear):
            slots[f"{prefix}.weight"] = Slot(f"{prefix}.weight", f"{prefix}.weight_t", transposed=True)
            if module.bias is not None:
                slots[f"{prefix}.bias"] = Slot(f"{prefix}.bias", f"{prefix}.bias")
        elif isinstance(module, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
            if not module.bias:
                raise ValueError(f"batched runs need RNN cells with biases; {prefix} has none")
            for kind in ("ih", "hh"):
                slots[f"{prefix}.weight_{kind}"] = Slot(f"{prefix}.weight_{kind}", f"{prefix}.weight_{kind}_t",
                                                        transposed=True)
                slots[f"{prefix}.bias_{kind}"] = Slot(f"{prefix}.bias_{kind}", f"{prefix}.bias_{kind}")
        elif isinstance(module, StartToken) and module.learned:
            slots[f"{prefix}.weight"] = Slot(f"{prefix}.weight", f"{prefix}.weight")
    names = [n for n, _ in game.named_parameters()]
    unknown = [n for n in names if n not in slots]
    if unknown:
        raise ValueError(f"batched runs do not know how to stack parameters {unknown}")
    return [slots[n] for n in names]


# -- stacked building blocks -------------------------------------------------------------------
def stacked_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-run Linear: x [S, ..., in], weight_t [S, in, out] (transposed), bias [S, out] -> [S, ..., out]."""
    runs, features = x.shape[0], x.shape[-1]
    flat = x.reshape(runs, -1, features)
    out = torch.bmm(flat, weight_t) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, weight_t)
    return out.view(*x.shape[:-1], weight_t.shape[-1])


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: equal to float rounding (absolute error ~1e-7), and on CPU
    several times faster than torch.tanh, which dominated the batched LSTM's pointwise work."""
    return 2 * torch.sigmoid(2 * x) - 1


class StackedCell:
    """One stacked recurrent cell (S runs) with torch's LSTMCell / GRUCell / RNNCell (tanh)
    equations, tanh as `fast_tanh`. A step takes x [S, B, in] or None (a zero input: the sender's
    zero start token) and a state whose h and c may be None (zero: the receiver's initial state);
    the products with a zero operand are skipped, not computed."""

    def __init__(self, kind: str, leaves: dict[str, torch.Tensor], prefix: str):
        self.kind = kind
        self.w_ih, self.w_hh = leaves[f"{prefix}.weight_ih_t"], leaves[f"{prefix}.weight_hh_t"]
        self.b_ih, self.b_hh = leaves[f"{prefix}.bias_ih"].unsqueeze(1), leaves[f"{prefix}.bias_hh"].unsqueeze(1)
        self.bias = None if kind == "gru" else self.b_ih + self.b_hh
        self.hidden_size = self.w_hh.shape[1]

    def initial_state(self, h: torch.Tensor | None = None):
        """(h, c) with c zero (None); h None: the zero state."""
        return (h, None)

    @staticmethod
    def _affine(bias: torch.Tensor, pairs) -> torch.Tensor:
        """bias + sum of x @ w over the pairs whose x is not None (at least one)."""
        out = bias
        for x, w in pairs:
            if x is not None:
                out = torch.baddbmm(out, x, w)
        if out is bias:
            raise ValueError("a cell step needs an input or a state")
        return out

    def step(self, x: torch.Tensor | None, state):
        """x [S, B, in] or None, state (h [S, B, H] or None, c or None) -> the next state."""
        h, c = state
        if self.kind == "gru":
            sizes = [2 * self.hidden_size, self.hidden_size]
            i_rz, i_n = (self.b_ih if x is None else torch.baddbmm(self.b_ih, x, self.w_ih)).split(sizes, -1)
            h_rz, h_n = (self.b_hh if h is None else torch.baddbmm(self.b_hh, h, self.w_hh)).split(sizes, -1)
            r, z = torch.sigmoid(i_rz + h_rz).chunk(2, -1)
            n = fast_tanh(i_n + r * h_n)
            return (n - z * n if h is None else n + z * (h - n)), None
        return self._pointwise(self._affine(self.bias, ((h, self.w_hh), (x, self.w_ih))), c)

    def first_step_from(self, objects: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor,
                        x: torch.Tensor | None):
        """The first step from h0 = objects @ weight_t + bias (c zero) without forming h0, by
        matrix-chain order: h0 @ W_hh = [objects, 1] @ ([weight_t; bias] @ W_hh), cheaper when the
        objects are narrower than h. LSTM and RNN only (a GRU also uses h0 elementwise)."""
        chain = torch.bmm(torch.cat([weight_t, bias.unsqueeze(1)], 1), self.w_hh)  # [S, D + 1, G]
        objects = torch.cat([objects, objects.new_ones(*objects.shape[:-1], 1)], -1)
        return self._pointwise(self._affine(self.bias, ((objects, chain), (x, self.w_ih))), None)

    def _pointwise(self, gates: torch.Tensor, c: torch.Tensor | None):
        if self.kind == "rnn":
            return fast_tanh(gates), None
        # chunk, not slicing: its backward is one concatenation, not a zero-filled copy per slice.
        i, f, g, o = gates.chunk(4, -1)
        cell_input = torch.sigmoid(i) * fast_tanh(g)
        c = cell_input if c is None else torch.sigmoid(f) * c + cell_input
        return torch.sigmoid(o) * fast_tanh(c), c


def _cell_kind(cell: nn.Module) -> str:
    if isinstance(cell, nn.LSTMCell):
        return "lstm"
    if isinstance(cell, nn.GRUCell):
        return "gru"
    if isinstance(cell, nn.RNNCell) and cell.nonlinearity == "tanh":
        return "rnn"
    raise ValueError(f"batched runs support LSTMCell, GRUCell and tanh RNNCell, got {cell!r}")


@dataclass
class StackedBatch:
    """One training step's inputs for all runs: game inputs [S, B, ...] and sampling noise.

    sender_noise: Exp(1) draws [T, S, B, V] (one [B, V] draw per run and position, as the single-
    run sender makes them); receiver_noise: [S, B, K] (referential game) or None.
    objects: the target objects' indices [S, B].
    """

    sender_input: torch.Tensor
    labels: torch.Tensor
    receiver_input: torch.Tensor | None
    sender_noise: torch.Tensor
    receiver_noise: torch.Tensor | None
    objects: torch.Tensor


class BatchedGame:
    """The games of S runs as one computation: stacked parameters, batched sampling and loss.

    `games` must share a shape (architecture, batch size, channel, eos, baseline, ...); they keep
    their own data (splits, samplers, evaluation sets). `slots` says where each of `games[0]`'s
    parameters lives in `leaves` (the autograd leaves, [S, ...] each); `store`/`load` copy one
    run between the stack and a game's modules. Entropy coefficients may differ per run.
    `compile`: wrap the loss computation in `torch.compile` (True, or a mode such as
    "reduce-overhead", which uses CUDA graphs on a GPU); off by default.
    """

    def __init__(self, games: Sequence[LanguageGame], *, compile: bool | str = False):
        if not games:
            raise ValueError("BatchedGame needs at least one game")
        first = games[0]
        for i, game in enumerate(games):
            _check_same_shape(i, game, first)
        self.games = list(games)
        self.n_runs = len(games)
        self.template = first
        self.device = first.device
        self.sender_cell = _cell_kind(first.sender.cell)
        self.receiver_cell = _cell_kind(first.receiver.cell)
        self.slots = parameter_layout(first)
        single = dict(first.named_parameters())
        self.leaves = {}
        for slot in self.slots:
            shape = tuple(single[slot.name].shape)
            self.leaves[slot.leaf] = torch.zeros(self.n_runs, *(shape[::-1] if slot.transposed else shape),
                                                 device=self.device, requires_grad=True)
        self.sender_coeff = torch.tensor([g.sender_entropy_coeff for g in games], device=self.device)
        self.receiver_coeff = torch.tensor([g.receiver_entropy_coeff for g in games], device=self.device)
        self.has_baseline = first.baseline is not None
        self.baseline_mean = torch.zeros(self.n_runs, device=self.device)
        self.baseline_count = torch.zeros(self.n_runs, device=self.device)
        for run, game in enumerate(games):
            self.load(run, game)
        # Object tables, so that encoding a batch is one gather (up to a size).
        space = first.space
        self._codes = self._attributes = None
        if space.n_objects * space.input_size <= OBJECT_TABLE_LIMIT:
            everything = torch.arange(space.n_objects, device=self.device)
            self._codes, self._attributes = space.encode_index(everything), space.attributes_of(everything)
        self._shared_sampler = self._common_sampler()
        self._relations = None
        if self._shared_sampler is not None:
            sampler = self._shared_sampler
            if sampler.targets.numel() * sampler.distractors.numel() <= RELATION_TABLE_LIMIT:
                # Which distractors differ from / share nothing with each target, looked up per batch.
                self._relations = sampler._relations(sampler._target_attributes, sampler._distractor_attributes)
        self._symbols = torch.arange(first.sender.vocab_size, device=self.device)
        self._loss = self._losses
        if compile:
            self._loss = torch.compile(self._losses, dynamic=False,
                                       mode=compile if isinstance(compile, str) else None)

    # -- copying between the stack and the single-run modules --------------------------------------
    @torch.no_grad()
    def store(self, run: int, game: LanguageGame | None = None) -> None:
        """Copy run `run`'s slice into its game's modules (weights and baseline)."""
        game = self.games[run] if game is None else game
        params = dict(game.named_parameters())
        for slot in self.slots:
            params[slot.name].copy_(slot.to_single(self.leaves[slot.leaf][run]))
        if self.has_baseline:
            game.baseline.mean.copy_(self.baseline_mean[run])
            game.baseline.count.copy_(self.baseline_count[run])

    @torch.no_grad()
    def load(self, run: int, game: LanguageGame | None = None) -> None:
        """Copy a game's modules (weights and baseline) into run `run`'s slice."""
        game = self.games[run] if game is None else game
        params = dict(game.named_parameters())
        for slot in self.slots:
            slot.to_single(self.leaves[slot.leaf][run]).copy_(params[slot.name])
        if self.has_baseline:
            self.baseline_mean[run] = game.baseline.mean
            self.baseline_count[run] = game.baseline.count

    def parameters_by_name(self, stacked: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Leaf-shaped tensors (default: the leaves themselves, detached; or e.g. their gradients)
        -> {single-run parameter name: [S, *that parameter's shape]} (copies)."""
        stacked = {k: v.detach() for k, v in self.leaves.items()} if stacked is None else stacked
        return {slot.name: stacked[slot.leaf].transpose(1, 2).clone() if slot.transposed
                else stacked[slot.leaf].clone() for slot in self.slots}

    # -- sampling ------------------------------------------------------------------------------------
    def _common_sampler(self):
        """The candidate sampler every run shares (same pools, same easy_limit), else None."""
        if not isinstance(self.template, ReferentialGame):
            return None
        samplers = [g.sampler_for(self.device) for g in self.games]
        first = samplers[0]
        for s in samplers[1:]:
            if (s.easy_limit != first.easy_limit or not torch.equal(s.targets, first.targets)
                    or not torch.equal(s.distractors, first.distractors)):
                return None
        return first

    def sample(self, generators: Sequence[torch.Generator]) -> StackedBatch:
        """Each run's batch and noise from its own generator, with the calls, shapes and order of
        the single-run game: `game.sample_batch` (a target row, distractor keys, a target position),
        then one Exp(1) draw [B, V] per message position, then the referential receiver's [B, K]
        draw. The batch is then put together for all runs at once."""
        game, device = self.template, self.device
        batch, steps, vocab = game.batch_size, game.sender.max_len, game.sender.vocab_size
        referential = isinstance(game, ReferentialGame)
        shared = self._shared_sampler
        like_sender = torch.empty(batch, vocab, device=device)
        like_receiver = torch.empty(batch, game.n_candidates, device=device) if referential else None
        drawn, sender_noise, receiver_noise = [], [], []
        for g, generator in zip(self.games, generators):
            if shared is not None:
                drawn.append((
                    torch.randint(shared.targets.numel(), (batch,), generator=generator, device=device),
                    torch.rand(batch, shared.distractors.numel(), generator=generator, device=device),
                    torch.randint(game.n_candidates, (batch,), generator=generator, device=device),
                ))
            elif referential:
                drawn.append(g.sampler_for(device).sample(batch, generator))
            else:
                drawn.append(sample_objects(g.train_pool, batch, generator))
            sender_noise.append(torch.stack([exponential_noise(like_sender, generator) for _ in range(steps)]))
            if referential:
                receiver_noise.append(exponential_noise(like_receiver, generator))
        noise = torch.stack(sender_noise, 1)  # [T, S, B, V]
        if not referential:
            objects = torch.stack(drawn)
            return StackedBatch(self._encode(objects), self._attributes_of(objects), None, noise, None, objects)
        if shared is not None:
            rows, keys, position = (torch.stack(parts) for parts in zip(*drawn))
            candidates = _arrange_candidates(shared, rows.flatten(), keys.flatten(0, 1), position.flatten(),
                                             self._relations)
            candidates = candidates.view(self.n_runs, batch, -1)
        else:
            candidates = torch.stack([c for c, _ in drawn])  # [S, B, K]
            position = torch.stack([p for _, p in drawn])  # [S, B]
        target = candidates.gather(2, position.unsqueeze(2)).squeeze(2)
        return StackedBatch(self._encode(target), position, self._encode(candidates), noise,
                            torch.stack(receiver_noise), target)

    def _encode(self, objects: torch.Tensor) -> torch.Tensor:
        return self.template.space.encode_index(objects) if self._codes is None else self._codes[objects]

    def _attributes_of(self, objects: torch.Tensor) -> torch.Tensor:
        return self.template.space.attributes_of(objects) if self._attributes is None else self._attributes[objects]

    # -- the batched forward -------------------------------------------------------------------------
    def _one_hot(self, symbol: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """F.one_hot without its range check (a host sync on a GPU)."""
        return (symbol.unsqueeze(-1) == self._symbols).to(dtype)

    def speak(self, leaves: dict[str, torch.Tensor], x: torch.Tensor, noise: torch.Tensor) -> SenderOutput:
        """The senders in training mode (sampling with the given noise); every field gets a leading
        run dimension. Mirrors `Sender.forward` / `Sender._choose` / `Sender._finish`."""
        sender = self.template.sender
        runs, batch = x.shape[:2]
        cell = StackedCell(self.sender_cell, leaves, "sender.cell")
        encoder_t, encoder_bias = leaves["sender.encoder.weight_t"], leaves["sender.encoder.bias"]
        chain = self.sender_cell != "gru" and encoder_t.shape[1] < encoder_t.shape[2]
        state = None if chain else cell.initial_state(stacked_linear(x, encoder_t, encoder_bias))
        embedding = leaves.get("sender.embedding.weight_t")
        # The zero start token (the paper's) is a zero input: its product is skipped.
        inputs = leaves["sender.start.weight"].unsqueeze(1).expand(runs, batch, -1) if sender.start.learned else None
        symbols, one_hots, log_probs, entropies = [], [], [], []
        for t in range(sender.max_len):
            if state is None:
                state = cell.first_step_from(x, encoder_t, encoder_bias, inputs)
            else:
                state = cell.step(inputs, state)
            logits = stacked_linear(state[0], leaves["sender.head.weight_t"], leaves["sender.head.bias"])
            log_p = F.log_softmax(logits, dim=-1)
            if sender.channel == "reinforce":
                symbol = (logits - noise[t].log()).argmax(-1)
                one_hot = self._one_hot(symbol, logits.dtype)
            else:
                soft = F.softmax((logits - noise[t].log()) / sender.temperature, dim=-1)
                symbol = soft.argmax(-1)
                one_hot = soft
                if sender.straight_through:
                    hard = self._one_hot(symbol, soft.dtype)
                    one_hot = hard + soft - soft.detach()
            symbols.append(symbol)
            one_hots.append(one_hot)
            log_probs.append(log_p.gather(-1, symbol.unsqueeze(-1)).squeeze(-1))
            entropies.append(categorical_entropy(log_p))
            inputs = one_hot if embedding is None else stacked_linear(one_hot, embedding, None)
        message = torch.stack(symbols, -1)  # [S, B, T]
        one_hots = torch.stack(one_hots, 2)  # [S, B, T, V]
        log_probs, entropies = torch.stack(log_probs, -1), torch.stack(entropies, -1)
        if not sender.eos:
            length = torch.full((runs, batch), sender.max_len, dtype=torch.long, device=x.device)
            return SenderOutput(message, one_hots, log_probs.sum(-1), entropies.sum(-1), length)
        length = find_lengths(message.reshape(runs * batch, -1)).view(runs, batch)
        keep = torch.arange(sender.max_len, device=x.device) < length.unsqueeze(-1)
        return SenderOutput(message * keep, one_hots * keep.unsqueeze(-1), (log_probs * keep).sum(-1),
                            (entropies * keep).sum(-1), length)

    def read(self, leaves: dict[str, torch.Tensor], symbols: torch.Tensor,
             length: torch.Tensor | None) -> torch.Tensor:
        """The receivers' final hidden state [S, B, H] (mirrors `_MessageReader.read`)."""
        runs, batch, steps, _ = symbols.shape
        embedding = leaves.get("receiver.embedding.weight_t")
        inputs = symbols if embedding is None else stacked_linear(symbols, embedding, None)
        cell = StackedCell(self.receiver_cell, leaves, "receiver.cell")
        state = cell.initial_state()  # zeros: the first step's products with it are skipped
        for t in range(steps):
            new = cell.step(inputs[:, :, t], state)
            if length is not None:  # messages that ended keep their state
                active = (length > t).unsqueeze(-1)
                new = tuple(None if n is None else torch.where(active, n, torch.zeros_like(n) if s is None else s)
                            for n, s in zip(new, state))
            state = new
        return state[0]

    def listen(self, leaves: dict[str, torch.Tensor], spoken: SenderOutput, receiver_input,
               noise: torch.Tensor | None) -> ReceiverOutput:
        """The receivers in training mode; mirrors `ReferentialReceiver` / `ReconstructionReceiver`."""
        length = spoken.length if self.template.sender.eos else None
        hidden = self.read(leaves, spoken.symbols, length)
        head = stacked_linear(hidden, leaves["receiver.head.weight_t"], leaves["receiver.head.bias"])
        if isinstance(self.template, ReconstructionGame):
            blocks = torch.split(head, list(self.template.receiver.n_values), dim=-1)
            choice = torch.stack([block.argmax(-1) for block in blocks], dim=-1)
            zeros = head.new_zeros(head.shape[:2])
            return ReceiverOutput(logits=head, choice=choice, log_prob=zeros, entropy=zeros)
        # scores = (candidate @ W_c + b_c) . message, computed as candidate . (W_c @ message) +
        # b_c . message: the same sum without the [S, B, K, H] candidate encodings.
        weight_t, bias = leaves["receiver.candidate_encoder.weight_t"], leaves["receiver.candidate_encoder.bias"]
        projected = torch.bmm(head, weight_t.transpose(1, 2))  # [S, B, D]
        logits = (receiver_input * projected.unsqueeze(2)).sum(-1) + (head * bias.unsqueeze(1)).sum(-1, keepdim=True)
        log_p = F.log_softmax(logits, dim=-1)
        choice = (logits - noise.log()).argmax(-1)
        return ReceiverOutput(logits=logits, choice=choice,
                              log_prob=log_p.gather(-1, choice.unsqueeze(-1)).squeeze(-1),
                              entropy=categorical_entropy(log_p))

    def _losses(self, leaves, sender_input, labels, receiver_input, sender_noise, receiver_noise,
                baseline_mean, sender_coeff, receiver_coeff):
        """(per-run optimised loss [S], per-run training stats [S, 4], per-run mean task loss [S])."""
        game = self.template
        runs, batch = sender_input.shape[:2]
        spoken = self.speak(leaves, sender_input, sender_noise)
        heard = self.listen(leaves, spoken, receiver_input, receiver_noise)
        # The game's own per-sample loss and accuracy, on the runs' samples laid end to end.
        flat_heard = ReceiverOutput(*(t.flatten(0, 1) for t in (heard.logits, heard.choice, heard.log_prob,
                                                                heard.entropy)))
        flat_labels = labels.flatten(0, 1)
        task_loss, _ = game.loss_fn(
            sender_input.flatten(0, 1), spoken.message.flatten(0, 1),
            None if receiver_input is None else receiver_input.flatten(0, 1),
            game._receiver_output_for_loss(flat_heard), flat_labels, None,
        )
        if task_loss.shape != (runs * batch,):
            raise ValueError(f"loss: must return a per-sample loss of shape ({runs * batch},), got "
                             f"{tuple(task_loss.shape)}")
        task_loss = task_loss.view(runs, batch)
        accuracy = game._accuracy(flat_heard, flat_labels).view(runs, batch)
        # EGG's loss, per run (as LanguageGame.forward computes it for one run).
        entropy_bonus = sender_coeff * spoken.entropy.mean(-1) + receiver_coeff * heard.entropy.mean(-1)
        if game.channel == "reinforce":
            advantage = task_loss.detach()
            if baseline_mean is not None:
                advantage = advantage - baseline_mean.unsqueeze(-1)
            policy = (advantage * (spoken.log_prob + heard.log_prob)).mean(-1)
            loss = policy - entropy_bonus + task_loss.mean(-1)
        else:
            loss = task_loss.mean(-1) - entropy_bonus
        stats = torch.stack([accuracy.mean(-1), task_loss.detach().mean(-1), spoken.entropy.detach().mean(-1),
                             heard.entropy.detach().mean(-1)], -1)
        return loss, stats, task_loss.detach().mean(-1)

    def losses(self, batch: StackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-run loss [S] to backpropagate, per-run stats [S, 4] in STAT_NAMES order); updates the
        running-mean baselines (after the loss, as the single-run game does)."""
        loss, stats, mean_task = self._loss(
            self.leaves, batch.sender_input, batch.labels, batch.receiver_input, batch.sender_noise,
            # A copy: the baseline is updated below, before the backward pass that may still read it.
            batch.receiver_noise, self.baseline_mean.clone() if self.has_baseline else None, self.sender_coeff,
            self.receiver_coeff,
        )
        if self.has_baseline:
            with torch.no_grad():
                self.baseline_count += 1
                self.baseline_mean += (mean_task - self.baseline_mean) / self.baseline_count
        return loss, stats


def _check_same_shape(index: int, game: LanguageGame, first: LanguageGame) -> None:
    """Raise if `game` cannot share a batch with `first` (other structure or shape)."""
    def differs(what: str, a, b) -> None:
        if a != b:
            raise ValueError(f"game {index}: {what}={a!r}, game 0 has {b!r}; only games of one shape share a batch")

    differs("type", type(game).__name__, type(first).__name__)
    differs("parameters", [(n, tuple(p.shape)) for n, p in game.named_parameters()],
            [(n, tuple(p.shape)) for n, p in first.named_parameters()])
    for attr in ("channel", "batch_size", "n_candidates"):
        differs(attr, getattr(game, attr, None), getattr(first, attr, None))
    for attr in ("vocab_size", "max_len", "eos", "temperature", "straight_through"):
        differs(f"sender.{attr}", getattr(game.sender, attr), getattr(first.sender, attr))
    differs("sender.start.learned", game.sender.start.learned, first.sender.start.learned)
    differs("baseline", game.baseline is None, first.baseline is None)
    code = lambda fn: getattr(fn, "__code__", fn)  # noqa: E731  (one loss closure per game is fine)
    differs("loss", code(game.loss_fn), code(first.loss_fn))
    differs("device", game.device, first.device)


def _arrange_candidates(sampler, rows: torch.Tensor, keys: torch.Tensor, position: torch.Tensor,
                        relations: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """`CandidateSampler.sample` for given random draws (target rows [N], distractor keys [N, P],
    target positions [N]): the same candidate sets [N, K] it makes from the same draws, for many
    runs' draws at once. `relations`: the sampler's (different, easy) masks for every target row,
    precomputed. Keep in step with CandidateSampler._draw (tests compare the two)."""
    target = sampler.targets[rows]
    k = sampler.n_candidates
    if relations is None:
        different, easy = sampler._relations(sampler._target_attributes[rows], sampler._distractor_attributes)
    else:
        different, easy = relations[0][rows], relations[1][rows]
    keys = keys.masked_fill(~different, -1.0)
    if sampler.easy_limit is not None:
        order = keys.argsort(dim=1, descending=True)
        easy_sorted = easy.gather(1, order)
        excluded_sorted = easy_sorted & (easy_sorted.cumsum(1) > sampler.easy_limit)
        excluded = torch.zeros_like(excluded_sorted).scatter_(1, order, excluded_sorted)
        keys = keys.masked_fill(excluded, -1.0)
    drawn = sampler.distractors[keys.topk(k - 1, dim=1).indices]
    slot = torch.arange(k, device=keys.device).unsqueeze(0)
    source = (slot - (slot > position.unsqueeze(1)).long()).clamp(max=k - 2)
    return torch.where(slot == position.unsqueeze(1), target.unsqueeze(1), drawn.gather(1, source))


class StackedAdam:
    """One Adam per (run, agent) over stacked parameters, as `build_optimizers` gives one run.

    State per (run, single-run parameter): exp_avg, exp_avg_sq (laid out like the leaves) and a
    step count, so one run's state can be reset (fresh optimizers, an operator clearing state)
    while the others go on. A step is torch's fused Adam kernel (`torch._fused_adam_`, what
    `torch.optim.Adam(fused=True)` runs; elsewhere `torch.optim.adam.adam`) on per-(run,
    parameter) views, one call per learning rate. `lrs[name]` holds each run's learning rate for
    that parameter; betas and eps are torch's defaults, as in `build_optimizers`.
    """

    def __init__(self, leaves: dict[str, torch.Tensor], slots: Sequence[Slot], lrs: dict[str, Sequence[float]]):
        self.leaves, self.slots = leaves, list(slots)
        first = next(iter(leaves.values()))
        self.n_runs, device = first.shape[0], first.device
        self.exp_avg = {n: torch.zeros_like(t) for n, t in leaves.items()}
        self.exp_avg_sq = {n: torch.zeros_like(t) for n, t in leaves.items()}
        self.steps = torch.zeros(len(self.slots), self.n_runs, device=device)
        self.fused = device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adam_")
        self._index = {slot.name: k for k, slot in enumerate(self.slots)}
        # Per-(slot, run) views, slot-major, as `_per_run` lays out the gradients.
        self._views = (
            self._per_run({n: t.detach() for n, t in leaves.items()}),
            self._per_run(self.exp_avg),
            self._per_run(self.exp_avg_sq),
            list(self.steps.view(-1).unbind(0)),
        )
        groups: dict[float, list[int]] = {}
        for k, slot in enumerate(self.slots):
            for run, lr in enumerate(lrs[slot.name]):
                groups.setdefault(float(lr), []).append(k * self.n_runs + run)
        self._groups = groups

    def _per_run(self, stacked: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [block for slot in self.slots for block in stacked[slot.leaf].unbind(0)]

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor]) -> None:
        """One Adam step of every run with the leaves' gradients ({leaf name: [S, ...]})."""
        params, exp_avgs, exp_avg_sqs, steps = self._views
        views = (params, self._per_run(grads), exp_avgs, exp_avg_sqs, steps)
        if self.fused:
            self.steps.add_(1)  # one op for every (run, parameter) step count
        for lr, index in self._groups.items():
            lists = views if len(self._groups) == 1 else tuple([lst[i] for i in index] for lst in views)
            if self.fused:  # what torch.optim.adam.adam(fused=True) calls, minus its per-tensor step increments
                torch._fused_adam_(*lists[:4], [], lists[4], lr=lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                                   weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False)
            else:
                adam_update(*lists[:4], [], lists[4], foreach=False, fused=False, amsgrad=False,
                            beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=lr, weight_decay=0.0, eps=ADAM_EPS,
                            maximize=False)

    @torch.no_grad()
    def export_run(self, run: int, optimizer: torch.optim.Adam, names: dict[int, str]) -> None:
        """Write run `run`'s state into a single-run Adam (`names`: id(param) -> parameter name)."""
        optimizer.state.clear()
        for group in optimizer.param_groups:
            for p in group["params"]:
                k = self._index[names[id(p)]]
                step = float(self.steps[k, run])
                if step == 0:
                    continue  # torch's Adam holds no state for a parameter it never stepped
                slot = self.slots[k]
                optimizer.state[p] = {
                    "step": torch.tensor(step, dtype=torch.float32),
                    "exp_avg": _copy(slot.to_single(self.exp_avg[slot.leaf][run])),
                    "exp_avg_sq": _copy(slot.to_single(self.exp_avg_sq[slot.leaf][run])),
                }

    @torch.no_grad()
    def import_run(self, run: int, optimizer: torch.optim.Adam, names: dict[int, str]) -> None:
        """Take run `run`'s state from a single-run Adam; parameters it holds no state for restart."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                k = self._index[names[id(p)]]
                slot, state = self.slots[k], optimizer.state.get(p)
                m = slot.to_single(self.exp_avg[slot.leaf][run])
                v = slot.to_single(self.exp_avg_sq[slot.leaf][run])
                if state:
                    self.steps[k, run] = float(state["step"])
                    m.copy_(state["exp_avg"])
                    v.copy_(state["exp_avg_sq"])
                else:
                    self.steps[k, run] = 0.0
                    m.zero_()
                    v.zero_()


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.clone(memory_format=torch.contiguous_format)


class _TrainingStats:
    """Per-run sums of per-batch means [S, 4], on the device: no host sync until `read()`."""

    def __init__(self, runs: int, device: torch.device):
        self.sums = torch.zeros(runs, len(STAT_NAMES), device=device)
        self.count = 0

    def add(self, stats: torch.Tensor) -> None:
        self.sums += stats
        self.count += 1

    def read(self) -> list[dict[str, float]]:
        values = (self.sums / max(self.count, 1)).tolist()
        self.sums.zero_()
        self.count = 0
        return [dict(zip(STAT_NAMES, row)) for row in values]


class _Member(LanguageRun):
    """One run of a batch: a `LanguageRun` whose training is done by the batch. When the batch
    hands it a generation's stats, `_train` returns them (and the record's "seconds" include the
    batch's training time); otherwise it trains alone, as usual."""

    _pending: dict[str, Any] | None = None
    _pending_seconds = 0.0

    def _train(self, n: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
        if self._pending is None or n == 0:
            return super()._train(n, optimizers)
        stats, self._pending = self._pending, None
        if stats["iterations"] != n:
            raise RuntimeError(f"batched training ran {stats['iterations']} iterations, the run expected {n}")
        self.iteration += n
        return stats

    def run_generation(self) -> dict[str, Any]:
        record = super().run_generation()
        record["seconds"] += self._pending_seconds
        self._pending_seconds = 0.0
        return record


class BatchedLanguageRuns:
    """S language runs of one shape (seeds, strategies, learning rates may differ), trained together.

    Every run writes the run directory, records and checkpoints `LanguageRun` would (its own code
    does it); `run()` returns each run's records. Runs whose training diverges (nan/inf) stop
    there, as a single run would; the others go on, and `run()` then raises NonFiniteError naming
    the stopped runs.

    resume: continue every run from its directory's checkpoint (runs left at different
    generations are first brought level one by one). compile: see `BatchedGame`. tune_malloc:
    call `keep_freed_memory()` (CPU only).
    """

    def __init__(
        self,
        game_configs: Sequence[LanguageGameConfig],
        relearns: Sequence[RelearnConfig],
        run_dirs: Sequence[RunDirectory | None] | None = None,
        *,
        resume: bool = False,
        progress: bool = True,
        on_record: Callable[[int, dict[str, Any]], None] | None = None,
        compile: bool | str = False,
        tune_malloc: bool = True,
    ):
        if len(game_configs) != len(relearns) or not game_configs:
            raise ValueError("BatchedLanguageRuns: give one relearn config per game config (at least one)")
        run_dirs = [None] * len(game_configs) if run_dirs is None else list(run_dirs)
        if len(run_dirs) != len(game_configs):
            raise ValueError("BatchedLanguageRuns: give one run directory (or None) per run")
        keys = [batch_key(flat_config(g, r)) for g, r in zip(game_configs, relearns)]
        if None in keys:
            raise ValueError(f"BatchedLanguageRuns: strategies {list(UNBATCHED_STRATEGIES)} are not batched; "
                             "run them with run_language")
        for i, key in enumerate(keys):
            if key != keys[0]:
                fields = SHAPE_FIELDS + RELEARN_SHAPE_FIELDS
                differing = [f for f, a, b in zip(fields, key, keys[0]) if a != b]
                raise ValueError(f"BatchedLanguageRuns: run {i} differs from run 0 in {differing}; "
                                 "only runs of one shape can share a batch")
        self.progress = progress
        self.on_record = on_record
        self.members = [
            _Member(g, r, d, progress=False,
                    on_record=None if on_record is None else (lambda rec, i=i: on_record(i, rec)))
            for i, (g, r, d) in enumerate(zip(game_configs, relearns, run_dirs))
        ]
        if resume:
            for member in self.members:
                member.resume()
            # Runs interrupted at different generations: bring the late ones level, alone.
            level = max(m.generation for m in self.members)
            for member in self.members:
                if member.generation < level:
                    member.run(until=level)
        self.relearn = self.members[0].relearn
        if tune_malloc and self.members[0].game.device.type == "cpu":
            keep_freed_memory()
        self.game = BatchedGame([m.game for m in self.members], compile=compile)
        lrs = {slot.name: [getattr(m.config, f"lr_{slot.name.split('.')[0]}") for m in self.members]
               for slot in self.game.slots}
        self.optimizer = StackedAdam(self.game.leaves, self.game.slots, lrs)
        self._names = [{id(p): n for n, p in m.game.named_parameters()} for m in self.members]
        self.failed: dict[int, NonFiniteError] = {}
        for i in range(len(self.members)):
            self._load(i)

    @property
    def n_runs(self) -> int:
        return len(self.members)

    @property
    def generators(self) -> list[torch.Generator]:
        return [m.generator for m in self.members]

    # -- moving state between the stack and the members --------------------------------------------
    def _store(self, run: int) -> None:
        """Stack -> member `run`: weights, baseline and optimizer state (for its own code)."""
        member = self.members[run]
        self.game.store(run, member.game)
        for optimizer in member.optimizers.values():
            self.optimizer.export_run(run, optimizer, self._names[run])

    def _load(self, run: int) -> None:
        """Member `run` -> stack, after its own code changed it (forgetting, fresh optimizers, resume)."""
        member = self.members[run]
        self.game.load(run, member.game)
        for optimizer in member.optimizers.values():
            self.optimizer.import_run(run, optimizer, self._names[run])

    # -- training -----------------------------------------------------------------------------------
    def train_step(self) -> torch.Tensor:
        """One iteration of every run; returns the per-run stats [S, 4] (on the device, no sync)."""
        batch = self.game.sample(self.generators)
        loss, stats = self.game.losses(batch)
        leaves = self.game.leaves
        # A weight that met only zero inputs (e.g. max_len 1) gets a zero gradient, as in a single run.
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True, materialize_grads=True)
        self.optimizer.step(dict(zip(leaves, grads)))
        return stats

    def train(self, n_iterations: int, *, eval_every: int | None = None) -> list[dict[str, Any]]:
        """Train every run `n_iterations` iterations (as `train_iterations` trains one): every
        `eval_every` iterations each live run is evaluated by `evaluate` on its own modules and the
        record goes to its member's `_on_eval` (evaluations.jsonl). Returns per run {"iterations",
        train_* since the last evaluation, "evaluations"}."""
        stats = _TrainingStats(self.n_runs, self.game.device)
        offsets = [m.iteration for m in self.members]
        evaluations: list[list[dict[str, Any]]] = [[] for _ in self.members]
        last = stats.read()
        bar = tqdm(total=n_iterations, disable=None if self.progress else True,
                   desc=f"{self.game.template.kind} x{self.n_runs}", leave=False)
        for step in range(1, n_iterations + 1):
            stats.add(self.train_step())
            bar.update(1)
            if eval_every and step % eval_every == 0:
                last = stats.read()
                for i, member in enumerate(self.members):
                    if i in self.failed:
                        continue
                    self.game.store(i, member.game)
                    metrics = evaluate(member.game)
                    metrics.pop("messages")
                    record = {"iteration": offsets[i] + step, **last[i], **metrics}
                    evaluations[i].append(record)
                    member._on_eval(record)
        bar.close()
        if stats.count:
            last = stats.read()
        return [{"iterations": n_iterations, **last[i], "evaluations": evaluations[i]}
                for i in range(self.n_runs)]

    def run(self, until: int | None = None) -> list[list[dict[str, Any]]]:
        """Run the remaining generations of every run (or stop after generation `until` - 1)."""
        stop = self.relearn.generations if until is None else min(until, self.relearn.generations)
        for i, member in enumerate(self.members):
            if member.boundary_pending and member.generation < stop:
                # A finished run extended with more generations: its last boundary comes first.
                self._store(i)
                member._extend_finished_run()
                self._load(i)
        while any(m.generation < stop for i, m in enumerate(self.members) if i not in self.failed):
            started = time.perf_counter()
            results = self.train(self.relearn.iterations_per_generation,
                                 eval_every=self.members[0].config.eval_every or None)
            seconds = time.perf_counter() - started
            for i, member in enumerate(self.members):
                if i in self.failed:
                    continue
                self._store(i)
                member._pending, member._pending_seconds = results[i], seconds
                try:
                    member.run(until=member.generation + 1)
                except NonFiniteError as error:
                    self.failed[i] = error  # its records up to the previous generation are kept
                self._load(i)
        if self.failed:
            raise NonFiniteError("; ".join(f"run {i} (seed {self.members[i].config.seed}): {e}"
                                           for i, e in sorted(self.failed.items())))
        return [m.records for m in self.members]


def run_language_batched(
    values_list: Sequence[dict[str, Any]],
    outs: Sequence[str | None] | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    on_record: Callable[[int, dict[str, Any]], None] | None = None,
    until: int | None = None,
    launch: dict[str, Any] | None = None,
    max_batch: int | None = None,
    compile: bool | str = False,
) -> list[list[dict[str, Any]]]:
    """`run_language` for many runs: the runs that share a shape train as one batch.

    values_list[i]: run i's flat config (as for `run_language`); outs[i]: its run directory (or
    None). Runs are grouped by `batch_key` (at most `max_batch` per batch); iterated_learning runs
    go one by one through `run_language`. `on_record(i, record)` is called for run i's records.
    Every run's directory holds what `run_language` writes (config.json with `launch`, records,
    language.json, checkpoint.pt), so each can be resumed alone. Returns the records, per run.
    """
    values_list = list(values_list)
    outs = [None] * len(values_list) if outs is None else list(outs)
    if len(outs) != len(values_list):
        raise ValueError(f"run_language_batched: {len(values_list)} configs but {len(outs)} run directories")
    named = [o for o in outs if o is not None]
    if len(set(map(str, named))) != len(named):
        raise ValueError("run_language_batched: two runs share a run directory")
    configs = []
    for values in values_list:
        game_config, relearn = split_config(values)
        configs.append((game_config.validate(), relearn.validate()))
    run_dirs = [RunDirectory(o, resume=resume) if o is not None else None for o in outs]
    # config.json as run_language writes it; written once the run's own resume check has passed.
    launch_configs = []
    for (game_config, relearn), run_dir in zip(configs, run_dirs):
        saved = (run_dir.read_config() or {}) if (resume and run_dir is not None) else {}
        total = {"iterations": relearn.generations * relearn.iterations_per_generation}
        launch_configs.append({**(launch or {}), **saved, **flat_config(game_config, relearn), **total})
    groups: dict[Any, list[int]] = {}
    for i, values in enumerate(values_list):
        key = batch_key(values)
        groups.setdefault(("single", i) if key is None else key, []).append(i)
    records: list[list[dict[str, Any]] | None] = [None] * len(values_list)
    failures: list[str] = []
    for key, members in groups.items():
        chunks = [members] if max_batch is None else [members[k:k + max_batch]
                                                      for k in range(0, len(members), max_batch)]
        for chunk in chunks:
            if key[0] == "single":
                i = chunk[0]
                callback = None if on_record is None else (lambda rec, i=i: on_record(i, rec))
                try:
                    records[i] = run_language(values_list[i], outs[i], resume=resume, progress=progress,
                                              on_record=callback, until=until, launch=launch)
                except NonFiniteError as error:
                    failures.append(f"run {i}: {error}")
                continue
            runs = BatchedLanguageRuns(
                [configs[i][0] for i in chunk], [configs[i][1] for i in chunk], [run_dirs[i] for i in chunk],
                resume=resume, progress=progress, compile=compile,
                on_record=None if on_record is None else (lambda j, rec, chunk=chunk: on_record(chunk[j], rec)),
            )
            for i in chunk:
                if run_dirs[i] is not None:
                    run_dirs[i].write_config(launch_configs[i])
            try:
                for i, member_records in zip(chunk, runs.run(until)):
                    records[i] = member_records
            except NonFiniteError as error:
                for j, member in enumerate(runs.members):
                    records[chunk[j]] = member.records
                failures.append(str(error))
    if failures:
        raise NonFiniteError("; ".join(failures))
    return records  # type: ignore[return-value]


__all__ = [
    "BatchedGame",
    "BatchedLanguageRuns",
    "Slot",
    "StackedAdam",
    "StackedBatch",
    "StackedCell",
    "batch_key",
    "fast_tanh",
    "keep_freed_memory",
    "parameter_layout",
    "parse_seeds",
    "run_language_batched",
    "stacked_linear",
]
