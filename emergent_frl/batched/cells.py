"""Stacked building blocks: a per-run Linear, tanh, and the recurrent cells over S runs at once."""

from __future__ import annotations

import torch
from torch import nn


def stacked_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Per-run Linear: x [S, ..., in], weight_t [S, in, out] (transposed), bias [S, out] -> [S, ..., out]."""
    runs, features = x.shape[0], x.shape[-1]
    flat = x.reshape(runs, -1, features)
    out = torch.bmm(flat, weight_t) if bias is None else torch.baddbmm(bias.unsqueeze(1), flat, weight_t)
    return out.view(*x.shape[:-1], weight_t.shape[-1])


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) as 2 sigmoid(2x) - 1: equal to float rounding (absolute error ~1e-7), and on CPU
    several times faster than torch.tanh, which dominated the batched LSTM's pointwise work."""
    return 2 * torch.sigmoid(2 * x) - 1


def cell_kind(cell: nn.Module) -> str:
    """Which `StackedCell` equations a single-run cell module uses: "lstm", "gru" or "rnn"."""
    if isinstance(cell, nn.LSTMCell):
        return "lstm"
    if isinstance(cell, nn.GRUCell):
        return "gru"
    if isinstance(cell, nn.RNNCell) and cell.nonlinearity == "tanh":
        return "rnn"
    raise ValueError(f"batched runs support LSTMCell, GRUCell and tanh RNNCell, got {cell!r}")


class StackedCell:
    """One stacked recurrent cell (S runs) with torch's LSTMCell / GRUCell / RNNCell (tanh)
    equations, tanh as `fast_tanh`. A step takes x [S, B, in] or None (a zero input: the sender's
    zero start token) and a state whose h and c may be None (zero: the receiver's initial state);
    the products with a zero operand are skipped, not computed."""

    def __init__(self, kind: str, leaves: dict[str, torch.Tensor], prefix: str):
        self.kind = kind
        self.w_ih, self.w_hh = leaves[f"{prefix}.weight_ih_t"], leaves[f"{prefix}.weight_hh_t"]
        self.b_ih, self.b_hh = leaves[f"{prefix}.bias_ih"].unsqueeze(1), leaves[f"{prefix}.bias_hh"].unsqueeze(1)
        self.bias = None if kind == "gru" else self.b_ih + self.b_hh
        self.hidden_size = self.w_hh.shape[1]

    def initial_state(self, h: torch.Tensor | None = None):
        """(h, c) with c zero (None); h None: the zero state."""
        return (h, None)

    @staticmethod
    def _affine(bias: torch.Tensor, pairs) -> torch.Tensor:
        """bias + sum of x @ w over the pairs whose x is not None (at least one)."""
        out = bias
        for x, w in pairs:
            if x is not None:
                out = torch.baddbmm(out, x, w)
        if out is bias:
            raise ValueError("a cell step needs an input or a state")
        return out

    def step(self, x: torch.Tensor | None, state):
        """x [S, B, in] or None, state (h [S, B, H] or None, c or None) -> the next state."""
        h, c = state
        if self.kind == "gru":
            sizes = [2 * self.hidden_size, self.hidden_size]
            i_rz, i_n = (self.b_ih if x is None else torch.baddbmm(self.b_ih, x, self.w_ih)).split(sizes, -1)
            h_rz, h_n = (self.b_hh if h is None else torch.baddbmm(self.b_hh, h, self.w_hh)).split(sizes, -1)
            r, z = torch.sigmoid(i_rz + h_rz).chunk(2, -1)
            n = fast_tanh(i_n + r * h_n)
            return (n - z * n if h is None else n + z * (h - n)), None
        return self._pointwise(self._affine(self.bias, ((h, self.w_hh), (x, self.w_ih))), c)

    def first_step_from(self, objects: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor,
                        x: torch.Tensor | None):
        """The first step from h0 = objects @ weight_t + bias (c zero) without forming h0, by
        matrix-chain order: h0 @ W_hh = [objects, 1] @ ([weight_t; bias] @ W_hh), cheaper when the
        objects are narrower than h. LSTM and RNN only (a GRU also uses h0 elementwise)."""
        chain = torch.bmm(torch.cat([weight_t, bias.unsqueeze(1)], 1), self.w_hh)  # [S, D + 1, G]
        objects = torch.cat([objects, objects.new_ones(*objects.shape[:-1], 1)], -1)
        return self._pointwise(self._affine(self.bias, ((objects, chain), (x, self.w_ih))), None)

    def _pointwise(self, gates: torch.Tensor, c: torch.Tensor | None):
        if self.kind == "rnn":
            return fast_tanh(gates), None
        # chunk, not slicing: its backward is one concatenation, not a zero-filled copy per slice.
        i, f, g, o = gates.chunk(4, -1)
        cell_input = torch.sigmoid(i) * fast_tanh(g)
        c = cell_input if c is None else torch.sigmoid(f) * c + cell_input
        return torch.sigmoid(o) * fast_tanh(c), c
