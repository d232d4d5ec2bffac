"""What forgotten entries become, and fresh draws from a module's own initializer.

A "reinit" value is what the owning module's ``reset_parameters()`` would draw now: an LSTM's
uniform(-1/sqrt(H), 1/sqrt(H)), a Linear's kaiming-uniform, an Embedding's normal, a BatchNorm's
ones/zeros. The draw happens on a CPU copy of the owner inside ``torch.random.fork_rng``, seeded
from (base seed, owner name), so the caller's global RNG never moves, the values do not depend on
the device, and an owner's draw does not depend on which other owners are forgotten with it.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Iterable, Literal

import torch
from torch import Tensor, nn

from .selection import is_norm_layer, owner_name

RESET_KINDS = ("reinit", "zero", "rewind")


@dataclass(frozen=True)
class ResetValue:
    """WHAT forgotten entries become.

    kind: "reinit" = a fresh draw from the owning module's ``reset_parameters()``; "zero";
        "rewind" = the values snapshotted by ``ForgettingOperator.prepare()`` (or
        ``set_rewind_point()``).
    fixed_seed: reinit only; the same draw at every forgetting step (the paper's fixed-reinit
        ablation), independent of the run's generator.
    """

    kind: Literal["reinit", "zero", "rewind"] = "reinit"
    fixed_seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RESET_KINDS:
            raise ValueError(f"ResetValue.kind={self.kind!r}; allowed: {', '.join(RESET_KINDS)}")
        if self.fixed_seed is not None:
            if isinstance(self.fixed_seed, bool) or not isinstance(self.fixed_seed, int) or self.fixed_seed < 0:
                raise ValueError(f"ResetValue.fixed_seed={self.fixed_seed!r}; allowed: None or an int >= 0")
            if self.kind != "reinit":
                raise ValueError(f"ResetValue.fixed_seed only applies to kind='reinit', got kind={self.kind!r}")


def draw_base_seed(generator: torch.Generator | None) -> int:
    """One 62-bit seed from ``generator`` (from torch's global RNG when None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def owner_seed(base_seed: int, owner: str) -> int:
    """Stable per-owner seed (no Python ``hash``, which changes between processes)."""
    digest = hashlib.blake2b(f"{base_seed}/{owner}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def reinit_owner(model: nn.Module, parameter_name: str) -> str:
    """Name of the nearest module (owner or ancestor) with a callable ``reset_parameters``."""
    name = owner_name(parameter_name)
    while True:
        if callable(getattr(model.get_submodule(name), "reset_parameters", None)):
            return name
        if name == "":
            raise ValueError(
                f"ResetValue.kind='reinit': cannot re-initialize parameter {parameter_name!r} of "
                f"{type(model).__name__}: neither its module nor any ancestor defines reset_parameters(); "
                "give that module a reset_parameters() method, or use ResetValue('zero') or ResetValue('rewind')"
            )
        name = owner_name(name)


def reinit_owners(model: nn.Module, names: Iterable[str]) -> dict[str, list[str]]:
    """owner name -> parameter names it re-initializes (registration order); raises if one has none."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(reinit_owner(model, name), []).append(name)
    return groups


def _cpu_shell(module: nn.Module) -> nn.Module:
    """A CPU deep copy of ``module`` whose float parameters are NaN (to catch missed inits)."""
    memo: dict[int, object] = {}
    for p in module.parameters():
        data = torch.full(p.shape, float("nan"), dtype=p.dtype) if p.is_floating_point() else p.detach().to("cpu", copy=True)
        memo[id(p)] = nn.Parameter(data, requires_grad=p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True)
    return copy.deepcopy(module, memo)


def fresh_values(model: nn.Module, names: Iterable[str], base_seed: int) -> dict[str, Tensor]:
    """name -> a fresh CPU draw of that parameter from its owner's ``reset_parameters()``."""
    out: dict[str, Tensor] = {}
    for owner, members in reinit_owners(model, names).items():
        module = model.get_submodule(owner)
        shell = _cpu_shell(module)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(owner_seed(base_seed, owner))
            shell.reset_parameters()
        for name in members:
            relative = name[len(owner) + 1 :] if owner else name
            value = shell.get_parameter(relative).detach()
            if value.is_floating_point() and torch.isnan(value).any():
                raise ValueError(
                    f"ResetValue.kind='reinit': {type(module).__name__}.reset_parameters() (module {owner or '<root>'!r}) "
                    f"did not initialize parameter {relative!r}; use ResetValue('zero') or ResetValue('rewind') for it"
                )
            out[name] = value
    return out


def reset_module(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Fresh init of the whole module: every parameter via its owner's ``reset_parameters()``,
    plus the running statistics of its normalization layers.

    With a ``generator`` the global RNG is left untouched; with None the draw is seeded from
    torch's global RNG (like calling ``reset_parameters()`` directly). For the same generator state
    the values equal those of ``full_reset().apply(module, generator=...)``.
    """
    names = [n for n, _ in module.named_parameters()]
    reinit_owners(module, names)  # fail before any change
    values = fresh_values(module, names, draw_base_seed(generator))
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, value in values.items():
            params[name].copy_(value)
    for sub in module.modules():
        if is_norm_layer(sub) and callable(getattr(sub, "reset_running_stats", None)):
            sub.reset_running_stats()


__all__ = ["ResetValue", "RESET_KINDS", "reset_module", "fresh_values", "reinit_owners", "draw_base_seed"]
