"""Speaker (Sender) and listener (Receivers) for attribute-value language games.

The shapes follow the paper's reference agents (Li & Bowling 2019, Zhou et al. 2022):
- `Sender`: Linear(object -> hidden) is the RNN's initial hidden state (cell state 0); the first
  input is a start token (zeros, or a learned vector); each step a Linear(hidden -> vocab) head gives
  logits, a symbol is chosen and its one-hot vector is fed back as the next input.
- `ReferentialReceiver`: an RNN reads the message from a zero state; Linear(hidden -> hidden) of the
  final state is dotted with Linear(object -> hidden) of each candidate; the scores are a policy
  over candidates.
- `ReconstructionReceiver`: the same reader with a Linear(hidden -> sum(n_values)) head giving
  per-attribute logits.

Messages travel as one-hot vectors [B, T, V]: hard one-hots on the REINFORCE channel, straight-
through (or soft) Gumbel-Softmax samples on the "gumbel" channel, so one receiver serves both.

Every agent samples in training mode and is greedy in eval mode, decided by its *own* `.training`
flag: a frozen eval-mode speaker can teach a fresh train-mode listener.

Every parameter lives in a module that re-initialises it with `reset_parameters()` (nn.Linear,
RNN cells, `StartToken`), the contract forgetting operators rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emergent_frl.cells import CELLS, RecurrentCell, State, make_cell
from emergent_frl.noise import Randomness, exponential_noise, one_hot, sample_categorical

CHANNELS = ("reinforce", "gumbel")
__all__ = [
    "CELLS", "CHANNELS", "ReceiverOutput", "ReconstructionReceiver", "ReferentialReceiver", "Sender", "SenderOutput",
    "StartToken", "categorical_entropy", "exponential_noise", "find_lengths", "make_cell", "one_hot", "sample_categorical",
]


def find_lengths(message: torch.Tensor) -> torch.Tensor:
    """EGG's convention: position of the first 0 (EOS) plus one, or T when there is no 0."""
    max_len = message.shape[1]
    is_eos = message == 0
    seen_eos = is_eos.cumsum(1) > 0
    # Positions before the first EOS, plus the EOS itself.
    return ((~seen_eos).sum(1) + is_eos.any(1).long()).clamp(max=max_len)


def categorical_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    return -(log_probs.exp() * log_probs).sum(-1)


class StartToken(nn.Module):
    """First input of the sender's RNN: zeros (the paper) or a learned vector (EGG's sos_embedding)."""

    def __init__(self, size: int, learned: bool = False):
        super().__init__()
        self.size = size
        self.learned = learned
        if learned:
            self.weight = nn.Parameter(torch.empty(size))
            self.reset_parameters()
        else:
            self.register_buffer("weight", torch.zeros(size), persistent=False)

    def reset_parameters(self) -> None:
        if self.learned:
            nn.init.normal_(self.weight, std=1.0 / self.size**0.5)

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.weight.unsqueeze(0).expand(batch_size, -1)

    def extra_repr(self) -> str:
        return f"size={self.size}, learned={self.learned}"


@dataclass
class SenderOutput:
    """One batch of messages.

    message: Long [B, T]; with EOS, symbols after the first 0 are zeroed.
    symbols: Float [B, T, V] one-hot vectors the receiver reads (differentiable on "gumbel").
    log_prob: [B] log-probability of the message (sum over the positions that count).
    entropy: [B] entropy of the per-step policies, summed over the positions that count
        (the reference code's sum of -p log p).
    length: Long [B] positions that count (T in fixed-length mode).
    discrete: the sender vouches that `symbols` are exactly the one-hots of `message` and carry no
        gradient (the REINFORCE channel, or greedy eval), so a receiver may read `message` instead.
        False (the default, always safe) for relaxed or differentiable symbols.
    """

    message: torch.Tensor
    symbols: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    length: torch.Tensor
    discrete: bool = False


