"""Targeted-forgetting probe: WHICH examples does a forgetting operation remove?

The reference experiment (Zhou et al. 2022, targeted_forgetting/): train a classifier on data in
which some labels are wrong, and every `measure_every` steps apply a forgetting operator to a
*copy* of the model (training itself is never perturbed). Compare, for two groups of training
examples, accuracy / loss / predictive entropy before and after forgetting:

- groups "mislabeled": a `noise_fraction` of the training examples get a wrong label (drawn
  uniformly from the other classes, so every one of them is really mislabeled; the reference draws
  from all classes, leaving ~1/10 of its "random" group correctly labeled). Group `mislabeled`
  vs `clean`. Accuracy and loss are against the labels trained on.
- groups "margin": at each measurement the `margin_fraction` of examples with the smallest softmax
  margin (top-1 minus top-2 probability) under the unperturbed model are `hard`, the rest `easy`.

Operators (built from `emergent_frl.forgetting`, weights only, biases and norm layers kept):
- "random" (KE-style): keep each weight with probability `keep_fraction` (the last layer keeps
  `keep + (1 - keep) / 2`), re-initialize the others with a fresh draw.
- "magnitude" (IMP-style): keep the largest `keep_fraction` |w| per tensor (last layer as above),
  zero the others, and rewind the kept weights to their initial values.

Measured on a fixed probe set (the whole training split, with stored group ids) rather than the
reference's current batch, which cuts the noise. Each measurement can average `draws` independent
forgetting draws.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..forgetting import ForgettingOperator, MaskCriterion, ParameterSelection, ResetValue
from .checks import check_count, check_real, check_seed, check_types
from .datasets import IN_MEMORY, NUM_CLASSES, DataConfig, load_data
from .experiment import resolve_device
from .footprint import check_fits, estimate, model_costs
from .models import ARCHITECTURES, DEFAULT_WIDTH, build_model, validate_model_args
from .trainer import STREAM_DATA, STREAM_FORGET, STREAM_INIT, derived_generator

GROUPINGS = ("mislabeled", "margin")
OPERATORS = ("random", "magnitude")
METRICS = ("accuracy", "loss", "entropy")
STREAM_NOISE = 3
PROBE_BATCH = 1024  # examples per forward pass when the whole probe set is measured


@dataclass(frozen=True)
class ProbeConfig:
    arch: str = "mlp"                 # the reference's LeNet 300-100 MLP
    width: int | None = None
    image_size: int = 16
    train_per_class: int = 0          # 0 = the whole training split
    grouping: str = "mislabeled"
    noise_fraction: float = 0.1
    margin_fraction: float = 0.1
    operator: str = "random"
    keep_fraction: float = 0.5
    steps: int = 3000
    batch_size: int = 128
    lr: float = 0.1                   # the reference's MNIST optimizer: plain SGD, lr 0.1
    momentum: float = 0.0
    measure_every: int = 250
    draws: int = 1
    seed: int = 0
    split_seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        check_types(self)
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch {self.arch!r}: allowed are {', '.join(ARCHITECTURES)}")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"--grouping {self.grouping!r}: allowed are {', '.join(GROUPINGS)}")
        if self.operator not in OPERATORS:
            raise ValueError(f"--operator {self.operator!r}: allowed are {', '.join(OPERATORS)}")
        ranges = [("--noise-fraction", self.noise_fraction, 0.0, 0.9), ("--margin-fraction", self.margin_fraction, 0.01, 0.5),
                  ("--keep-fraction", self.keep_fraction, 0.0, 1.0), ("--lr", self.lr, 1e-6, 10.0),
                  ("--momentum", self.momentum, 0.0, 0.999)]
        for flag, value, low, high in ranges:
            check_real(flag, value, low, high)
        if self.grouping == "mislabeled" and self.noise_fraction <= 0.0:
            raise ValueError("--noise-fraction 0 leaves the mislabeled group empty; allowed range (0, 0.9] "
                             "with --grouping mislabeled")
        counts = [("--steps", self.steps, 1, 10_000_000), ("--batch-size", self.batch_size, 2, 65_536),
                  ("--measure-every", self.measure_every, 1, self.steps), ("--draws", self.draws, 1, 100),
                  ("--image-size", self.image_size, 4, 64), ("--train-per-class", self.train_per_class, 0, 100_000)]
        for flag, value, low, high in counts:
            check_count(flag, value, low, high)
        validate_model_args(self.arch, width=self.width, image_size=self.image_size)
        check_seed("--seed", self.seed)
        check_seed("--split-seed", self.split_seed)
        resolve_device(self.device)

    def data_config(self) -> DataConfig:
        return DataConfig("digits", image_size=self.image_size, train_per_class=self.train_per_class,
                          val_fraction=0.0, split_seed=self.split_seed, augment=False)

    def check_fits(self, device: torch.device, available: int | None = None) -> None:
        """ValueError naming the flag to reduce when the probe would not fit in `device`'s free memory:
        the training split is held twice (raw and normalized) and probed whole, in PROBE_BATCH chunks."""
        data = self.data_config()
        total = IN_MEMORY["digits"][0]
        examples = min(total, NUM_CLASSES["digits"] * self.train_per_class) if self.train_per_class else total
        batch = min(self.batch_size, examples)  # `batches` never cuts more than the split holds
        costs = model_costs(self.arch, NUM_CLASSES["digits"], image_size=self.image_size, width=self.width)
        footprint = estimate(costs, image_size=self.image_size, batch_size=batch,
                             eval_batch=min(PROBE_BATCH, examples), data_bytes=2 * data.memory_bytes())
        knobs = {"batch_size": (batch, ProbeConfig.batch_size, 1),
                 "image_size": (self.image_size, ProbeConfig.image_size, 2),
                 "width": (self.width, DEFAULT_WIDTH.get(self.arch, 1), 1)}
        check_fits(footprint, device, knobs, available)

    @property
    def last_layer_keep(self) -> float:
        """The reference forgets half as much of the classifier layer."""
        return self.keep_fraction + (1.0 - self.keep_fraction) / 2.0


def corrupt_labels(labels: torch.Tensor, fraction: float, num_classes: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy labels, mislabeled flags): round(fraction * N) examples get a different class."""
    n = labels.shape[0]
    chosen = torch.randperm(n, generator=generator)[: int(round(fraction * n))]
    offset = torch.randint(1, num_classes, (chosen.shape[0],), generator=generator)
    noisy = labels.clone()
    noisy[chosen] = (labels[chosen] + offset) % num_classes
    flags = torch.zeros(n, dtype=torch.bool)
    flags[chosen] = True
    return noisy, flags


