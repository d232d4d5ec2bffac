"""Forget-and-relearn for EGG games: generations, our forgetting operators, topsim per generation.

EGG trains one game for N epochs; it has no generations, and ``reset_parameters()`` on its RNN
wrappers only redraws the start-of-sequence embedding. Here any EGG-style game (a module with
``sender`` / ``receiver`` submodules whose ``forward(sender_input, labels, receiver_input,
aux_input)`` returns ``(loss, interaction)``: ``SenderReceiverRnnReinforce``,
``SenderReceiverRnnGS``, ``SymbolGameReinforce``, ...) is trained in generations; between two,
our ``emergent_frl.forgetting`` operators forget parts of ``game.sender`` / ``game.receiver``
(``full_reset()`` redraws *every* parameter), the optimizer is rebuilt and the REINFORCE
baselines are restarted. Each generation's record holds greedy topsim (EGG's convention) and the
mean of every ``interaction.aux`` value, before and after forgetting.

Two ways in: ``run_egg_generations`` (a plain training loop) or ``EggGenerations.trainer_callback``
for an existing ``egg.core.Trainer``. Only torch is needed; EGG itself is never imported here.
"""
from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import ConstantInputWarning
from torch import nn

from analysis.compositionality import topographic_similarity
from emergent_frl.forgetting import ForgettingOperator
from emergent_frl.runs import RunDirectory

Batch = Sequence[Any]  # EGG's (sender_input, labels[, receiver_input[, aux_input]])
RESERVED = ("generation", "strategy", "loss", "topsim")


def fresh_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """A new optimizer of the same class over the same parameter groups and hyperparameters,
    with empty state (no Adam moments): what "rebuild the optimizer" means after a reset."""
    groups = [dict(group) for group in optimizer.param_groups]
    return type(optimizer)(groups, **optimizer.defaults)


def reset_baselines(game: nn.Module) -> int:
    """Restart REINFORCE baselines (EGG: ``mechanics.baselines``, a defaultdict, and
    ``SymbolGameReinforce.baseline``): a running mean of the old agents' loss would mis-score the
    relearning ones for a long time. Returns how many were restarted."""
    restarted = 0
    for module in game.modules():
        baselines = module.__dict__.get("baselines")
        if isinstance(baselines, defaultdict) and baselines.default_factory is not None:
            restarted += len(baselines)
            baselines.clear()
        baseline = module.__dict__.get("baseline")
        if baseline is not None and callable(getattr(baseline, "update", None)) and callable(getattr(baseline, "predict", None)):
            module.baseline = type(baseline)()
            restarted += 1
    return restarted


def message_symbols(message: torch.Tensor) -> np.ndarray:
    """Logged EGG messages as int symbols [N, T]: Gumbel-Softmax one-hots are argmax-ed and a
    single-symbol game's messages become length-1 messages. Post-EOS symbols are kept (as EGG)."""
    if message.is_floating_point():
        message = message.argmax(-1)
    if message.ndim == 1:
        message = message.unsqueeze(1)
    return message.detach().cpu().long().numpy()


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value


def _device(game: nn.Module) -> torch.device:
    return next(game.parameters()).device


def evaluate(game: nn.Module, batch: Batch, *, meanings: Any = None, eos: int | None = None) -> dict[str, float]:
    """One greedy (eval-mode) pass over ``batch``: the game's loss, topsim under EGG's convention
    and the mean of every ``interaction.aux`` value. ``meanings`` default to the flattened sender
    input (as EGG's TopographicSimilarity callback does); ``eos`` cuts messages after their first
    EOS (None keeps post-EOS symbols, as EGG does). The game's train/eval mode is restored."""
    was_training = game.training
    game.eval()
    try:
        with torch.no_grad():
            loss, interaction = game(*_move(tuple(batch), _device(game)))
    finally:
        game.train(was_training)
    message = getattr(interaction, "message", None)
    if message is None:
        raise ValueError("the game's test LoggingStrategy drops messages; topsim needs store_message=True")
    if meanings is None:
        meanings = batch[0].detach().cpu().reshape(len(batch[0]), -1).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # a constant language: nan in the record
        topsim = topographic_similarity(meanings, message_symbols(message), convention="egg", eos=eos)
    out = {k: float(torch.as_tensor(v).float().mean()) for k, v in (getattr(interaction, "aux", None) or {}).items()
           if k not in RESERVED}
    out.update(loss=float(loss), topsim=float(topsim))
    return out


