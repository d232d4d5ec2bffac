"""The agents' recurrent cells, written from plain tensor ops so one definition serves every path.

Why not `nn.LSTMCell`: it has no batching rule under `torch.func.vmap`, which is how many runs
train as one computation (`emergent_frl.stacked`). These cells keep torch's parameter names
(`weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`), shapes, equations and initialisation, so a
seed builds the same weights as before, state dicts and EGG interop are unchanged, and the
forgetting operators see the usual `reset_parameters()`.

What they add, for every path at once:
- a zero state or a zero input is `None`, and the products with it are skipped (the receiver
  starts from zeros; the paper's sender starts from a zero token);
- `hidden_product`: a caller that can form `W_hh @ h` more cheaply passes it in (the sender's
  first step, where h is a Linear of a narrow object code: matrix-chain order; the listener's
  second step, whose h takes one value per vocabulary entry: `agents._MessageReader`);
- tanh as 2 sigmoid(2x) - 1, equal to rounding and several times faster on CPU;
- a narrow input (a one-hot symbol) multiplies the weight's contiguous transpose, so that its
  gradient is formed in the order CPU GEMMs run fast (`narrow_linear`).

A new cell is one class here and one line in `CELLS`: the config knob `cell`, the agents, the
batched engine and the memory estimate all read this table.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor | None, torch.Tensor | None]  # (h, c): None is a zero tensor; c only for LSTMs


def narrow_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for an input with few features (a one-hot symbol, an object
    code). The same product, with the weight's transpose made contiguous: autograd then forms the
    weight's gradient as x^T @ grad ([in, B] @ [B, out]) instead of grad^T @ x, which CPU GEMMs run
    about 4x slower when `in` is narrow (8 to 12 columns: 48 against 12 us in the paper preset)."""
    transposed = weight.t().contiguous()
    return x @ transposed if bias is None else torch.addmm(bias, x, transposed)


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1 (absolute error ~1e-7); torch.tanh is slow on CPU."""
    return 2 * torch.sigmoid(2 * x) - 1


class RecurrentCell(nn.Module):
    """Base: torch's parameter layout for `gates` gate blocks, and the affine parts of a step.

    `forward(x, state=None, hidden_product=None) -> (h, c)`; `x` [B, input_size] or None (zeros).
    `hidden_product`: `W_hh @ h` (no bias) formed by the caller, used in place of that product;
    with the state's h, or (`chains_first_step`: h enters the step only through that product)
    instead of it, with h None. `hidden_product_of(h)` is that product.
    `egg_name`: the matching EGG cell ("rnn", "gru", "lstm"), or None.
    """

    gates = 1
    egg_name: str | None = None
    chains_first_step = True

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(rows))
        self.bias_hh = nn.Parameter(torch.empty(rows))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's RNN-cell initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)), in order."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def input_part(self, x: torch.Tensor | None) -> torch.Tensor:
        if x is None:
            return self.bias_ih
        if self.input_size < self.hidden_size and x.dim() == 2:
            return narrow_linear(x, self.weight_ih, self.bias_ih)
        return F.linear(x, self.weight_ih, self.bias_ih)

    def hidden_product_of(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight_hh)

    def hidden_part(self, h: torch.Tensor | None, hidden_product: torch.Tensor | None) -> torch.Tensor:
        if hidden_product is not None:
            return hidden_product + self.bias_hh
        return self.bias_hh if h is None else F.linear(h, self.weight_hh, self.bias_hh)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


def _batch_shaped(t: torch.Tensor, like: torch.Tensor | None, x: torch.Tensor | None) -> torch.Tensor:
    """A step from a zero input and a zero state gives bias-only gates; give them the batch shape."""
    if t.dim() > 1:
        return t
    ref = like if like is not None else x
    if ref is None:
        raise ValueError("a cell step needs an input, a state or a hidden product")
    return t.expand(*ref.shape[:-1], t.shape[-1])


def _fused_applies(cell: RecurrentCell, x, h, c, hidden_product) -> bool:
    """Plain eager steps with every operand present use torch's fused LSTM kernel (one op instead
    of about ten, the eager loop's cost); under vmap (no batching rule for it) and under
    torch.compile (which fuses the decomposed step itself) the equations above run instead."""
    return (type(cell) is LSTMCell and x is not None and h is not None and c is not None and hidden_product is None
            and not torch.compiler.is_compiling() and not _vmapped(x) and not _vmapped(h))


def _vmapped(t: torch.Tensor) -> bool:
    """Whether `t` is one run's view inside torch.func.vmap (a wrapper that unwraps to another
    tensor), through torch's public `torch.func.debug_unwrap`."""
    return torch.func.debug_unwrap(t, recurse=False) is not t


