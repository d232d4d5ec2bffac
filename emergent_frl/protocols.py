"""What a sender and a receiver must offer to play our games, written down once.

The games, the run layer, evaluation and the strategies use agents only through these names, so
a researcher's own modules (any `nn.Module` with them) train everywhere ours do. The built-in
`emergent_frl.agents.Sender`, `ReferentialReceiver` and `ReconstructionReceiver` meet them.

    sender(x, generator=None) -> SenderOutput       x: Float [B, input_size] encoded objects
    receiver(symbols, candidates, length=None, generator=None) -> ReceiverOutput   (referential)
    receiver(symbols, length=None, generator=None) -> ReceiverOutput               (reconstruction)

`symbols` is the sender's Float [B, max_len, vocab_size] one-hots, `length` the Long [B] message
lengths when the sender has `eos` (else None). In train mode agents sample with `generator`; in
eval mode they are greedy. Iterated learning also needs `sender.log_prob_of(x, messages)`.

Optional, for speed: a sender whose symbols are exactly the one-hots of its message and carry no
gradient says so with `SenderOutput(discrete=True)`; a receiver with `reads_message = True` is
then also given `message=` (Long [B, max_len]) as a keyword. Both default to off.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from emergent_frl.agents import ReceiverOutput, SenderOutput

GUIDE = "docs/own_agents.md"


@runtime_checkable
class SenderAgent(Protocol):
    """A speaker: object encodings in, messages out."""

    vocab_size: int
    max_len: int
    eos: bool  # symbol 0 ends a message (EGG); False: every message has max_len symbols
    channel: str  # "reinforce" or "gumbel"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> SenderOutput: ...

    def parameters(self): ...

    def train(self, mode: bool = True): ...

    def eval(self): ...


@runtime_checkable
class ImitatingSender(SenderAgent, Protocol):
    """A sender that can be taught a lexicon (iterated learning's imitation phase)."""

    def log_prob_of(self, x: torch.Tensor, messages: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ReceiverAgent(Protocol):
    """A listener: message symbols (and, in the referential game, candidates) in, a choice out."""

    def __call__(self, symbols: torch.Tensor, *inputs, generator: torch.Generator | None = None
                 ) -> ReceiverOutput: ...

    def parameters(self): ...

    def train(self, mode: bool = True): ...

    def eval(self): ...


def _members(protocol: type) -> list[str]:
    """The names a protocol asks for, attributes and methods, in declaration order."""
    names: list[str] = []
    for klass in reversed(protocol.__mro__):
        if klass in (object, Protocol) or not getattr(klass, "_is_protocol", False):
            continue
        for name in [*getattr(klass, "__annotations__", {}), *vars(klass)]:
            if not name.startswith("_") and name not in names:
                names.append(name)
    return [*names, "__call__"]


def missing(agent: object, protocol: type) -> list[str]:
    """The names of `protocol` that `agent` lacks."""
    return [name for name in _members(protocol) if not hasattr(agent, name)]


def check_agent(agent: object, protocol: type, role: str) -> None:
    """ValueError naming the first thing `agent` lacks to serve as `role`."""
    if not isinstance(agent, torch.nn.Module):
        raise ValueError(f"the {role} is a {type(agent).__name__}, not a torch.nn.Module; see {GUIDE}")
    lacking = missing(agent, protocol)
    if lacking:
        raise ValueError(f"the {role} ({type(agent).__name__}) has no `{lacking[0]}`, which "
                         f"{protocol.__name__} requires ({', '.join(_members(protocol))}); see {GUIDE}")


def check_pair(sender: object, receiver: object, *, imitation: bool = False) -> None:
    """Check a (sender, receiver) pair before any work; `imitation`: iterated learning will teach
    the sender, so it needs `log_prob_of`."""
    check_agent(sender, ImitatingSender if imitation else SenderAgent, "sender")
    check_agent(receiver, ReceiverAgent, "receiver")