class EggGenerations:
    """Generations of one EGG game: ``end_generation()`` records greedy metrics, applies each
    operator to its submodule of the game, rebuilds the optimizer, records again. Build it
    before training: the operators are prepared here (masks drawn from the initial weights).

    operators: role -> operator, a role being a submodule name of the game ("sender",
        "receiver", "receiver.agent", ...); ``{}`` is the no-reset control.
    eval_batch: the EGG batch (sender_input, labels[, receiver_input[, aux_input]]) whose greedy
        messages are scored, typically every object once.
    meanings: (N, n_attributes) attribute values for topsim; default the flattened sender input.
    fresh_optimizer: after forgetting, a new optimizer (same class and hyperparameters, empty
        state); False keeps it (operators with optimizer_state="reset" clear what they changed).
    reset_baselines: restart the game's REINFORCE baselines after forgetting.
    seed / generator: one random stream for every role's forgetting draws (two operators with
        their own default seeds would re-draw same-named modules identically); ``generator``
        overrides ``seed``.
    out: a run directory (config.json, generations.jsonl), readable by ``analysis``.
    """

    def __init__(
        self,
        game: nn.Module,
        operators: Mapping[str, ForgettingOperator],
        eval_batch: Batch,
        *,
        meanings: Any = None,
        fresh_optimizer: bool = True,
        reset_baselines: bool = True,
        eos: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        strategy: str | None = None,
        out: str | os.PathLike | None = None,
    ) -> None:
        if not isinstance(game, nn.Module):
            raise ValueError(f"game must be an nn.Module (an EGG game), got {type(game).__name__}")
        for role, operator in operators.items():
            if not isinstance(operator, ForgettingOperator):
                raise ValueError(f"operators[{role!r}] must be a ForgettingOperator, got {type(operator).__name__}")
            try:
                game.get_submodule(role)
            except AttributeError:
                children = ", ".join(n for n, _ in game.named_children()) or "(none)"
                raise ValueError(f"operators: {type(game).__name__} has no submodule {role!r}; its submodules: {children}") from None
        self.game, self.operators, self.eval_batch = game, dict(operators), tuple(eval_batch)
        self.meanings, self.eos, self.seed = meanings, eos, seed
        self.generator = generator if generator is not None else torch.Generator().manual_seed(seed)
        self.fresh_optimizer, self.reset_baselines = fresh_optimizer, reset_baselines
        self.strategy = strategy or ("forget_" + "_".join(self.operators) if self.operators else "no_reset")
        self.records: list[dict[str, Any]] = []
        for role, operator in self.operators.items():
            operator.prepare(game.get_submodule(role), generator=self.generator)  # masks / snapshots at init
        self.run_dir = RunDirectory(out) if out is not None else None
        self.write_config()

    def config(self, **extra: Any) -> dict[str, Any]:
        return {
            "egg_game": type(self.game).__name__,
            "strategy": self.strategy,
            "operators": {role: op.config() for role, op in self.operators.items()},
            "fresh_optimizer": self.fresh_optimizer,
            "reset_baselines": self.reset_baselines,
            "eos": self.eos,
            "seed": self.seed,
            **extra,
        }

    def write_config(self, **extra: Any) -> None:
        if self.run_dir is not None:
            self.run_dir.write_config(self.config(**extra))

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.game, self.eval_batch, meanings=self.meanings, eos=self.eos)

    def after_step(self) -> None:
        """Call after each optimizer step (keeps IMP's pruned weights at zero; else a no-op)."""
        for role, operator in self.operators.items():
            operator.after_step(self.game.get_submodule(role))

    def end_generation(
        self, optimizer: torch.optim.Optimizer, *, forget: bool = True, **fields: Any
    ) -> tuple[dict[str, Any], torch.optim.Optimizer]:
        """Record this generation (``fields`` are added, e.g. train_loss), then unless
        ``forget=False`` (the last generation) forget and rebuild. Returns the record and the
        optimizer to train the next generation with."""
        record: dict[str, Any] = {"generation": len(self.records), "strategy": self.strategy, **fields, **self.evaluate()}
        if forget and self.operators:
            record["forgotten_fraction"] = {}
            for role, operator in self.operators.items():
                report = operator.apply(self.game.get_submodule(role), generator=self.generator, optimizers=[optimizer])
                record["forgotten_fraction"][role] = report.fraction
            if self.fresh_optimizer:
                optimizer = fresh_optimizer(optimizer)
            if self.reset_baselines:
                reset_baselines(self.game)
            record.update({f"{k}_after_forgetting": v for k, v in self.evaluate().items()})
        else:  # the last generation, or the no-reset control: nothing changes
            record["topsim_after_forgetting"] = None
        self.records.append(record)
        if self.run_dir is not None:
            self.run_dir.append_record(record)
        return record, optimizer

    def train(self, data: Iterable[Batch], optimizer: torch.optim.Optimizer, iterations: int) -> float:
        """``iterations`` optimizer steps on batches from ``data`` (restarted when exhausted);
        returns the mean optimized loss."""
        self.game.train()
        device, batches, total = _device(self.game), iter(data), 0.0
        for step in range(iterations):
            try:
                batch = next(batches)
            except StopIteration:
                batches = iter(data)
                batch = next(batches, None)
                if batch is None:
                    raise ValueError("data yielded no batches") from None
            optimizer.zero_grad(set_to_none=True)
            loss, _ = self.game(*_move(tuple(batch), device))
            loss.backward()
            optimizer.step()
            self.after_step()
            total += float(loss.detach())
            if not math.isfinite(total):
                raise RuntimeError(f"non-finite loss at generation {len(self.records)}, iteration {step}")
        return total / iterations

    def run(
        self, data: Iterable[Batch], optimizer: torch.optim.Optimizer, generations: int, iterations_per_generation: int
    ) -> list[dict[str, Any]]:
        """Train and end ``generations`` generations (no forgetting after the last)."""
        for name, value in (("generations", generations), ("iterations_per_generation", iterations_per_generation)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        self.write_config(generations=generations, iterations_per_generation=iterations_per_generation)
        for generation in range(generations):
            train_loss = self.train(data, optimizer, iterations_per_generation)
            _, optimizer = self.end_generation(optimizer, forget=generation < generations - 1, train_loss=train_loss)
        return self.records

    def trainer_callback(self, epochs_per_generation: int, generations: int) -> "TrainerCallback":
        """An ``egg.core.Trainer`` callback ending a generation every ``epochs_per_generation``
        epochs; train for ``epochs_per_generation * generations`` epochs."""
        return TrainerCallback(self, epochs_per_generation, generations)


class TrainerCallback:
    """EGG Trainer hooks (duck-typed, so EGG is not imported): at each generation boundary the
    record is written and the rebuilt optimizer replaces ``trainer.optimizer``. A scheduler given
    to the Trainer keeps stepping the old optimizer: use fresh_optimizer=False with one."""

    def __init__(self, generations_driver: EggGenerations, epochs_per_generation: int, generations: int) -> None:
        for name, value in (("epochs_per_generation", epochs_per_generation), ("generations", generations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        if any(op.hold_forgotten_at_zero for op in generations_driver.operators.values()):
            raise ValueError("operators that hold weights at zero need after_step() per step; use run_egg_generations")
        self.driver, self.every, self.generations = generations_driver, epochs_per_generation, generations
        self.trainer = None
        generations_driver.write_config(generations=generations, epochs_per_generation=epochs_per_generation)

    def on_train_begin(self, trainer_instance: Any) -> None:
        self.trainer = trainer_instance

    def on_epoch_end(self, loss: float, logs: Any, epoch: int) -> None:
        if epoch % self.every or len(self.driver.records) >= self.generations:
            return
        if self.trainer is None:
            raise RuntimeError("TrainerCallback: on_train_begin was not called; pass it in Trainer(callbacks=[...])")
        forget = len(self.driver.records) < self.generations - 1
        _, self.trainer.optimizer = self.driver.end_generation(self.trainer.optimizer, forget=forget, train_loss=loss)

    def on_train_end(self) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_validation_begin(self, epoch: int) -> None: ...
    def on_validation_end(self, loss: float, logs: Any, epoch: int) -> None: ...
    def on_batch_end(self, logs: Any, loss: Any, batch_id: int, is_training: bool = True) -> None: ...
    def on_early_stopping(self, *args: Any, **kwargs: Any) -> None: ...


def run_egg_generations(
    game: nn.Module,
    data: Iterable[Batch],
    operators: Mapping[str, ForgettingOperator],
    generations: int,
    iterations_per_generation: int,
    *,
    eval_batch: Batch,
    optimizer: torch.optim.Optimizer | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Forget-and-relearn on an EGG game with a plain loop; returns one record per generation.

    ``data`` yields EGG batches (a DataLoader works); ``optimizer`` defaults to Adam(lr=1e-3)
    over the game's parameters; ``options`` are ``EggGenerations``'s (meanings, out, ...).
    """
    if optimizer is None:
        optimizer = torch.optim.Adam(game.parameters(), lr=1e-3)
    driver = EggGenerations(game, operators, eval_batch, **options)
    return driver.run(data, optimizer, generations, iterations_per_generation)


__all__ = [
    "EggGenerations",
    "TrainerCallback",
    "evaluate",
    "fresh_optimizer",
    "message_symbols",
    "reset_baselines",
    "run_egg_generations",
]