class Sender(nn.Module):
    """Object (one-hot) -> message of `max_len` symbols from a vocabulary of `vocab_size`.

    Submodules: `encoder` (object -> initial hidden), `start` (first input), `embedding` (symbol
    one-hot -> cell input; None feeds the one-hot itself, as the paper does), `cell`, `head`.
    channel "reinforce": training samples, eval is greedy; "gumbel": training emits Gumbel-Softmax
    samples at `temperature` (straight-through hard one-hots by default), eval is greedy.
    eos=True: symbol 0 ends the message (EGG's convention); otherwise every message has max_len
    symbols and 0 is an ordinary symbol (the paper's setting).
    """

    def __init__(
        self,
        input_size: int,
        vocab_size: int,
        max_len: int,
        hidden_size: int = 100,
        *,
        cell: str = "lstm",
        embed_size: int | None = None,
        eos: bool = False,
        channel: str = "reinforce",
        temperature: float = 1.0,
        straight_through: bool = True,
        learned_start: bool = False,
    ):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size={vocab_size}: must be >= 2")
        if max_len < 1:
            raise ValueError(f"max_len={max_len}: must be >= 1")
        if channel not in CHANNELS:
            raise ValueError(f"channel={channel!r}: must be one of {list(CHANNELS)}")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: must be > 0")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.eos = eos
        self.channel = channel
        self.temperature = temperature
        self.straight_through = straight_through
        cell_input = vocab_size if embed_size is None else embed_size
        self.encoder = nn.Linear(input_size, hidden_size)
        self.start = StartToken(cell_input, learned=learned_start)
        self.embedding = None if embed_size is None else nn.Linear(vocab_size, embed_size, bias=False)
        self.cell: RecurrentCell = make_cell(cell, cell_input, hidden_size)
        self.head = nn.Linear(hidden_size, vocab_size)

    def _embed(self, one_hot_symbols: torch.Tensor) -> torch.Tensor:
        return one_hot_symbols if self.embedding is None else self.embedding(one_hot_symbols)

    def _first_step(self, x: torch.Tensor) -> State:
        """The first cell step from h0 = encoder(x) (c0 = 0) and the start token. A zero start
        token is a zero input (its product is skipped); when the object code is narrower than the
        hidden state, W_hh @ h0 is formed as [W_hh W_enc] x + W_hh b_enc (matrix-chain order)."""
        start = self.start(x.shape[0]) if self.start.learned else None
        cell, encoder = self.cell, self.encoder
        if cell.chains_first_step and encoder.in_features < encoder.out_features and x.dim() == 2:
            # x @ (W_hh W_enc)^T with the product formed transposed ([in, gates], contiguous), from
            # a contiguous W_enc^T: both narrow gradients then take the order CPU GEMMs run fast
            # (`cells.narrow_linear`; W_enc's as [in, gates] @ W_hh, 0.7 against 0.4 ms at S=16)
            encoder_t = encoder.weight.t().contiguous()
            chained = torch.addmm(cell.weight_hh @ encoder.bias, x, encoder_t @ cell.weight_hh.t())
            return cell(start, None, hidden_product=chained)
        return cell(start, (encoder(x), None))

    def _choose(self, logits: torch.Tensor, generator: Randomness):
        """(symbol Long [B], one-hot-like Float [B, V]) for one step."""
        if not self.training:
            symbol = logits.argmax(-1)
            return symbol, one_hot(symbol, self.vocab_size, logits.dtype)
        if self.channel == "reinforce":
            symbol = sample_categorical(logits, generator)
            return symbol, one_hot(symbol, self.vocab_size, logits.dtype)
        gumbel = -exponential_noise(logits, generator).log()
        soft = F.softmax((logits + gumbel) / self.temperature, dim=-1)
        symbol = soft.argmax(-1)
        if not self.straight_through:
            return symbol, soft
        hard = one_hot(symbol, self.vocab_size, soft.dtype)
        return symbol, hard + soft - soft.detach()

    def forward(self, x: torch.Tensor, generator: Randomness = None) -> SenderOutput:
        symbols, one_hots, log_probs, entropies = [], [], [], []
        state = None
        for _ in range(self.max_len):
            state = self._first_step(x) if state is None else self.cell(inputs, state)
            logits = self.head(state[0])
            log_p = F.log_softmax(logits, dim=-1)
            symbol, symbol_vector = self._choose(logits, generator)
            symbols.append(symbol)
            one_hots.append(symbol_vector)
            log_probs.append(log_p.gather(-1, symbol.unsqueeze(-1)).squeeze(-1))
            entropies.append(categorical_entropy(log_p))
            inputs = self._embed(symbol_vector)
        message = torch.stack(symbols, 1)
        return self._finish(message, torch.stack(one_hots, 1), torch.stack(log_probs, 1),
                            torch.stack(entropies, 1))

    def _finish(self, message, one_hots, log_probs, entropies) -> SenderOutput:
        """Mask what follows EOS (eos mode) and sum the per-step terms that count."""
        discrete = self.channel == "reinforce" or not self.training  # hard one-hots, no gradient
        if not self.eos:
            length = torch.full((message.shape[0],), self.max_len, dtype=torch.long,
                                device=message.device)
            return SenderOutput(message, one_hots, log_probs.sum(1), entropies.sum(1), length, discrete)
        length = find_lengths(message)
        keep = torch.arange(self.max_len, device=message.device).unsqueeze(0) < length.unsqueeze(1)
        return SenderOutput(
            message=message * keep,
            symbols=one_hots * keep.unsqueeze(-1),
            log_prob=(log_probs * keep).sum(1),
            entropy=(entropies * keep).sum(1),
            length=length,
            discrete=discrete,
        )

    def log_prob_of(self, x: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probability [B] of given messages (Long [B, T]); for imitation.

        With EOS, positions after the first 0 do not count, as when the sender speaks.
        """
        if messages.shape[1] != self.max_len:
            raise ValueError(
                f"messages: expected {self.max_len} symbols per message, got shape "
                f"{tuple(messages.shape)}"
            )
        messages = messages.long()
        log_probs = []
        state = None
        for t in range(self.max_len):
            state = self._first_step(x) if state is None else self.cell(inputs, state)
            log_p = F.log_softmax(self.head(state[0]), dim=-1)
            log_probs.append(log_p.gather(1, messages[:, t : t + 1]).squeeze(1))
            inputs = self._embed(one_hot(messages[:, t], self.vocab_size, log_p.dtype))
        log_probs = torch.stack(log_probs, 1)
        if self.eos:
            keep = torch.arange(self.max_len, device=x.device).unsqueeze(0) < find_lengths(
                messages
            ).unsqueeze(1)
            log_probs = log_probs * keep
        return log_probs.sum(1)


@dataclass
class ReceiverOutput:
    """logits: referential [B, K] scores / reconstruction [B, sum(n_values)];
    choice: referential chosen candidate [B] (sampled in training, argmax in eval) /
    reconstruction argmax per attribute [B, n_attributes];
    log_prob, entropy: [B] of the choice policy (zeros for the deterministic reconstruction head).
    """

    logits: torch.Tensor
    choice: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor


class _MessageReader(nn.Module):
    """An RNN that reads one-hot message vectors from a zero state up to each message's length.

    `reads_message`: the game hands it the message's indices too when the sender vouches for them
    (`SenderOutput.discrete`). From the zero state, the first step's state (and its product with
    W_hh for the second step) depends on the first symbol alone, so it is computed once per
    vocabulary entry and looked up: V rows instead of B. In the paper's game (V=8, B=100, two
    symbols) this removes the listener's two largest matrix products.
    """

    reads_message = True

    def __init__(self, vocab_size: int, hidden_size: int, cell: str, embed_size: int | None):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size={vocab_size}: must be >= 2")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.embedding = None if embed_size is None else nn.Linear(vocab_size, embed_size, bias=False)
        self.cell: RecurrentCell = make_cell(cell, vocab_size if embed_size is None else embed_size, hidden_size)

    def read(self, symbols: torch.Tensor, length: torch.Tensor | None = None,
             message: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden state [B, H] after the first `length` symbols of each message (every
        message has at least one). The zero initial state is None: its products are skipped.
        `message`: Long [B, T], the indices `symbols` are exact one-hots of (see the class)."""
        inputs = symbols if self.embedding is None else self.embedding(symbols)
        n_steps = symbols.shape[1]
        if message is not None and self.vocab_size < symbols.shape[0]:
            state, product = self._first_step_by_symbol(message[:, 0], symbols.dtype, n_steps > 1)
        else:
            state, product = self.cell(inputs[:, 0], None), None
        for t in range(1, n_steps):
            new = self.cell(inputs[:, t], state, hidden_product=product)
            product = None
            if length is None:
                state = new
                continue
            active = (length > t).unsqueeze(-1)
            state = tuple(None if s is None else torch.where(active, n, s) for n, s in zip(new, state))
        return state[0]

    def _first_step_by_symbol(self, first: torch.Tensor, dtype: torch.dtype, with_product: bool):
        """(state, W_hh h or None) after the first symbols `first` (Long [B]), looked up in the
        first step taken over the whole vocabulary."""
        vocabulary = torch.eye(self.vocab_size, dtype=dtype, device=first.device)
        h, c = self.cell(vocabulary if self.embedding is None else self.embedding(vocabulary), None)
        product = self.cell.hidden_product_of(h)[first] if with_product else None
        # one lookup per table, not one of their concatenation: its gradient would be a [B, 6H] copy
        return (h[first], None if c is None else c[first]), product


