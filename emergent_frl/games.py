"""Referential and reconstruction games: one forward = messages, per-sample losses, the loss to optimise.

Call convention and loss signature follow EGG:
    game(sender_input, labels, receiver_input=None, aux_input=None, *, generator=None) -> GameOutput
    loss(sender_input, message, receiver_input, receiver_output, labels, aux_input)
        -> (per-sample loss [B], aux dict of per-sample tensors)

What the loss sees as `receiver_output`:
- referential game, "reinforce" channel: the receiver's chosen candidate [B] (a policy sample in
  training); the default loss is -reward with reward 1 when the choice is the target (the paper);
- referential game, "gumbel" channel: candidate scores [B, K]; default loss: cross-entropy;
- reconstruction game: per-attribute logits [B, sum(n_values)]; default loss: sum over attributes of
  the cross-entropy.
The optimised loss on the "reinforce" channel is EGG's
    mean((L - b) * (log p_sender + log p_receiver)) - c_s * mean(H_sender) - c_r * mean(H_receiver) + mean(L)
where b is a running mean of L (optional, the paper uses none), and the last term trains whatever L
is differentiable in (the reconstruction receiver). On "gumbel", gradients flow through the
relaxed message: mean(L) - entropy bonuses.

A game also owns its data: the object space, the train/holdout split, `sample_batch` for training
(drawn on the generator's device) and fixed `evaluation_batches` for comparable greedy evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from emergent_frl.agents import (
    CHANNELS,
    ReconstructionReceiver,
    ReferentialReceiver,
    Sender,
    SenderOutput,
)
from emergent_frl.knobs import ConfigError
from emergent_frl.objects import CandidateSampler, ObjectSpace, Split

LossFn = Callable[..., tuple[torch.Tensor, dict[str, Any]]]


@dataclass
class GameBatch:
    """Inputs of one game call. `objects`: the target objects' indices [B] (for metrics)."""

    sender_input: torch.Tensor
    labels: torch.Tensor
    receiver_input: torch.Tensor | None
    objects: torch.Tensor
    aux_input: dict[str, Any] | None = None


@dataclass
class GameOutput:
    """Result of one game call; every per-sample tensor has shape [B].

    loss: scalar to backpropagate. task_loss: the per-sample loss L. reward: -L.
    accuracy: 1.0 where the receiver's decision (sampled in training, greedy in eval) is right.
    """

    loss: torch.Tensor
    task_loss: torch.Tensor
    reward: torch.Tensor
    accuracy: torch.Tensor
    sender_entropy: torch.Tensor
    receiver_entropy: torch.Tensor
    message: torch.Tensor
    length: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)

    def training_stats(self) -> torch.Tensor:
        """The batch means [4] a run records while it trains, in `TRAINING_STATS` order."""
        return torch.stack([self.accuracy.mean(), self.task_loss.mean(), self.sender_entropy.mean(),
                            self.receiver_entropy.mean()])


# How a referential receiver learns: "reinforce" samples its choice and learns from the 0/1
# reward (the paper's listener); "cross_entropy" is deterministic and learns from the
# cross-entropy of its candidate scores (EGG's listener; a full gradient every batch).
RECEIVER_TRAINING = ("reinforce", "cross_entropy")


def check_receiver_training(channel: str, receiver_training: str) -> None:
    """ConfigError unless the channel can train the receiver so: only the reinforce channel has a
    sampled choice to reward (the game and the config check this one rule)."""
    if channel != "reinforce" and receiver_training == "reinforce":
        raise ConfigError("receiver_training", receiver_training,
                          f"the {channel} channel trains the receiver by the cross-entropy of its scores; "
                          "use cross_entropy")


# What `GameOutput.training_stats` holds, as the records name it.
TRAINING_STATS = ("train_accuracy", "train_loss", "train_sender_entropy", "train_receiver_entropy")


def referential_reward_loss(sender_input, message, receiver_input, receiver_output, labels, aux_input):
    """-1 when the chosen candidate is the target, else 0 (reward 1/0 as in the reference code)."""
    correct = (receiver_output == labels).float()
    return -correct, {"acc": correct}