def classifier_name(model: nn.Module) -> str:
    """Dotted name of the last Linear layer (the one the reference forgets half as much of)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear classifier layer for the probe")
    return names[-1]


def probe_operators(model: nn.Module, config: ProbeConfig) -> list[ForgettingOperator]:
    """The operator pair of the reference: body at `keep_fraction`, classifier at `last_layer_keep`."""
    last = classifier_name(model)
    if config.operator == "random":
        def make(selection, keep):
            return ForgettingOperator(selection, MaskCriterion("bernoulli", keep, timing="each"), ResetValue("reinit"))
    else:
        def make(selection, keep):
            return ForgettingOperator(selection, MaskCriterion("magnitude", keep, scope="tensor", timing="each"),
                                      ResetValue("zero"), kept="rewind")
    body = ParameterSelection(modules=(last,), invert=True, parameters="weights")
    head = ParameterSelection(modules=(last,), parameters="weights")
    return [make(body, config.keep_fraction), make(head, config.last_layer_keep)]


@torch.no_grad()
def predictions(model: nn.Module, images: torch.Tensor, batch_size: int = PROBE_BATCH) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).float() for i in range(0, images.shape[0], batch_size)])


def softmax_margin(logits: torch.Tensor) -> torch.Tensor:
    top = logits.softmax(1).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def group_metrics(logits: torch.Tensor, labels: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per group: accuracy and cross-entropy against `labels`, mean predictive entropy, size."""
    log_probs = logits.log_softmax(1)
    loss = F.nll_loss(log_probs, labels, reduction="none")
    entropy = -(log_probs.exp() * log_probs).sum(1)
    correct = (logits.argmax(1) == labels).float()
    out = {}
    for name, member in groups.items():
        n = int(member.sum())
        out[name] = {"n": n, **({k: float(v[member].mean()) if n else math.nan
                                 for k, v in (("accuracy", correct), ("loss", loss), ("entropy", entropy))})}
    return out


