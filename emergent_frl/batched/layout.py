"""Where each single-run parameter lives in the stack: one `Slot` per parameter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from emergent_frl.agents import StartToken
from emergent_frl.games import LanguageGame


@dataclass(frozen=True)
class Slot:
    """One single-run parameter as a stacked leaf tensor [S, ...].

    Weights of Linear layers and RNN cells are stored transposed ([in, out] per run), so the
    batched matmuls read them as they are and their gradients come out contiguous (which the fused
    Adam kernel needs). `leaf`: the key in `BatchedGame.leaves`.
    """

    name: str
    leaf: str
    transposed: bool = False

    def to_single(self, block: torch.Tensor) -> torch.Tensor:
        """One run's block of a leaf-shaped tensor -> the single-run parameter's layout (a view)."""
        return block.t() if self.transposed else block


def parameter_layout(game: LanguageGame) -> list[Slot]:
    """The slots of every parameter of `game`, in `named_parameters()` order."""
    slots: dict[str, Slot] = {}
    for prefix, module in game.named_modules():
        if isinstance(module, nn.Linear):
            slots[f"{prefix}.weight"] = Slot(f"{prefix}.weight", f"{prefix}.weight_t", transposed=True)
            if module.bias is not None:
                slots[f"{prefix}.bias"] = Slot(f"{prefix}.bias", f"{prefix}.bias")
        elif isinstance(module, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
            if not module.bias:
                raise ValueError(f"batched runs need RNN cells with biases; {prefix} has none")
            for kind in ("ih", "hh"):
                slots[f"{prefix}.weight_{kind}"] = Slot(f"{prefix}.weight_{kind}", f"{prefix}.weight_{kind}_t",
                                                        transposed=True)
                slots[f"{prefix}.bias_{kind}"] = Slot(f"{prefix}.bias_{kind}", f"{prefix}.bias_{kind}")
        elif isinstance(module, StartToken) and module.learned:
            slots[f"{prefix}.weight"] = Slot(f"{prefix}.weight", f"{prefix}.weight")
    names = [n for n, _ in game.named_parameters()]
    unknown = [n for n in names if n not in slots]
    if unknown:
        raise ValueError(f"batched runs do not know how to stack parameters {unknown}")
    return [slots[n] for n in names]