def referential_cross_entropy_loss(
    sender_input, message, receiver_input, receiver_output, labels, aux_input
):
    """Cross-entropy of the candidate scores against the target position (Gumbel-Softmax game)."""
    correct = (receiver_output.argmax(-1) == labels).float()
    return F.cross_entropy(receiver_output, labels, reduction="none"), {"acc": correct}


def reconstruction_loss_for(n_values: tuple[int, ...]) -> LossFn:
    """Sum over attributes of the cross-entropy of each attribute's block of logits."""

    def reconstruction_loss(sender_input, message, receiver_input, receiver_output, labels, aux_input):
        blocks = torch.split(receiver_output, list(n_values), dim=-1)
        losses = [F.cross_entropy(b, labels[:, i], reduction="none") for i, b in enumerate(blocks)]
        correct = torch.stack([b.argmax(-1) == labels[:, i] for i, b in enumerate(blocks)], -1)
        return torch.stack(losses, -1).sum(-1), {"acc": correct.all(-1).float()}

    return reconstruction_loss


class RunningMeanBaseline(nn.Module):
    """Mean of every value seen so far (EGG's MeanBaseline); kept on the device as buffers."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("count", torch.zeros(()))

    def forward(self) -> torch.Tensor:
        return self.mean

    @torch.no_grad()
    def update(self, value: torch.Tensor) -> None:
        self.mean, self.count = self.updated(self.mean, self.count, value.detach().mean())

    @staticmethod
    def updated(mean: torch.Tensor, count: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and count after one more value, in place (also for many runs' stacked buffers)."""
        count += 1
        mean += (value - mean) / count
        return mean, count


