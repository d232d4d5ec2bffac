"""Imitation (iterated learning's learning phase) and the speaker's lexicon.

Ren et al. (2020): each generation a *new* speaker learns, by cross-entropy, the messages the
previous speaker uses for the training objects; only that data carries the language across
generations. The same routine measures how faithfully a speaker copies a language.
"""

from __future__ import annotations

import torch

from emergent_frl.agents import Sender
from emergent_frl.objects import ObjectSpace


@torch.no_grad()
def lexicon(sender: Sender, space: ObjectSpace, objects: torch.Tensor) -> torch.Tensor:
    """Greedy messages Long [N, max_len] of `sender` for the object indices (mode restored)."""
    was_training = sender.training
    sender.eval()
    try:
        device = next(sender.parameters()).device
        return sender(space.encode_index(objects.to(device))).message
    finally:
        sender.train(was_training)


@torch.no_grad()
def lexicon_accuracy(sender: Sender, space: ObjectSpace, objects: torch.Tensor,
                     messages: torch.Tensor) -> float:
    """Fraction of objects whose greedy message equals the target message exactly."""
    spoken = lexicon(sender, space, objects)
    return float((spoken == messages.to(spoken.device)).all(1).float().mean())


def imitate(
    sender: Sender,
    space: ObjectSpace,
    objects: torch.Tensor,
    messages: torch.Tensor,
    *,
    iterations: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train `sender` to produce `messages` for `objects` (teacher-forced cross-entropy, Adam).

    Batches of `batch_size` (object, message) pairs are drawn with replacement from `generator`.
    Returns the final mean loss and the exact-match accuracy on the whole lexicon.
    """
    if iterations < 0:
        raise ValueError(f"imitation_iterations={iterations}: must be >= 0")
    device = next(sender.parameters()).device
    objects = objects.to(device)
    messages = messages.to(device)
    inputs = space.encode_index(objects)
    optimizer = torch.optim.Adam(sender.parameters(), lr=lr)
    was_training = sender.training
    sender.train()
    loss = torch.zeros((), device=device)
    for _ in range(iterations):
        pick = torch.randint(len(objects), (batch_size,), generator=generator, device=generator.device)
        pick = pick.to(device)
        loss = -sender.log_prob_of(inputs[pick], messages[pick]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sender.train(was_training)
    return {
        "imitation_loss": float(loss.detach()),
        "imitation_accuracy": lexicon_accuracy(sender, space, objects, messages),
    }