class RNNCell(RecurrentCell):
    """Elman cell: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (torch's nn.RNNCell, tanh)."""

    egg_name = "rnn"

    def forward(self, x, state: State | None = None, hidden_product=None) -> State:
        h = None if state is None else state[0]
        gates = self.input_part(x) + self.hidden_part(h, hidden_product)
        return fast_tanh(_batch_shaped(gates, hidden_product if h is None else h, x)), None


class LSTMCell(RecurrentCell):
    """torch's nn.LSTMCell: gates i, f, g, o; c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c')."""

    gates = 4
    egg_name = "lstm"

    def gate_sums(self, x, h, hidden_product) -> torch.Tensor:
        return self.input_part(x) + self.hidden_part(h, hidden_product)

    def forward(self, x, state: State | None = None, hidden_product=None) -> State:
        h, c = (None, None) if state is None else state
        if _fused_applies(self, x, h, c, hidden_product):
            return torch.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        gates = _batch_shaped(self.gate_sums(x, h, hidden_product), hidden_product if h is None else h, x)
        # chunk, not slicing: its backward is one concatenation, not a zero-filled copy per slice.
        i, f, g, o = gates.chunk(4, -1)
        new_c = torch.sigmoid(i) * fast_tanh(g)
        if c is not None:
            new_c = torch.sigmoid(f) * c + new_c
        return torch.sigmoid(o) * self.output_tanh(new_c), new_c

    def output_tanh(self, c: torch.Tensor) -> torch.Tensor:
        return fast_tanh(c)


class GRUCell(RecurrentCell):
    """torch's nn.GRUCell: r, z gates; n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h' = (1-z) n + z h."""

    gates = 3
    egg_name = "gru"
    chains_first_step = False  # h also enters elementwise (z * h)

    def forward(self, x, state: State | None = None, hidden_product=None) -> State:
        h = None if state is None else state[0]
        size = 2 * self.hidden_size
        i_rz, i_n = self.input_part(x).split([size, self.hidden_size], -1)
        h_rz, h_n = self.hidden_part(h, hidden_product).split([size, self.hidden_size], -1)
        r, z = torch.sigmoid(_batch_shaped(i_rz + h_rz, h, x)).chunk(2, -1)
        n = fast_tanh(i_n + r * h_n)
        return (n - z * n if h is None else n + z * (h - n)), None


class LayerNormLSTMCell(LSTMCell):
    """LSTM with layer normalisation (Ba, Kiros, Hinton 2016): each gate block's input and hidden
    products are normalised before they are summed, and so is the cell state before its tanh.
    Parameters: torch's LSTM layout plus `norm_ih`, `norm_hh` (over 4H) and `norm_c` (over H)."""

    egg_name = None
    chains_first_step = True

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.norm_ih = nn.LayerNorm(4 * hidden_size)
        self.norm_hh = nn.LayerNorm(4 * hidden_size)
        self.norm_c = nn.LayerNorm(hidden_size)

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(weight, -bound, bound)
        for norm in ("norm_ih", "norm_hh", "norm_c"):
            if hasattr(self, norm):
                getattr(self, norm).reset_parameters()

    def gate_sums(self, x, h, hidden_product) -> torch.Tensor:
        input_part = self.norm_ih.bias if x is None else self.norm_ih(F.linear(x, self.weight_ih))
        if hidden_product is not None:
            hidden = self.norm_hh(hidden_product)
        elif h is None:
            hidden = self.norm_hh.bias  # the norm of a zero vector is its shift
        else:
            hidden = self.norm_hh(F.linear(h, self.weight_hh))
        return input_part + hidden + self.bias_ih + self.bias_hh

    def output_tanh(self, c: torch.Tensor) -> torch.Tensor:
        return fast_tanh(self.norm_c(c))


CELLS: dict[str, type[RecurrentCell]] = {
    "lstm": LSTMCell,
    "gru": GRUCell,
    "rnn": RNNCell,
    "lnlstm": LayerNormLSTMCell,
}


def make_cell(cell: str, input_size: int, hidden_size: int) -> RecurrentCell:
    """One recurrent cell by name (a key of `CELLS`)."""
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r}: must be one of {sorted(CELLS)}")
    return CELLS[cell](input_size, hidden_size)