class LanguageGame(nn.Module):
    """Shared machinery: channel, loss, entropy regularisation, baseline, data pools.

    A game kind supplies `_listen` (how its receiver is called), `accuracy`, `sample_batch` and
    `evaluation_batches`; everything else is common.
    """

    kind: str = ""

    def __init__(
        self,
        space: ObjectSpace,
        sender: Sender,
        receiver: nn.Module,
        *,
        channel: str,
        loss: LossFn | None,
        default_loss: LossFn,
        sender_entropy_coeff: float,
        receiver_entropy_coeff: float,
        baseline: bool,
        split: Split | None,
        batch_size: int,
    ):
        super().__init__()
        if channel not in CHANNELS:
            raise ValueError(f"channel={channel!r}: must be one of {list(CHANNELS)}")
        if sender.channel != channel:
            raise ValueError(f"channel={channel!r}: the sender was built for {sender.channel!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        self.space = space
        self.sender = sender
        self.receiver = receiver
        self.channel = channel
        self.loss_fn = loss if loss is not None else default_loss
        # A buffer, not two floats: runs trained as one computation may each have their own.
        self.register_buffer("entropy_coeffs", torch.tensor([float(sender_entropy_coeff),
                                                             float(receiver_entropy_coeff)]), persistent=False)
        self.baseline = RunningMeanBaseline() if baseline else None
        self.batch_size = batch_size
        self.split = split if split is not None else space.split("none", 0.0, 0)
        self.register_buffer("train_pool", self.split.train.clone(), persistent=False)

    @property
    def sender_entropy_coeff(self) -> float:
        return float(self.entropy_coeffs[0])

    @sender_entropy_coeff.setter
    def sender_entropy_coeff(self, value: float) -> None:
        with torch.no_grad():
            self.entropy_coeffs[0] = float(value)

    @property
    def receiver_entropy_coeff(self) -> float:
        return float(self.entropy_coeffs[1])

    @receiver_entropy_coeff.setter
    def receiver_entropy_coeff(self, value: float) -> None:
        with torch.no_grad():
            self.entropy_coeffs[1] = float(value)

    @property
    def device(self) -> torch.device:
        return next(self.sender.parameters()).device

    def receiver_output_for_loss(self, receiver_out) -> torch.Tensor:
        """What the loss function gets as the receiver's output (here its logits)."""
        return receiver_out.logits

    def receiver_policy(self, receiver_out) -> tuple[torch.Tensor, torch.Tensor]:
        """The receiver's (log_prob, entropy) that REINFORCE and the entropy bonus use: its own,
        or zeros where the receiver learns from the loss's gradient alone."""
        return receiver_out.log_prob, receiver_out.entropy

    def forward(
        self,
        sender_input: torch.Tensor,
        labels: torch.Tensor,
        receiver_input: torch.Tensor | None = None,
        aux_input: dict[str, Any] | None = None,
        *,
        generator: torch.Generator | None = None,
        update_baseline: bool = True,
        baseline_value: torch.Tensor | None = None,
    ) -> GameOutput:
        """One game round. `update_baseline=False`: leave the running-mean baseline to the caller,
        and `baseline_value`: the mean to subtract instead of reading the buffer (many runs trained
        as one, possibly compiled, computation pass a copy and update theirs after the step, so the
        compiled backward never reads a buffer changed since the forward)."""
        sender_out = self.sender(sender_input, generator=generator)
        receiver_out = self._listen(sender_out, receiver_input, generator)
        task_loss, aux = self.loss_fn(
            sender_input,
            sender_out.message,
            receiver_input,
            self.receiver_output_for_loss(receiver_out),
            labels,
            aux_input,
        )
        batch = sender_input.shape[0]
        if task_loss.shape != (batch,):
            raise ValueError(
                f"loss: must return a per-sample loss of shape ({batch},), got "
                f"{tuple(task_loss.shape)}; do not reduce it over the batch"
            )
        receiver_log_prob, receiver_entropy = self.receiver_policy(receiver_out)
        entropy_bonus = (
            self.entropy_coeffs[0] * sender_out.entropy.mean()
            + self.entropy_coeffs[1] * receiver_entropy.mean()
        )
        if self.channel == "reinforce":
            advantage = task_loss.detach()
            if self.baseline is not None:
                advantage = advantage - (self.baseline() if baseline_value is None else baseline_value)
            policy = (advantage * (sender_out.log_prob + receiver_log_prob)).mean()
            loss = policy - entropy_bonus + task_loss.mean()
        else:
            loss = task_loss.mean() - entropy_bonus
        if self.baseline is not None and update_baseline and torch.is_grad_enabled():
            self.baseline.update(task_loss)
        return GameOutput(
            loss=loss,
            task_loss=task_loss.detach(),
            reward=-task_loss.detach(),
            accuracy=self.accuracy(receiver_out, labels),
            sender_entropy=sender_out.entropy.detach(),
            receiver_entropy=receiver_out.entropy.detach(),
            message=sender_out.message,
            length=sender_out.length,
            aux={k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in aux.items()},
        )

    def sample_batch(self, batch_size: int, generator: torch.Generator) -> GameBatch:
        """One training batch from the training split, drawn with `generator`: the random draws
        (`draw_batch`), then the batch they make (`batch_from_draws`). A subclass may override this
        instead of the two; many runs then sample one by one."""
        return self.batch_from_draws(self.draw_batch(batch_size, generator))

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError(f"{type(self).__name__}: a game defines sample_batch, or draw_batch and "
                                  "batch_from_draws")

    def batch_from_draws(self, draws: tuple[torch.Tensor, ...]) -> GameBatch:
        """The batch `draw_batch`'s draws make; draws may carry leading dimensions (many runs'
        draws stacked), and so does the batch."""
        raise NotImplementedError(f"{type(self).__name__}: a game defines sample_batch, or draw_batch and "
                                  "batch_from_draws")

    def samples_by_draws(self) -> bool:
        """True when `sample_batch` is `draw_batch` + `batch_from_draws` (not overridden alone)."""
        for klass in type(self).__mro__:
            if "sample_batch" in vars(klass):
                return klass is LanguageGame or "batch_from_draws" in vars(klass)
        return False

    def play(self, batch: GameBatch, generator: torch.Generator | None = None) -> GameOutput:
        return self(batch.sender_input, batch.labels, batch.receiver_input, batch.aux_input,
                    generator=generator)

    def _length_for_receiver(self, sender_out: SenderOutput) -> torch.Tensor | None:
        return sender_out.length if self.sender.eos else None

    def _message_for_receiver(self, sender_out: SenderOutput) -> dict[str, torch.Tensor]:
        """The message's indices, for a receiver that reads them (`reads_message`), when the
        sender vouches that its symbols are their exact one-hots (`SenderOutput.discrete`)."""
        if sender_out.discrete and getattr(self.receiver, "reads_message", False):
            return {"message": sender_out.message}
        return {}


class ReferentialGame(LanguageGame):
    """Sender describes a target; the receiver picks it among `n_candidates` distinct objects.

    Training targets and distractors come from the training split; `easy_limit` caps the easy
    distractors per instance. Evaluation uses `eval_repeats` fixed candidate sets per object
    (drawn once from `eval_seed`, distractors from the whole space), so every evaluation of every
    generation scores the same instances.
    """

    kind = "referential"

    def __init__(
        self,
        space: ObjectSpace,
        sender: Sender,
        receiver: ReferentialReceiver,
        *,
        n_candidates: int = 5,
        easy_limit: int | None = None,
        channel: str = "reinforce",
        receiver_training: str | None = None,
        loss: LossFn | None = None,
        sender_entropy_coeff: float = 0.1,
        receiver_entropy_coeff: float = 0.1,
        baseline: bool = False,
        split: Split | None = None,
        batch_size: int = 100,
        eval_repeats: int = 10,
        eval_seed: int = 0,
    ):
        if receiver_training is None:  # the channel's own: sampled on reinforce (the paper's), else scores
            receiver_training = "reinforce" if channel == "reinforce" else "cross_entropy"
        if receiver_training not in RECEIVER_TRAINING:
            raise ValueError(f"receiver_training={receiver_training!r}: must be one of {list(RECEIVER_TRAINING)}")
        check_receiver_training(channel, receiver_training)
        self.receiver_training = receiver_training
        default = referential_reward_loss if receiver_training == "reinforce" else referential_cross_entropy_loss
        super().__init__(
            space, sender, receiver, channel=channel, loss=loss, default_loss=default,
            sender_entropy_coeff=sender_entropy_coeff, receiver_entropy_coeff=receiver_entropy_coeff,
            baseline=baseline, split=split, batch_size=batch_size,
        )
        if eval_repeats < 1:
            raise ValueError(f"eval_repeats={eval_repeats}: must be >= 1")
        self.n_candidates = n_candidates
        self.easy_limit = easy_limit
        self.eval_repeats = eval_repeats
        # Checks n_candidates / easy_limit against the training pool before any work.
        self._samplers = {
            torch.device("cpu"): CandidateSampler(
                space, n_candidates, targets=self.split.train, easy_limit=easy_limit
            )
        }
        self._register_evaluation_sets(eval_seed)

    def _register_evaluation_sets(self, eval_seed: int) -> None:
        """Fixed candidate sets: every target object `eval_repeats` times, distractors from anywhere."""
        generator = torch.Generator().manual_seed(eval_seed)
        everything = torch.arange(self.space.n_objects)
        pools = {"all": everything, "train": self.split.train, "holdout": self.split.holdout}
        if self.split.holdout.numel() == 0:
            del pools["train"]  # the training pool is the whole space: "all" already scores it
        for name, targets in pools.items():
            if targets.numel() == 0:
                continue
            sampler = CandidateSampler(
                self.space, self.n_candidates, targets=targets, distractors=everything,
                easy_limit=self.easy_limit,
            )
            candidates, position = sampler.sample_for(targets.repeat(self.eval_repeats), generator)
            self.register_buffer(f"eval_{name}_candidates", candidates, persistent=False)
            self.register_buffer(f"eval_{name}_position", position, persistent=False)

    def sampler_for(self, device: torch.device) -> CandidateSampler:
        device = torch.device(device)
        if device not in self._samplers:
            cpu = self._samplers[torch.device("cpu")]
            self._samplers[device] = CandidateSampler(
                self.space, self.n_candidates, targets=cpu.targets, distractors=cpu.distractors,
                easy_limit=self.easy_limit, device=device,
            )
        return self._samplers[device]

    def make_batch(self, candidates: torch.Tensor, position: torch.Tensor) -> GameBatch:
        target = candidates.gather(-1, position.unsqueeze(-1)).squeeze(-1)
        return GameBatch(
            sender_input=self.space.encode_index(target),
            labels=position,
            receiver_input=self.space.encode_index(candidates),
            objects=target,
        )

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        return self.sampler_for(generator.device).draw(batch_size, generator)

    def batch_from_draws(self, draws: tuple[torch.Tensor, ...]) -> GameBatch:
        return self.make_batch(*self.sampler_for(draws[0].device).arrange(*draws))

    def evaluation_batches(self) -> dict[str, GameBatch]:
        batches = {}
        for name in ("all", "train", "holdout"):
            candidates = getattr(self, f"eval_{name}_candidates", None)
            if candidates is not None:
                batches[name] = self.make_batch(candidates, getattr(self, f"eval_{name}_position"))
        return batches

    def _listen(self, sender_out, receiver_input, generator):
        if receiver_input is None:
            raise ValueError("receiver_input: the referential game needs candidates [B, K, D]")
        return self.receiver(sender_out.symbols, receiver_input, self._length_for_receiver(sender_out),
                             generator=generator, **self._message_for_receiver(sender_out))

    def receiver_output_for_loss(self, receiver_out):
        """The sampled choice (a 0/1 reward) for a REINFORCE-trained receiver, else the scores."""
        if self.receiver_training == "reinforce":
            return receiver_out.choice
        return receiver_out.logits

    def receiver_policy(self, receiver_out):
        """A cross-entropy-trained receiver on the reinforce channel has no policy (EGG's
        deterministic receiver: no REINFORCE term, no entropy bonus). The gumbel channel uses no
        log_prob, and keeps its entropy bonus on the scores as a regulariser."""
        if self.receiver_training == "reinforce" or self.channel != "reinforce":
            return receiver_out.log_prob, receiver_out.entropy
        zeros = receiver_out.logits.new_zeros(receiver_out.logits.shape[0])
        return zeros, zeros

    def accuracy(self, receiver_out, labels):
        """Per sample [B]: 1.0 where the receiver chose the target (a cross-entropy-trained
        receiver chooses its best-scoring candidate)."""
        chosen = receiver_out.choice if self.receiver_training == "reinforce" else receiver_out.logits.argmax(-1)
        return (chosen == labels).float()


class ReconstructionGame(LanguageGame):
    """Sender describes an object; the receiver outputs every attribute value (cross-entropy)."""

    kind = "reconstruction"

    def __init__(
        self,
        space: ObjectSpace,
        sender: Sender,
        receiver: ReconstructionReceiver,
        *,
        channel: str = "reinforce",
        loss: LossFn | None = None,
        sender_entropy_coeff: float = 0.1,
        receiver_entropy_coeff: float = 0.0,
        baseline: bool = False,
        split: Split | None = None,
        batch_size: int = 100,
    ):
        super().__init__(
            space, sender, receiver, channel=channel, loss=loss,
            default_loss=reconstruction_loss_for(space.n_values),
            sender_entropy_coeff=sender_entropy_coeff, receiver_entropy_coeff=receiver_entropy_coeff,
            baseline=baseline, split=split, batch_size=batch_size,
        )
        self.register_buffer("eval_all_objects", torch.arange(space.n_objects), persistent=False)
        self.register_buffer("eval_holdout_objects", self.split.holdout.clone(), persistent=False)

    def make_batch(self, objects: torch.Tensor) -> GameBatch:
        return GameBatch(
            sender_input=self.space.encode_index(objects),
            labels=self.space.attributes_of(objects),
            receiver_input=None,
            objects=objects,
        )

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        self.space.keep_tables(self.train_pool.device)  # the batch is encoded on this device
        return (torch.randint(self.train_pool.numel(), (batch_size,), generator=generator,
                              device=self.train_pool.device),)

    def batch_from_draws(self, draws: tuple[torch.Tensor, ...]) -> GameBatch:
        return self.make_batch(self.train_pool[draws[0]])

    def evaluation_batches(self) -> dict[str, GameBatch]:
        batches = {"all": self.make_batch(self.eval_all_objects)}
        if self.eval_holdout_objects.numel():  # without a holdout the training pool is "all"
            batches["train"] = self.make_batch(self.train_pool)
            batches["holdout"] = self.make_batch(self.eval_holdout_objects)
        return batches

    def _listen(self, sender_out, receiver_input, generator):
        return self.receiver(sender_out.symbols, self._length_for_receiver(sender_out),
                             generator=generator, **self._message_for_receiver(sender_out))

    def accuracy(self, receiver_out, labels):
        """Per sample [B]: 1.0 where the receiver got every attribute right."""
        return (receiver_out.choice == labels).all(-1).float()