class ReferentialReceiver(_MessageReader):
    """Message + K candidate objects -> a policy over the candidates (dot-product scores).

    Submodules: `embedding` (optional), `cell`, `head` (message encoding), `candidate_encoder`.
    `deterministic`: always choose the best-scoring candidate and draw nothing (EGG's
    deterministic receiver, trained by the cross-entropy of its scores); otherwise the choice is
    sampled in training (the paper's receiver, trained by REINFORCE). `message_head`: a Linear
    layer on the RNN's final state before the scores (the paper's); without it (`nn.Identity`,
    EGG's discrimination receiver) the state itself is dotted with the candidates' encodings.
    """

    def __init__(
        self,
        input_size: int,
        vocab_size: int,
        hidden_size: int = 100,
        *,
        cell: str = "lstm",
        embed_size: int | None = None,
        deterministic: bool = False,
        message_head: bool = True,
    ):
        super().__init__(vocab_size, hidden_size, cell, embed_size)
        self.deterministic = deterministic
        self.head = nn.Linear(hidden_size, hidden_size) if message_head else nn.Identity()
        self.candidate_encoder = nn.Linear(input_size, hidden_size)

    def forward(
        self,
        symbols: torch.Tensor,
        candidates: torch.Tensor,
        length: torch.Tensor | None = None,
        generator: Randomness = None,
        *,
        message: torch.Tensor | None = None,
    ) -> ReceiverOutput:
        encoded = self.head(self.read(symbols, length, message))  # [B, H]
        # (W_c k + b_c) . m computed as k . (W_c^T m) + b_c . m: the same sum without encoding
        # every candidate ([B, K, H]).
        encoder = self.candidate_encoder
        projected = encoded @ encoder.weight  # [B, D]
        logits = (candidates * projected.unsqueeze(-2)).sum(-1) + (encoded * encoder.bias).sum(-1, keepdim=True)
        log_p = F.log_softmax(logits, dim=-1)
        sample = self.training and not self.deterministic
        choice = sample_categorical(logits, generator) if sample else logits.argmax(-1)
        return ReceiverOutput(
            logits=logits,
            choice=choice,
            log_prob=log_p.gather(1, choice.unsqueeze(1)).squeeze(1),
            entropy=categorical_entropy(log_p),
        )


class ReconstructionReceiver(_MessageReader):
    """Message -> per-attribute logits (concatenated blocks of n_values[i] logits).

    Submodules: `embedding` (optional), `cell`, `head`. Deterministic: trained by backprop through
    the loss (cross-entropy per attribute), so its log_prob and entropy are zeros.
    """

    def __init__(
        self,
        n_values: Sequence[int],
        vocab_size: int,
        hidden_size: int = 128,
        *,
        cell: str = "lstm",
        embed_size: int | None = None,
    ):
        super().__init__(vocab_size, hidden_size, cell, embed_size)
        self.n_values = tuple(n_values)
        self.head = nn.Linear(hidden_size, sum(self.n_values))

    def forward(
        self,
        symbols: torch.Tensor,
        length: torch.Tensor | None = None,
        generator: Randomness = None,
        *,
        message: torch.Tensor | None = None,
    ) -> ReceiverOutput:
        logits = self.head(self.read(symbols, length, message))
        blocks = torch.split(logits, list(self.n_values), dim=-1)
        choice = torch.stack([block.argmax(-1) for block in blocks], dim=-1)
        zeros = logits.new_zeros(logits.shape[0])
        return ReceiverOutput(logits=logits, choice=choice, log_prob=zeros, entropy=zeros)
