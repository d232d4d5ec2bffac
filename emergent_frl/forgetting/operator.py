"""The forgetting operator: selection x mask x reset value, plus the policy around the weights.

One operator object lives for a whole run: ``prepare()`` at init (snapshots for rewinding, masks
drawn from the initial weights), ``apply()`` between generations, ``after_step()`` after each
optimizer step (IMP keeps pruned weights at zero), ``state_dict()`` in checkpoints so a resumed
run forgets exactly as the uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Literal

import torch
from torch import Tensor, nn

from .masks import MaskCriterion
from .reinit import ResetValue, draw_base_seed, fresh_values, reinit_owners
from .selection import ParameterSelection, describe, owner_name

KEPT_KINDS = ("keep", "rewind")
POLICY_KINDS = ("keep", "reset")
STATE_FORMAT = 1


@dataclass
class ForgetReport:
    """What one ``apply()`` did: per-parameter forgotten / total entry counts."""

    forgotten: dict[str, int]
    total: dict[str, int]
    norm_layers_reset: list[str] = field(default_factory=list)
    optimizer_states_cleared: int = 0

    @property
    def fraction(self) -> float:
        """Forgotten entries / selected entries (0.0 when nothing was selected)."""
        total = sum(self.total.values())
        return sum(self.forgotten.values()) / total if total else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary for a generation record."""
        return {
            "forgotten": dict(self.forgotten),
            "total": dict(self.total),
            "fraction": self.fraction,
            "norm_layers_reset": list(self.norm_layers_reset),
            "optimizer_states_cleared": self.optimizer_states_cleared,
        }


def _check_choice(field_name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"ForgettingOperator.{field_name}={value!r}; allowed: {', '.join(allowed)}")


