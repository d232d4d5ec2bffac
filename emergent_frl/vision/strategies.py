"""The image track's named strategies: which forgetting operator runs between generations, and
whether the learning-rate schedule restarts.

| name          | between generations                                            | schedule            |
|---------------|----------------------------------------------------------------|---------------------|
| llf           | re-initialize from `layer` on (incl. fc); `reverse`: before it   | restarted each gen. |
| ke            | KELS/WELS split at `split_rate`; reset hypothesis re-initialized | restarted each gen. |
| imp           | prune `prune_fraction` of the surviving weights (per tensor),   | restarted each gen. |
|               | rewind: `rewind_scope="model"` (default, as in OpenLTH) puts the |                     |
|               | whole network (survivors, biases, BatchNorm parameters and       |                     |
|               | statistics) back to the rewind point; "weights" only survivors   |                     |
| none          | nothing (restarts only: the control for forgetting)             | restarted each gen. |
| long_baseline | nothing; one schedule as long as all generations                 | one long cosine     |

The operators themselves come from `emergent_frl.forgetting` (shared with the language track).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..forgetting import ForgettingOperator, knowledge_evolution, later_layer_forgetting, magnitude_pruning
from .checks import check_real, check_types
from .models import DEFAULT_FORGET_FROM

STRATEGIES = ("llf", "ke", "imp", "none", "long_baseline")
SPLIT_MODES = ("kels", "wels")
REWIND_SCOPES = ("model", "weights")


@dataclass(frozen=True)
class StrategyConfig:
    name: str = "llf"
    layer: str | None = None       # llf: first forgotten module; None = the architecture's default
    reverse: bool = False          # llf: forget the modules *before* `layer` (early-layer forgetting)
    split_rate: float = 0.8        # ke: fraction kept (the fit hypothesis)
    split_mode: str = "kels"       # ke: kernel-level (structured) or weight-level (Bernoulli) split
    prune_fraction: float = 0.2    # imp: fraction of the surviving weights pruned per generation
    rewind_epoch: int = 0          # imp: rewind survivors to the weights after this epoch of gen. 0 (0 = init)
    rewind_scope: str = "model"    # imp: rewind the whole network ("model") or only the surviving weights

    def validate(self, *, epochs: int) -> None:
        check_types(self, {"name": "--strategy"})
        if self.name not in STRATEGIES:
            raise ValueError(f"--strategy {self.name!r}: allowed are {', '.join(STRATEGIES)}")
        if self.split_mode not in SPLIT_MODES:
            raise ValueError(f"--split-mode {self.split_mode!r}: allowed are {', '.join(SPLIT_MODES)}")
        check_real("--split-rate", self.split_rate, 0.0, 1.0, open_low=True, open_high=True)
        check_real("--prune-fraction", self.prune_fraction, 0.0, 1.0, open_low=True, open_high=True)
        if not 0 <= self.rewind_epoch < epochs:
            raise ValueError(f"--rewind-epoch {self.rewind_epoch}: allowed range is 0..{epochs - 1} "
                             f"(less than --epochs {epochs})")
        if self.rewind_scope not in REWIND_SCOPES:
            raise ValueError(f"--rewind-scope {self.rewind_scope!r}: allowed are {', '.join(REWIND_SCOPES)}")
        if self.reverse and self.name != "llf":
            raise ValueError(f"--reverse applies to --strategy llf only, not {self.name}")
        if self.rewind_epoch and self.name != "imp":
            raise ValueError(f"--rewind-epoch applies to --strategy imp only, not {self.name}")
        if self.layer is not None and self.name != "llf":
            raise ValueError(f"--layer applies to --strategy llf only, not {self.name}")

    @property
    def rewinds_model(self) -> bool:
        """IMP with whole-network rewinding (everything the pruning mask does not cover, too)."""
        return self.name == "imp" and self.rewind_scope == "model"

    @property
    def restarts_schedule(self) -> bool:
        return self.name != "long_baseline"

    def forget_layer(self, arch: str) -> str:
        return self.layer or DEFAULT_FORGET_FROM[arch]

    def build_operator(self, model: nn.Module, arch: str) -> ForgettingOperator | None:
        """The operator applied at the start of every generation >= 1 (None: no forgetting)."""
        if self.name == "llf":
            layer = self.forget_layer(arch)
            names = dict(model.named_modules())
            if layer not in names or layer == "":
                top = ", ".join(name for name, _ in model.named_children())
                raise ValueError(f"--layer {layer!r}: --arch {arch} has no such module; its top-level modules "
                                 f"are {top} (dotted names like layer4.1 also work)")
            operator = later_layer_forgetting(layer, reverse=self.reverse)
            if not operator.selection.select(model):
                held = [name for name, module in model.named_children() if any(p.ndim >= 2 for p in module.parameters())]
                raise ValueError(f"--layer {layer!r}{' --reverse' if self.reverse else ''} selects no conv or linear "
                                 f"weight of --arch {arch}, so nothing would be forgotten; name a module that holds "
                                 f"weights{' and is not the first' if self.reverse else ''}: {', '.join(held)}")
            return operator
        if self.name == "ke":
            return knowledge_evolution(self.split_rate, self.split_mode)
        if self.name == "imp":
            return magnitude_pruning(self.prune_fraction, rewind=True)
        return None
