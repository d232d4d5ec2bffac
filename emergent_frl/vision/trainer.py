"""The image track's generational training loop.

    for generation g:
        g >= 1 and a forgetting strategy: operator.apply(model)       (LLF / KE / IMP)
            IMP with rewind_model: everything else (biases, BatchNorm) back to the rewind point too
        restarting strategies: fresh SGD, warm-up + cosine over `epochs`
        train `epochs` epochs (IMP: re-zero pruned weights after every step)
        record train (running, last epoch) / val / test top-1 and loss; checkpoint

The long baseline is the same loop without forgetting, one optimizer and one warm-up + cosine
schedule over all generations; a "generation" is then a segment of `epochs` epochs, so its records
sit at the same epochs as the other strategies'. The test split is evaluated and recorded, never
used for any decision.

Every random draw comes from a generator derived from (seed, purpose, generation or epoch), so a
run interrupted after generation k and resumed gives the same records as one that never stopped.
On CUDA the forward pass runs under bf16 autocast with channels_last tensors (optionally
`torch.compile`d); on CPU it runs in float32.
"""

from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..forgetting import ForgettingOperator
from ..runs import CHECKPOINT_FILE, RECORDS_FILE, DeferredInterrupt, RunDirectory, describe_load_error
from .checks import check_count, check_real, check_types
from .datasets import ImageData

STREAM_INIT, STREAM_DATA, STREAM_FORGET = 0, 1, 2
MAX_GENERATIONS = 1000
EVAL_BATCH = 256  # evaluation batches: at least this many examples (no graph is kept)


def derived_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded from (seed, *keys): independent streams without shared state."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


