"""Imitation (iterated learning's learning phase) and the speaker's lexicon.

Ren et al. (2020): each generation a *new* speaker learns, by cross-entropy, the messages the
previous speaker uses for the training objects; only that data carries the language across
generations. The same routine measures how faithfully a speaker copies a language.

Many runs' imitations (a batch of seeds at one boundary) train as one computation
(`imitate_together`): the speakers' own `log_prob_of` under vmap over their stacked parameters,
as the batched engine trains games, instead of one run after another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from emergent_frl.agents import Sender
from emergent_frl.compiling import MaybeCompiled
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


def _draw_rows(n_objects: int, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
    """One imitation batch's rows, drawn with replacement from `generator` (on its device)."""
    return torch.randint(n_objects, (batch_size,), generator=generator, device=generator.device).to(device)


def _result(loss: torch.Tensor, sender: Sender, space: ObjectSpace, objects: torch.Tensor,
            messages: torch.Tensor) -> dict[str, float]:
    """An imitation's record fields: its last batch's loss and its exact-match lexicon accuracy."""
    return {"imitation_loss": float(loss.detach()),
            "imitation_accuracy": lexicon_accuracy(sender, space, objects, messages)}


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
        pick = _draw_rows(len(objects), batch_size, generator, device)
        loss = -sender.log_prob_of(inputs[pick], messages[pick]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    sender.train(was_training)
    return _result(loss, sender, space, objects, messages)


@dataclass
class Imitation:
    """One new speaker's imitation of its predecessor's lexicon (the arguments of `imitate`), as
    work a trainer carries out at a boundary: alone (`run`), or together with other runs'
    (`imitate_together`). `fields` holds the result (imitation_loss, imitation_accuracy)."""

    sender: nn.Module
    space: ObjectSpace
    objects: torch.Tensor
    messages: torch.Tensor
    iterations: int
    batch_size: int
    lr: float
    generator: torch.Generator
    fields: dict[str, float] = field(default_factory=dict)

    def run(self) -> dict[str, float]:
        self.fields = imitate(self.sender, self.space, self.objects, self.messages, iterations=self.iterations,
                              batch_size=self.batch_size, lr=self.lr, generator=self.generator)
        return self.fields


class _LogProbOf(nn.Module):
    """A sender's `log_prob_of` as a forward, so that `functional_call` can run it."""

    def __init__(self, sender: nn.Module):
        super().__init__()
        self.sender = sender

    def forward(self, inputs: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        return self.sender.log_prob_of(inputs, messages)


def _signature(work: Imitation) -> tuple[Any, ...]:
    """What imitations must share to train as one computation."""
    sender = work.sender
    return (type(sender), tuple((n, tuple(p.shape)) for n, p in sender.named_parameters()),
            tuple((n, tuple(b.shape), b.dtype) for n, b in sender.named_buffers()), work.iterations,
            work.batch_size, work.lr, next(sender.parameters()).device)


def imitate_together(imitations: Sequence[Imitation], compile: bool | str = False) -> None:
    """Carry out every imitation, those of one shape as one computation (`JointImitation`)."""
    JointImitation(compile)(imitations)


def _run_loss(template: _LogProbOf):
    """One run's loss: the mean negative log-probability of its batch's messages, by the
    sender's own `log_prob_of` on that run's parameters."""
    def loss(params, buffers, inputs, messages):
        return -functional_call(template, (params, buffers), (inputs, messages)).mean()
    return loss


def _vmapped_losses(template: _LogProbOf):
    """(params, buffers, inputs, messages), each stacked over runs -> each run's loss [S]."""
    return vmap(_run_loss(template))


def _vmapped_gradients_and_losses(template: _LogProbOf):
    """As `_vmapped_losses`, with each run's gradients ({name: [S, ...]}) first, in the same graph
    (`torch.func.grad_and_value`), as the compiled training step takes them."""
    return vmap(grad_and_value(_run_loss(template)))


class JointImitation:
    """Teaches many runs' new speakers as one computation: each imitation's `fields` are set as
    `Imitation.run` sets them, and each speaker ends as `imitate` alone would leave it, to float
    rounding. Each run draws its batches from its own generator in `imitate`'s order, and one Adam
    over the stacked parameters is one Adam per speaker (Adam is elementwise). Speakers whose
    modules vmap cannot batch are taught one by one.

    `compile` (see `emergent_frl.compiling`): the step (losses and gradients as one graph) under
    torch.compile, kept from one boundary to the next for the same first speaker, as a batch's
    trainer keeps it."""

    def __init__(self, compile: bool | str = False):
        self.compile = compile
        self._steps: dict[int, tuple[_LogProbOf, MaybeCompiled]] = {}

    def __call__(self, imitations: Sequence[Imitation]) -> None:
        groups: dict[tuple[Any, ...], list[Imitation]] = {}
        for work in imitations:
            groups.setdefault(_signature(work), []).append(work)
        for group in groups.values():
            if len(group) == 1 or group[0].iterations == 0 or not self._teach(group):
                for work in group:
                    work.run()

    def _step_for(self, sender: nn.Module) -> tuple[_LogProbOf, MaybeCompiled]:
        """The template and step for groups led by `sender` (the same speaker object at every
        boundary of a batch, so a compiled step is compiled once)."""
        template, step = self._steps.get(id(sender), (None, None))
        if template is None or template.sender is not sender:
            template = _LogProbOf(sender)
            step = MaybeCompiled(_vmapped_gradients_and_losses(template), self.compile)
            self._steps[id(sender)] = template, step
        return template, step

    def _teach(self, group: Sequence[Imitation]) -> bool:
        """`imitate` for a group of one shape, as one computation; False (nothing drawn or
        changed) when the speakers cannot run under vmap."""
        first = group[0]
        senders = [work.sender for work in group]
        device = next(first.sender.parameters()).device
        inputs = [work.space.encode_index(work.objects.to(device)) for work in group]
        messages = [work.messages.to(device) for work in group]
        template, step = self._step_for(first.sender)
        wrappers = [template, *(_LogProbOf(sender) for sender in senders[1:])]
        params, buffers = stack_module_state(wrappers)
        forward = _vmapped_losses(template)
        modes = [sender.training for sender in senders]
        for sender in senders:
            sender.train()
        try:
            try:  # a first forward on fixed rows, before any draw: can these modules run under vmap?
                with torch.no_grad():
                    rows = torch.arange(first.batch_size, device=device)
                    forward(params, {n: b.clone() for n, b in buffers.items()},
                            torch.stack([x[rows % len(x)] for x in inputs]),
                            torch.stack([m[rows % len(m)] for m in messages]))
            except RuntimeError:
                return False
            optimizer = torch.optim.Adam(params.values(), lr=first.lr)
            eager_losses = None if step.is_compiled else forward
            loss = torch.zeros(len(group), device=device)
            for _ in range(first.iterations):
                picks = [_draw_rows(len(work.objects), work.batch_size, work.generator, device) for work in group]
                batch = (torch.stack([x[p] for x, p in zip(inputs, picks)]),
                         torch.stack([m[p] for m, p in zip(messages, picks)]))
                optimizer.zero_grad(set_to_none=True)
                if eager_losses is not None:  # eager, autograd runs faster than the functional transform
                    loss = eager_losses(params, buffers, *batch)
                    loss.sum().backward()
                else:
                    grads, loss = step({n: p.detach() for n, p in params.items()}, buffers, *batch)
                    for name, p in params.items():
                        p.grad = grads[name]
                optimizer.step()
            with torch.no_grad():
                for i, wrapper in enumerate(wrappers):
                    for name, tensor in [*wrapper.named_parameters(), *wrapper.named_buffers()]:
                        tensor.copy_((params if name in params else buffers)[name][i])
        finally:
            for sender, mode in zip(senders, modes):
                sender.train(mode)
        for i, work in enumerate(group):
            work.fields = _result(loss[i], work.sender, work.space, work.objects, work.messages)
        return True