def _mean_metrics(runs: list[dict[str, dict]]) -> dict[str, dict]:
    return {g: {"n": runs[0][g]["n"], **{m: sum(r[g][m] for r in runs) / len(runs) for m in METRICS}} for g in runs[0]}


class TargetedForgettingProbe:
    """Trains on noisy digits and measures what forgetting a copy of the model removes."""

    def __init__(self, config: ProbeConfig):
        config.validate()
        self.config = config
        self.device = resolve_device(config.device)
        config.check_fits(self.device)
        self.step = 0  # the SGD step `run` is at (the message of an interrupted probe says it)
        data = load_data(config.data_config(), self.device)
        self.images = data.train.normalized()
        self.true_labels = data.train.labels
        noisy, flags = corrupt_labels(self.true_labels.cpu(), config.noise_fraction,
                                      data.num_classes, derived_generator(config.seed, STREAM_NOISE))
        self.labels, self.mislabeled = noisy.to(self.device), flags.to(self.device)
        self.model = build_model(config.arch, data.num_classes, image_size=data.image_size, width=config.width,
                                 generator=derived_generator(config.seed, STREAM_INIT)).to(self.device)
        self.operators = probe_operators(self.model, config)
        for operator in self.operators:  # snapshot of the initial weights (IMP-style rewinding)
            operator.prepare(self.model)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum)

    def groups(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.config.grouping == "mislabeled":
            return {"clean": ~self.mislabeled, "mislabeled": self.mislabeled}
        margin = softmax_margin(logits)
        hard = torch.zeros_like(self.mislabeled)
        hard[margin.argsort()[: max(1, int(round(self.config.margin_fraction * margin.shape[0])))]] = True
        return {"easy": ~hard, "hard": hard}

    def forgotten_copy(self, draw: int) -> nn.Module:
        clone = copy.deepcopy(self.model)
        generator = derived_generator(self.config.seed, STREAM_FORGET, draw)
        for operator in self.operators:
            operator.apply(clone, generator=generator)
        return clone

    def measure(self, step: int, index: int) -> dict:
        """Metrics of the model and of `draws` forgotten copies (averaged), per group."""
        before = predictions(self.model, self.images)
        groups = self.groups(before)
        groups["all"] = torch.ones_like(self.mislabeled)
        afters = [predictions(self.forgotten_copy(index * self.config.draws + d), self.images)
                  for d in range(self.config.draws)]
        record = {"step": step, "epoch": step * self.config.batch_size / self.images.shape[0],
                  "before": group_metrics(before, self.labels, groups),
                  "after": _mean_metrics([group_metrics(after, self.labels, groups) for after in afters])}
        if self.config.grouping == "mislabeled":  # do the mislabeled examples fall back to their true class?
            def true_accuracy(logits: torch.Tensor) -> float:
                return float((logits.argmax(1) == self.true_labels)[self.mislabeled].float().mean())

            record["before"]["mislabeled"]["true_label_accuracy"] = true_accuracy(before)
            record["after"]["mislabeled"]["true_label_accuracy"] = sum(map(true_accuracy, afters)) / len(afters)
        return record

    def batches(self):
        """Endless shuffled batches of the noisy training set; incomplete batches skipped (reference)."""
        n, size, epoch = self.images.shape[0], min(self.config.batch_size, self.images.shape[0]), 0
        while True:
            order = torch.randperm(n, generator=derived_generator(self.config.seed, STREAM_DATA, epoch)).to(self.device)
            for start in range(0, n - size + 1, size):
                index = order[start:start + size]
                yield self.images[index], self.labels[index]
            epoch += 1

    def run(self, on_measure=None) -> list[dict]:
        records, batches = [], self.batches()
        for step in range(1, self.config.steps + 1):
            self.step = step
            self.model.train()
            images, labels = next(batches)
            loss = F.cross_entropy(self.model(images), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if step % self.config.measure_every == 0:
                records.append(self.measure(step, len(records)))
                if on_measure is not None:
                    on_measure(records[-1])
        return records