class ForgettingOperator:
    """Forgets part of any ``nn.Module``: WHICH parameters (selection), WHICH entries (mask,
    True = kept), WHAT they become (reset), and what happens around them.

    kept: "rewind" rewinds the kept entries to the snapshot as well (IMP weight rewinding).
    hold_forgotten_at_zero: ``after_step()`` re-zeroes forgotten entries (needs reset 'zero').
    optimizer_state: "reset" clears the optimizer state (Adam moments, momentum) of every
        parameter this operator changed, in the optimizers given to ``apply()``.
    norm_statistics: "reset" resets running statistics of the normalization layers inside the
        selected modules.
    seed: seeds the operator's own generator, used when ``apply()``/``prepare()`` get none. The
        default 0 makes an operator reproducible on its own; two operators on the same seed draw
        the same masks and, for modules of the same name and shape, the same fresh values, so
        give each operator of one experiment (e.g. one per agent) its own seed, as the named
        strategies do.
    """

    def __init__(
        self,
        selection: ParameterSelection = ParameterSelection(),
        mask: MaskCriterion = MaskCriterion(),
        reset: ResetValue = ResetValue(),
        *,
        kept: Literal["keep", "rewind"] = "keep",
        hold_forgotten_at_zero: bool = False,
        optimizer_state: Literal["keep", "reset"] = "keep",
        norm_statistics: Literal["keep", "reset"] = "keep",
        seed: int = 0,
    ) -> None:
        parts = (("selection", selection, ParameterSelection), ("mask", mask, MaskCriterion), ("reset", reset, ResetValue))
        for field_name, value, cls in parts:
            if not isinstance(value, cls):
                raise ValueError(f"ForgettingOperator.{field_name} must be a {cls.__name__}, got {type(value).__name__}")
        _check_choice("kept", kept, KEPT_KINDS)
        _check_choice("optimizer_state", optimizer_state, POLICY_KINDS)
        _check_choice("norm_statistics", norm_statistics, POLICY_KINDS)
        if not isinstance(hold_forgotten_at_zero, bool):
            raise ValueError(f"ForgettingOperator.hold_forgotten_at_zero must be a bool, got {hold_forgotten_at_zero!r}")
        if hold_forgotten_at_zero and reset.kind != "zero":
            raise ValueError(
                f"ForgettingOperator.hold_forgotten_at_zero=True needs ResetValue('zero'), got reset kind {reset.kind!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"ForgettingOperator.seed={seed!r}; allowed: an int >= 0")
        self.selection, self.mask, self.reset = selection, mask, reset
        self.kept, self.hold_forgotten_at_zero = kept, hold_forgotten_at_zero
        self.optimizer_state, self.norm_statistics, self.seed = optimizer_state, norm_statistics, seed
        self._generator = torch.Generator().manual_seed(seed)
        self._masks: dict[str, Tensor] = {}
        self._held: dict[str, Tensor] = {}
        self._mask_fixed = False
        self._snapshot: dict[str, Tensor] | None = None
        self._applications = 0
        self._prepared = False

    # ----------------------------------------------------------------- description
    def config(self) -> dict:
        """Plain-Python description of the operator (for run configs and resume checks)."""
        return {
            "selection": dataclasses.asdict(self.selection),
            "mask": dataclasses.asdict(self.mask),
            "reset": dataclasses.asdict(self.reset),
            "kept": self.kept,
            "hold_forgotten_at_zero": self.hold_forgotten_at_zero,
            "optimizer_state": self.optimizer_state,
            "norm_statistics": self.norm_statistics,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        extras = ", ".join(
            f"{k}={getattr(self, k)!r}"
            for k in ("kept", "hold_forgotten_at_zero", "optimizer_state", "norm_statistics")
        )
        return f"ForgettingOperator({self.selection!r}, {self.mask!r}, {self.reset!r}, {extras})"

    @property
    def applications(self) -> int:
        """How many times ``apply()`` ran since ``prepare()``."""
        return self._applications

    @property
    def needs_snapshot(self) -> bool:
        return self.reset.kind == "rewind" or self.kept == "rewind"

    # ----------------------------------------------------------------- lifecycle
    def _select(self, model: nn.Module) -> dict[str, nn.Parameter]:
        params = self.selection.select(model)
        if not params:
            raise ValueError(
                f"ForgettingOperator.selection matched no parameters of {type(model).__name__}: {self.selection!r}"
            )
        if self.reset.kind == "reinit":
            reinit_owners(model, params)  # fail before any change if something cannot be re-initialized
        return params

    def _check_stored(self, what: str, stored: dict[str, Tensor], params: dict[str, nn.Parameter]) -> None:
        missing = [n for n in params if n not in stored or tuple(stored[n].shape) != tuple(params[n].shape)]
        extra = [n for n in stored if n not in params]
        if missing or extra:
            raise ValueError(
                f"ForgettingOperator: the stored {what} do not match this model's selection "
                f"(missing or reshaped: {describe(missing) or 'none'}; unexpected: {describe(extra) or 'none'}); "
                "was the operator prepared on a different model?"
            )

    def prepare(self, model: nn.Module, *, generator: torch.Generator | None = None) -> None:
        """Call once at init, before training: snapshot for rewinding, once_init masks.

        Starts the operator afresh (masks, snapshot and counters are replaced).
        """
        params = self._select(model)
        snapshot = {n: p.detach().clone() for n, p in params.items()} if self.needs_snapshot else None
        masks: dict[str, Tensor] = {}
        if self.mask.timing == "once_init":
            masks = self._compute(model, params, generator or self._generator)
        self._snapshot, self._masks, self._held = snapshot, masks, {}
        self._mask_fixed = self.mask.timing == "once_init"
        self._applications, self._prepared = 0, True

    def set_rewind_point(self, model: nn.Module) -> None:
        """Snapshot the current values as the rewind target (late rewinding to theta_k)."""
        params = self._select(model)
        self._snapshot = {n: p.detach().clone() for n, p in params.items()}

    def _compute(self, model: nn.Module, params: dict[str, nn.Parameter], generator: torch.Generator) -> dict[str, Tensor]:
        owners = {n: model.get_submodule(owner_name(n)) for n in params}
        survivors = self._masks if (self.mask.cumulative and self._masks) else None
        if survivors is not None:
            self._check_stored("masks", survivors, params)
        return self.mask.compute(params, generator=generator, owners=owners, survivors=survivors)

    def apply(
        self,
        model: nn.Module,
        *,
        generator: torch.Generator | None = None,
        optimizers: Iterable[torch.optim.Optimizer] = (),
    ) -> ForgetReport:
        """Forget: selected entries outside the mask get the reset value, kept entries stay
        bit-identical (or are rewound with kept='rewind'). Leaves the global RNG untouched."""
        optimizers = list(optimizers)
        if self.optimizer_state == "reset" and not optimizers:
            raise ValueError(
                "ForgettingOperator.optimizer_state='reset' needs the optimizers: apply(model, optimizers=[...])"
            )
        params = self._select(model)
        if self.mask.timing == "once_init" and not self._mask_fixed:
            raise RuntimeError("MaskCriterion.timing='once_init' needs prepare(model) before training, then apply()")
        if self.needs_snapshot:
            if self._snapshot is None:
                raise RuntimeError("rewinding needs a snapshot: call prepare(model) (or set_rewind_point) before training")
            self._check_stored("snapshot", self._snapshot, params)
        gen = generator if generator is not None else self._generator
        base_seed = None
        if self.reset.kind == "reinit":
            base_seed = self.reset.fixed_seed if self.reset.fixed_seed is not None else draw_base_seed(gen)

        if self._mask_fixed:
            self._check_stored("masks", self._masks, params)
            masks = {n: self._masks[n].to(params[n].device) for n in params}
        else:
            masks = self._compute(model, params, gen)
        forget_counts = {n: m.numel() - int(m.count_nonzero()) for n, m in masks.items()}
        fresh = {}
        if base_seed is not None:
            fresh = fresh_values(model, [n for n in params if forget_counts[n] > 0], base_seed)

        touched: list[nn.Parameter] = []
        with torch.no_grad():
            for name, p in params.items():
                if forget_counts[name] == 0 and self.kept == "keep":
                    continue
                if self.reset.kind == "reinit":
                    forgotten_value = fresh[name].to(device=p.device, dtype=p.dtype)
                elif self.reset.kind == "zero":
                    forgotten_value = torch.zeros((), dtype=p.dtype, device=p.device)
                else:
                    forgotten_value = self._snapshot[name].to(device=p.device, dtype=p.dtype)
                if forget_counts[name] == p.numel():
                    p.copy_(forgotten_value)
                else:
                    kept_value = p if self.kept == "keep" else self._snapshot[name].to(device=p.device, dtype=p.dtype)
                    p.copy_(torch.where(masks[name], kept_value, forgotten_value))
                touched.append(p)

        cleared = 0
        if self.optimizer_state == "reset":
            for optimizer in optimizers:
                for p in touched:
                    if p in optimizer.state:
                        del optimizer.state[p]
                        cleared += 1
        norm_reset = []
        if self.norm_statistics == "reset":
            for name, layer in self.selection.select_norm_layers(model).items():
                if callable(getattr(layer, "reset_running_stats", None)):
                    layer.reset_running_stats()
                    norm_reset.append(name)

        self._masks = masks
        self._held = {n: ~m for n, m in masks.items()} if self.hold_forgotten_at_zero else {}
        if self.mask.timing == "once_trained":
            self._mask_fixed = True
        self._applications += 1
        return ForgetReport(
            forgotten=forget_counts,
            total={n: p.numel() for n, p in params.items()},
            norm_layers_reset=norm_reset,
            optimizer_states_cleared=cleared,
        )

    def after_step(self, model: nn.Module) -> None:
        """Re-zero forgotten entries after an optimizer step; a no-op unless hold_forgotten_at_zero."""
        if not self.hold_forgotten_at_zero:
            return
        with torch.no_grad():
            for name, held in self._held.items():
                p = model.get_parameter(name)
                if held.device != p.device:
                    held = self._held[name] = held.to(p.device)
                p.masked_fill_(held, 0)

    def masks(self) -> dict[str, Tensor]:
        """The last masks used (or prepared), True = kept; copies."""
        return {n: m.clone() for n, m in self._masks.items()}

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        """Masks, snapshot, counters and generator state; tensors and plain Python only
        (readable with ``torch.load(weights_only=True)``)."""
        return {
            "format": STATE_FORMAT,
            "config": self.config(),
            "applications": self._applications,
            "prepared": self._prepared,
            "mask_fixed": self._mask_fixed,
            "masks": {n: m.detach().cpu().clone() for n, m in self._masks.items()},
            "snapshot": None if self._snapshot is None else {n: t.detach().cpu().clone() for n, t in self._snapshot.items()},
            "generator_state": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``; the operator's configuration must match."""
        required = ("format", "config", "applications", "prepared", "mask_fixed", "masks", "snapshot", "generator_state")
        missing = [k for k in required if k not in state]
        if missing:
            raise ValueError(f"ForgettingOperator.load_state_dict: missing keys {missing}")
        if state["format"] != STATE_FORMAT:
            raise ValueError(
                f"ForgettingOperator.load_state_dict: format {state['format']!r}; this version reads {STATE_FORMAT}"
            )
        mine = self.config()
        differing = [k for k in mine if _plain(mine[k]) != _plain(state["config"].get(k))]
        if differing:
            raise ValueError(
                f"ForgettingOperator.load_state_dict: the saved operator differs in {', '.join(differing)} "
                f"(saved {[state['config'].get(k) for k in differing]}, this one {[mine[k] for k in differing]})"
            )
        self._applications = int(state["applications"])
        self._prepared = bool(state["prepared"])
        self._mask_fixed = bool(state["mask_fixed"])
        self._masks = {n: m.to(torch.bool) for n, m in state["masks"].items()}
        self._held = {n: ~m for n, m in self._masks.items()} if self.hold_forgotten_at_zero else {}
        self._snapshot = None if state["snapshot"] is None else dict(state["snapshot"])
        self._generator.set_state(state["generator_state"])


def _plain(value):
    """Tuples and lists compare equal after a JSON/pickle round trip."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
