"""Our agents as the inner "agent" modules that EGG's channel wrappers expect.

EGG splits an agent in two: the user writes a small module, a wrapper adds the channel. A sender
agent maps ``(x, aux_input)`` to the initial hidden state of the wrapper's RNN
(``RnnSenderReinforce`` / ``RnnSenderGS``); a receiver agent maps the RNN's final (or per-step)
hidden state ``(h, receiver_input, aux_input)`` to the output the loss reads
(``RnnReceiverDeterministic`` / ``RnnReceiverGS``). The adapters below are that small module,
made of *our* agents' own submodules (shared, not copied): training the EGG game trains them in
place. The EGG wrapper brings its own RNN cell, symbol embedding and output layer; our Sender's
``encoder`` and our receivers' decision heads are what is shared.

The adapters need only torch; ``egg_sender`` / ``egg_receiver`` build the EGG wrappers around
them with matching sizes and need EGG (imported lazily).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emergent_frl.agents import CELLS, ReconstructionReceiver, ReferentialReceiver, Sender

from ._egg_loader import require_egg

MODES = ("rf", "gs")  # EGG's basic_games naming: REINFORCE or Gumbel-Softmax


class SenderAgent(nn.Module):
    """``(x, aux_input) -> [B, hidden]``: our Sender's ``encoder``, the initial hidden state of the
    RNN that ``RnnSenderReinforce`` / ``RnnSenderGS`` unroll (the Sender's own first step)."""

    def __init__(self, sender: Sender):
        super().__init__()
        if not isinstance(sender, Sender):
            raise ValueError(f"sender must be an emergent_frl.agents.Sender, got {type(sender).__name__}")
        self.encoder = sender.encoder

    @property
    def hidden_size(self) -> int:
        return self.encoder.out_features

    def forward(self, x: torch.Tensor, aux_input: Any = None) -> torch.Tensor:
        return self.encoder(x)


class ReferentialReceiverAgent(nn.Module):
    """``(h, candidates [B, K, D], aux_input) -> scores [B, K]``: our ReferentialReceiver's
    ``head`` (message encoding) dotted with its ``candidate_encoder`` (EGG's discrimination
    receiver shape; wrap it in ``ReinforceWrapper`` for a sampling receiver)."""

    def __init__(self, receiver: ReferentialReceiver):
        super().__init__()
        if not isinstance(receiver, ReferentialReceiver):
            raise ValueError(
                f"receiver must be an emergent_frl.agents.ReferentialReceiver, got {type(receiver).__name__}"
            )
        self.head = receiver.head
        self.candidate_encoder = receiver.candidate_encoder

    def forward(self, h: torch.Tensor, receiver_input: torch.Tensor, aux_input: Any = None) -> torch.Tensor:
        if receiver_input is None:
            raise ValueError("receiver_input: the referential receiver needs candidates [B, K, D]")
        return torch.einsum("bh,bkh->bk", self.head(h), self.candidate_encoder(receiver_input))


class ReconstructionReceiverAgent(nn.Module):
    """``(h, receiver_input, aux_input) -> [B, sum(n_values)]``: our ReconstructionReceiver's
    ``head``, per-attribute logits (``emergent_frl.games.reconstruction_loss_for`` scores them)."""

    def __init__(self, receiver: ReconstructionReceiver):
        super().__init__()
        if not isinstance(receiver, ReconstructionReceiver):
            raise ValueError(
                f"receiver must be an emergent_frl.agents.ReconstructionReceiver, got {type(receiver).__name__}"
            )
        self.head = receiver.head
        self.n_values = receiver.n_values

    def forward(self, h: torch.Tensor, receiver_input: Any = None, aux_input: Any = None) -> torch.Tensor:
        return self.head(h)


def receiver_agent(receiver: ReferentialReceiver | ReconstructionReceiver) -> nn.Module:
    """The adapter that fits the receiver's kind."""
    if isinstance(receiver, ReferentialReceiver):
        return ReferentialReceiverAgent(receiver)
    if isinstance(receiver, ReconstructionReceiver):
        return ReconstructionReceiverAgent(receiver)
    raise ValueError(
        "receiver must be an emergent_frl.agents.ReferentialReceiver or ReconstructionReceiver, "
        f"got {type(receiver).__name__}"
    )


def cell_name(cell: nn.Module) -> str:
    """EGG's name ("rnn", "gru", "lstm") of one of our recurrent cells."""
    name = getattr(cell, "egg_name", None)
    if name is None:
        egg_cells = sorted(n for n, cls in CELLS.items() if cls.egg_name is not None)
        raise ValueError(f"cell: {type(cell).__name__} has no EGG counterpart; allowed: {egg_cells}")
    return name


def _cell_input_size(agent: nn.Module) -> int:
    return agent.cell.input_size


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: must be one of {list(MODES)} (rf = REINFORCE, gs = Gumbel-Softmax)")


def _check_embed_dim(embed_dim: int | None, default: int) -> int:
    if embed_dim is None:
        return default
    if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
        raise ValueError(f"embed_dim={embed_dim!r}: must be an integer >= 1 or None")
    return embed_dim


def egg_sender(
    sender: Sender,
    *,
    mode: str = "rf",
    embed_dim: int | None = None,
    temperature: float | None = None,
    trainable_temperature: bool = False,
    straight_through: bool | None = None,
) -> nn.Module:
    """EGG's ``RnnSenderReinforce`` (mode "rf") or ``RnnSenderGS`` ("gs") around ``SenderAgent``.

    Sizes come from our Sender: vocab_size (EGG reads symbol 0 as EOS, whatever ``sender.eos``
    says), max_len, hidden size, cell kind; ``embed_dim`` defaults to our cell's input size.
    Messages have max_len + 1 positions (EGG appends an EOS). In "gs" mode ``temperature`` and
    ``straight_through`` default to our Sender's. Needs EGG.
    """
    _check_mode(mode)
    if not isinstance(sender, Sender):
        raise ValueError(f"sender must be an emergent_frl.agents.Sender, got {type(sender).__name__}")
    embed_dim = _check_embed_dim(embed_dim, _cell_input_size(sender))
    core = require_egg()
    agent = SenderAgent(sender)
    common = dict(vocab_size=sender.vocab_size, embed_dim=embed_dim, hidden_size=agent.hidden_size,
                  max_len=sender.max_len, cell=cell_name(sender.cell))
    if mode == "rf":
        return core.RnnSenderReinforce(agent, **common)
    return core.RnnSenderGS(
        agent,
        temperature=sender.temperature if temperature is None else temperature,
        trainable_temperature=trainable_temperature,
        straight_through=sender.straight_through if straight_through is None else straight_through,
        **common,
    )


def egg_receiver(
    receiver: ReferentialReceiver | ReconstructionReceiver,
    *,
    mode: str = "rf",
    embed_dim: int | None = None,
    stochastic: bool = False,
) -> nn.Module:
    """EGG's ``RnnReceiverDeterministic`` (mode "rf") or ``RnnReceiverGS`` ("gs") around the
    adapter of our receiver, with its vocab_size, hidden size and cell kind; ``embed_dim``
    defaults to our cell's input size. ``stochastic=True`` (rf, referential only) samples the
    chosen candidate and is trained by REINFORCE, as our ReferentialReceiver is:
    ``RnnReceiverReinforce(ReinforceWrapper(adapter))``. Needs EGG."""
    _check_mode(mode)
    agent = receiver_agent(receiver)
    embed_dim = _check_embed_dim(embed_dim, _cell_input_size(receiver))
    if stochastic and (mode != "rf" or not isinstance(receiver, ReferentialReceiver)):
        raise ValueError("stochastic=True needs mode='rf' and a ReferentialReceiver (a policy over candidates)")
    core = require_egg()
    common = dict(vocab_size=receiver.vocab_size, embed_dim=embed_dim, hidden_size=receiver.hidden_size,
                  cell=cell_name(receiver.cell))
    if stochastic:
        return core.RnnReceiverReinforce(core.ReinforceWrapper(agent), **common)
    if mode == "rf":
        return core.RnnReceiverDeterministic(agent, **common)
    return core.RnnReceiverGS(agent, **common)


__all__ = [
    "MODES",
    "ReconstructionReceiverAgent",
    "ReferentialReceiverAgent",
    "SenderAgent",
    "cell_name",
    "egg_receiver",
    "egg_sender",
    "receiver_agent",
]
