"""Which parameters an operator touches: named submodules, "from layer L on", the complement.

Selection is structural (by dotted module names in registration order) and then filtered
(weights only, normalization layers skipped), so one description works on any ``nn.Module``:
a speaker/listener pair, a torchvision ResNet, or a small CNN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from torch import nn

PARAMETER_KINDS = ("all", "weights")


def _norm_layer_types() -> tuple[type, ...]:
    """Normalization layers whose affine parameters are skipped unless asked for."""
    types: list[type] = [nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm]
    rms_norm = getattr(nn, "RMSNorm", None)  # torch >= 2.4
    if rms_norm is not None:
        types.append(rms_norm)
    return tuple(types)


NORM_LAYER_TYPES = _norm_layer_types()


def is_norm_layer(module: nn.Module) -> bool:
    return isinstance(module, NORM_LAYER_TYPES)


def owner_name(parameter_name: str) -> str:
    """Dotted name of the module that registers ``parameter_name`` ("" for the root)."""
    return parameter_name.rpartition(".")[0]


def _under(name: str, prefix: str) -> bool:
    """True if ``name`` is the module ``prefix`` or lives inside it (dotted-boundary match)."""
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def _structural(names: list[str], modules: tuple[str, ...], from_module: str | None, invert: bool) -> list[str]:
    """Names (in registration order) picked by modules / from_module / invert."""
    picked = [n for n in names if any(_under(n, m) for m in modules)]
    if from_module is not None:
        start = next((i for i, n in enumerate(names) if _under(n, from_module)), len(names))
        onward = set(names[start:])
        picked = [n for n in picked if n in onward]
    if invert:
        chosen = set(picked)
        picked = [n for n in names if n not in chosen]
    return picked


@dataclass(frozen=True)
class ParameterSelection:
    """WHICH parameters are forgotten.

    modules: dotted submodule names; "" is the whole model.
    from_module: everything registered from the first parameter of this submodule to the end
        (torchvision ResNet: "layer4" -> layer4.* and fc.*), intersected with ``modules``.
    invert: take the complement within the model (early-layer forgetting); applied before the
        ``parameters`` / ``include_norm`` filters.
    parameters: "weights" keeps only tensors with ndim >= 2 (no biases, no norm affine).
    include_norm: parameters owned by normalization layers are skipped unless True.
    """

    modules: tuple[str, ...] = ("",)
    from_module: str | None = None
    invert: bool = False
    parameters: Literal["all", "weights"] = "all"
    include_norm: bool = False

    def __post_init__(self) -> None:
        modules = self.modules
        if isinstance(modules, str):
            modules = (modules,)
        try:
            modules = tuple(modules)
        except TypeError:
            raise ValueError(
                f"ParameterSelection.modules must be a sequence of dotted module names, got {self.modules!r}"
            ) from None
        if not modules:
            raise ValueError("ParameterSelection.modules is empty; use ('',) for the whole model")
        if not all(isinstance(m, str) for m in modules):
            raise ValueError(f"ParameterSelection.modules must contain strings, got {modules!r}")
        object.__setattr__(self, "modules", modules)
        if self.from_module is not None and not isinstance(self.from_module, str):
            raise ValueError(f"ParameterSelection.from_module must be a module name or None, got {self.from_module!r}")
        if self.parameters not in PARAMETER_KINDS:
            raise ValueError(f"ParameterSelection.parameters={self.parameters!r}; allowed: {', '.join(PARAMETER_KINDS)}")
        if not isinstance(self.invert, bool) or not isinstance(self.include_norm, bool):
            raise ValueError("ParameterSelection.invert and include_norm must be bools")

    def _check_names(self, model: nn.Module) -> None:
        from_names = () if self.from_module is None else (self.from_module,)
        for field_name, names in (("modules", self.modules), ("from_module", from_names)):
            for name in names:
                if name == "":
                    continue
                try:
                    model.get_submodule(name)
                except AttributeError:
                    top = ", ".join(n for n, _ in model.named_children()) or "(none)"
                    raise ValueError(
                        f"ParameterSelection.{field_name}: {type(model).__name__} has no submodule {name!r}; "
                        f"its top-level modules are: {top}"
                    ) from None

    def select(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """name -> parameter, in registration order."""
        self._check_names(model)
        named = dict(model.named_parameters())
        picked = _structural(list(named), self.modules, self.from_module, self.invert)
        modules = dict(model.named_modules())
        out: dict[str, nn.Parameter] = {}
        for name in picked:
            param = named[name]
            if self.parameters == "weights" and param.ndim < 2:
                continue
            if not self.include_norm and is_norm_layer(modules[owner_name(name)]):
                continue
            out[name] = param
        return out

    def select_norm_layers(self, model: nn.Module) -> dict[str, nn.Module]:
        """Normalization layers inside the structural selection (for running-statistics resets)."""
        self._check_names(model)
        named = dict(model.named_modules())
        picked = _structural(list(named), self.modules, self.from_module, self.invert)
        return {n: named[n] for n in picked if is_norm_layer(named[n])}


def describe(names: Iterable[str], limit: int = 6) -> str:
    """Short human listing of names for error messages."""
    names = list(names)
    head = ", ".join(names[:limit])
    return head + (f", ... ({len(names)} in all)" if len(names) > limit else "")
