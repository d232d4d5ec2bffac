"""What a speaker says and how sure it is, per position: the logits behind each symbol.

`Sender` returns messages and summed log-probabilities; the imitation experiment needs the whole
distribution at every position (the NLL of a target symbol, the per-position entropy). Its head
(`sender.head`, Linear(hidden -> vocab), called once per position) is read with a forward hook,
a public torch mechanism, so the sender itself is used exactly as the games use it:

- "greedy" feedback (the paper's SenderImitation): the sender speaks greedily (eval mode) and its
  own argmax symbol is fed back; the logits are those it produced while speaking.
- "teacher" feedback: the target symbols are fed back (`sender.log_prob_of`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from emergent_frl.agents import Sender

FEEDBACKS = ("greedy", "teacher")


@contextlib.contextmanager
def head_outputs(sender: Sender) -> Iterator[list[torch.Tensor]]:
    """The outputs of `sender.head` during the block, one [B, V] tensor per call."""
    seen: list[torch.Tensor] = []
    handle = sender.head.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        yield seen
    finally:
        handle.remove()


@contextlib.contextmanager
def greedy_mode(sender: Sender) -> Iterator[None]:
    """The sender in eval mode (greedy symbols) for the block, its own mode restored after."""
    was_training = sender.training
    sender.eval()
    try:
        yield
    finally:
        sender.train(was_training)


def _stacked(seen: list[torch.Tensor], sender: Sender, batch: int) -> torch.Tensor:
    if len(seen) != sender.max_len or any(t.shape != (batch, sender.vocab_size) for t in seen):
        raise RuntimeError(
            f"the sender's head ran {len(seen)} times with shapes {[tuple(t.shape) for t in seen][:3]}; "
            f"the imitation readout expects one [batch, vocab] call per position ({sender.max_len})")
    return torch.stack(seen, 1)


def speak_with_logits(sender: Sender, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(greedy message Long [B, T], logits [B, T, V] it was spoken from); differentiable in the
    logits when grad is enabled."""
    with greedy_mode(sender), head_outputs(sender) as seen:
        message = sender(x).message
    return message, _stacked(seen, sender, x.shape[0])


def teacher_logits(sender: Sender, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] with the target symbols fed back (`sender.log_prob_of`)."""
    with head_outputs(sender) as seen:
        sender.log_prob_of(x, targets)
    return _stacked(seen, sender, x.shape[0])


def imitation_loss(sender: Sender, x: torch.Tensor, targets: torch.Tensor, feedback: str) -> torch.Tensor:
    """Mean NLL per symbol of `targets` [B, T] (the paper's NLLLoss(reduction='mean') over B x T).

    "teacher" uses `log_prob_of` directly: its summed log-probability over T positions, averaged."""
    if feedback == "teacher":
        return -sender.log_prob_of(x, targets).mean() / sender.max_len
    if feedback != "greedy":
        raise ValueError(f"feedback={feedback!r}: must be one of {list(FEEDBACKS)}")
    _, logits = speak_with_logits(sender, x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def per_object(sender: Sender, x: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Greedy readout per object: exact Bool [B] (whole message right), nll [B] (mean over
    positions, greedy feedback), entropy [B, T] (of the policy at each position)."""
    message, logits = speak_with_logits(sender, x)
    log_p = F.log_softmax(logits, -1)
    nll = -log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1).mean(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return {"exact": exact_match(message, targets), "nll": nll, "entropy": entropy}


def exact_match(message: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Bool [B]: every symbol of the message equals the target's."""
    return (message == targets).all(-1)


def summarize(readout: dict[str, torch.Tensor], objects: torch.Tensor) -> dict[str, float | list[float]] | None:
    """Mean exact match, loss (mean NLL per symbol) and per-position entropy over `objects`
    (indices into the readout); None for an empty half."""
    if objects.numel() == 0:
        return None
    return {"exact_match": float(readout["exact"][objects].float().mean()),
            "loss": float(readout["nll"][objects].mean()),
            "entropy": [float(v) for v in readout["entropy"][objects].mean(0)]}