def learning_rate(base_lr: float, epoch: float, total_epochs: int, warmup_epochs: int, steps_per_epoch: int = 1) -> float:
    """Reference schedule: linear warm-up over `warmup_epochs`, then half-cosine to 0 at
    `total_epochs`. `epoch` may be fractional (per-step updates); with one step per epoch it is the
    reference's per-epoch `lr * (e + 1) / warmup`, then `lr * (1 + cos(pi * (e - w) / (E - w))) / 2`."""
    if epoch < warmup_epochs:
        return base_lr * (epoch + 1.0 / steps_per_epoch) / warmup_epochs
    progress = (epoch - warmup_epochs) / max(1e-12, total_epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * base_lr


@dataclass(frozen=True)
class TrainConfig:
    generations: int = 4
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    amp: bool = True             # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True   # on CUDA only
    compile: bool = False        # torch.compile the forward pass

    def validate(self) -> None:
        check_types(self)
        counts = [
            ("--generations", self.generations, 1, MAX_GENERATIONS), ("--epochs", self.epochs, 1, 100_000),
            ("--batch-size", self.batch_size, 2, 65_536), ("--warmup-epochs", self.warmup_epochs, 0, self.epochs),
        ]
        for flag, value, low, high in counts:
            check_count(flag, value, low, high)
        check_real("--lr", self.lr, 0.0, 10.0, open_low=True)
        for flag, value in (("--momentum", self.momentum), ("--weight-decay", self.weight_decay),
                            ("--label-smoothing", self.label_smoothing)):
            check_real(flag, value, 0.0, 1.0, open_high=True)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD on all parameters (BN and biases included, as in the reference)."""
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


class GenerationTrainer:
    """Trains one model for several generations on `data`, applying `operator` between them."""

    def __init__(self, model: nn.Module, data: ImageData, config: TrainConfig, *, seed: int,
                 operator: ForgettingOperator | None = None, restarts_schedule: bool = True,
                 rewind_epoch: int = 0, rewind_model: bool = False, device: torch.device | str = "cpu",
                 strategy: str = "none"):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.model = model.to(self.device)
        self.data = data
        self.config = config
        self.seed = seed
        self.operator = operator
        self.restarts_schedule = restarts_schedule
        self.rewind_epoch = rewind_epoch
        self.rewind_model = rewind_model and operator is not None
        self.strategy = strategy
        self.optimizer = make_optimizer(self.model, config)
        # where training stands, for the message of an interrupted run: (generation, epoch being
        # trained, counted from 1) and how many generations the run directory holds checkpointed
        self.position: tuple[int, int] = (0, 0)
        self.saved_generations = 0
        self._set_memory_format()
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.model) if config.compile else self.model)
        if operator is not None:  # snapshot of the initial weights; once-at-init masks (KE) drawn here
            operator.prepare(self.model, generator=derived_generator(seed, STREAM_FORGET, 0))
        # Whole-network rewind point (IMP as in OpenLTH): the parameters and buffers the operator's
        # selection does not cover (biases, BatchNorm affine and running statistics).
        self.rewind_state: dict[str, torch.Tensor] | None = self._unselected_state() if self.rewind_model else None

    # --------------------------------------------------------------------------------- pieces
    def _set_memory_format(self) -> None:
        if self.cuda and self.config.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                              enabled=self.cuda and self.config.amp)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        if self.cuda and self.config.channels_last and images.ndim == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)

    @property
    def total_epochs(self) -> int:
        return self.config.epochs * (1 if self.restarts_schedule else self.config.generations)

    def train_epoch(self, generation: int, epoch: int) -> tuple[float, float]:
        """One pass over the training split; returns the running (loss, accuracy)."""
        config = self.config
        global_epoch = generation * config.epochs + epoch
        schedule_epoch = epoch if self.restarts_schedule else global_epoch
        generator = derived_generator(self.seed, STREAM_DATA, global_epoch)
        steps = max(1, math.ceil(len(self.data.train) / config.batch_size))
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        for step, (images, labels) in enumerate(self.data.train.batches(config.batch_size, train=True,
                                                                         generator=generator)):
            lr = learning_rate(config.lr, schedule_epoch + step / steps, self.total_epochs,
                               config.warmup_epochs, steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                logits = self.forward(self._inputs(images))
            loss = self._loss(logits, labels, config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.operator is not None:
                self.operator.after_step(self.model)
            loss_sum += loss.detach() * labels.shape[0]
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.shape[0]
        return float(loss_sum) / max(1, seen), float(correct) / max(1, seen)

    @torch.no_grad()
    def evaluate(self, split) -> tuple[float | None, float | None]:
        """(loss without label smoothing, top-1 accuracy) on a split in eval mode; None if absent."""
        if split is None or len(split) == 0:
            return None, None
        self.model.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        for images, labels in split.batches(max(EVAL_BATCH, self.config.batch_size)):
            with self._autocast():
                logits = self.forward(self._inputs(images))
            loss_sum += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
            seen += labels.shape[0]
        return loss_sum / seen, correct / seen

    def _unselected_state(self) -> dict[str, torch.Tensor]:
        """Copies of the state entries outside the operator's selection."""
        selected = set(self.operator.selection.select(self.model))
        return {k: v.detach().clone() for k, v in self.model.state_dict().items() if k not in selected}

    def set_rewind_point(self) -> None:
        """The current weights become what IMP rewinds to (late rewinding)."""
        self.operator.set_rewind_point(self.model)
        if self.rewind_model:
            self.rewind_state = self._unselected_state()

    def forget(self, generation: int) -> int:
        """Apply the operator at the start of `generation` >= 1; returns how many entries it forgot."""
        if self.operator is None or generation == 0:
            return 0
        report = self.operator.apply(self.model, generator=derived_generator(self.seed, STREAM_FORGET, generation),
                                     optimizers=[self.optimizer])
        if self.rewind_model:
            state = self.model.state_dict()
            with torch.no_grad():
                for name, value in self.rewind_state.items():
                    state[name].copy_(value)
        self._set_memory_format()
        return sum(report.forgotten.values())

    # ------------------------------------------------------------------------------ the loop
    def train_generation(self, generation: int) -> dict:
        start = time.perf_counter()
        forgotten = self.forget(generation)
        if self.restarts_schedule:
            self.optimizer = make_optimizer(self.model, self.config)
        train_loss = train_accuracy = None
        for epoch in range(self.config.epochs):
            self.position = (generation, epoch + 1)
            train_loss, train_accuracy = self.train_epoch(generation, epoch)
            if (generation == 0 and self.operator is not None and self.rewind_epoch
                    and epoch + 1 == self.rewind_epoch):
                self.set_rewind_point()
        val_loss, val_accuracy = self.evaluate(self.data.val)
        test_loss, test_accuracy = self.evaluate(self.data.test)
        return {
            "generation": generation, "epoch": (generation + 1) * self.config.epochs,
            "strategy": self.strategy, "seed": self.seed,
            "train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "test_accuracy": test_accuracy,
            "train_loss": train_loss, "val_loss": val_loss, "test_loss": test_loss,
            # share of ALL the model's parameters re-drawn / zeroed at the start of this generation
            "forgotten_fraction": forgotten / sum(p.numel() for p in self.model.parameters()),
            "forgotten_parameters": forgotten, "seconds": time.perf_counter() - start,
        }

    def state_dict(self, generation: int) -> dict:
        return {"generation": generation, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "operator": self.operator.state_dict() if self.operator is not None else None,
                "rewind_state": self.rewind_state}

    def load_state_dict(self, state: dict) -> int:
        """Restore a checkpoint; returns the first generation still to train."""
        self.model.load_state_dict(state["model"])
        self._set_memory_format()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.operator is not None and state.get("operator") is not None:
            self.operator.load_state_dict(state["operator"])
        if self.rewind_model and state.get("rewind_state") is not None:
            self.rewind_state = {k: v.to(self.device) for k, v in state["rewind_state"].items()}
        return int(state["generation"]) + 1

    def restore(self, run_dir: RunDirectory) -> int:
        """Load `run_dir`'s checkpoint (if any) into the model, optimizer and operator, and check
        that its records cover it; returns the first generation still to train. Reads only: a
        checkpoint that is unreadable or does not fit this model (an edited config.json, another
        architecture) or records that fall short are a ValueError naming the file, and the run
        directory stays as it was."""
        state = run_dir.load_checkpoint(map_location=self.device)
        start = 0 if state is None else self._load_checkpoint(state, run_dir.path / CHECKPOINT_FILE)
        held = len(run_dir.records())
        if held < start:
            raise ValueError(f"{run_dir.path / RECORDS_FILE}: holds {held} records, but {CHECKPOINT_FILE} covers "
                             f"{start}; the run directory is incomplete (restore the file, or start the run anew)")
        self.saved_generations = start
        return start

    def _load_checkpoint(self, state: dict, path: pathlib.Path) -> int:
        """`load_state_dict`, its failures (shapes, missing or unexpected entries) as one ValueError."""
        try:
            return self.load_state_dict(state)
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise ValueError(f"{path}: does not fit this run's model ({describe_load_error(error)}); was config.json "
                             "edited? restore both files, or start the run anew") from None

    def run(self, run_dir: RunDirectory | None = None, *, resume: bool = False, start: int | None = None,
            on_record: Callable[[dict], None] | None = None) -> list[dict]:
        """Train the remaining generations; with `run_dir`, append records and checkpoint after each.
        `start`: the generation `restore` returned (else, with `resume`, it is restored here);
        records written after that checkpoint are dropped and redone."""
        if start is None:
            start = self.restore(run_dir) if resume and run_dir is not None else 0
        records: list[dict] = []
        if run_dir is not None:
            records = run_dir.records()
            if len(records) != start:
                run_dir.truncate_records(start)
                records = records[:start]
        self.saved_generations = start
        for generation in range(start, self.config.generations):
            record = self.train_generation(generation)
            records.append(record)
            if run_dir is not None:
                run_dir.append_record(record)
                try:
                    run_dir.save_checkpoint(self.state_dict(generation))  # a Ctrl-C here waits for the write
                except DeferredInterrupt:
                    self.saved_generations = generation + 1
                    raise
                self.saved_generations = generation + 1
            if on_record is not None:
                on_record(record)
        return records


