"""`StackedAdam`: torch's Adam for every (run, agent) of a batch, resettable per run."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.optim.adam import adam as adam_update

from emergent_frl.batched.layout import Slot

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class StackedAdam:
    """One Adam per (run, agent) over stacked parameters, as `build_optimizers` gives one run.

    State per (run, single-run parameter): exp_avg, exp_avg_sq (laid out like the leaves) and a
    step count, so one run's state can be reset (fresh optimizers, an operator clearing state)
    while the others go on. A step is torch's fused Adam kernel (`torch._fused_adam_`, what
    `torch.optim.Adam(fused=True)` runs; elsewhere `torch.optim.adam.adam`) on per-(run,
    parameter) views, one call per learning rate. `lrs[name]` holds each run's learning rate for
    that parameter; betas and eps are torch's defaults, as in `build_optimizers`.
    """

    def __init__(self, leaves: dict[str, torch.Tensor], slots: Sequence[Slot], lrs: dict[str, Sequence[float]]):
        self.leaves, self.slots = leaves, list(slots)
        first = next(iter(leaves.values()))
        self.n_runs, device = first.shape[0], first.device
        self.exp_avg = {n: torch.zeros_like(t) for n, t in leaves.items()}
        self.exp_avg_sq = {n: torch.zeros_like(t) for n, t in leaves.items()}
        self.steps = torch.zeros(len(self.slots), self.n_runs, device=device)
        self.fused = device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adam_")
        self._index = {slot.name: k for k, slot in enumerate(self.slots)}
        # Per-(slot, run) views, slot-major, as `_per_run` lays out the gradients.
        self._views = (
            self._per_run({n: t.detach() for n, t in leaves.items()}),
            self._per_run(self.exp_avg),
            self._per_run(self.exp_avg_sq),
            list(self.steps.view(-1).unbind(0)),
        )
        # (slot, run) view indices per learning rate: for every agent together (None) and per agent
        # ("sender", "receiver": the first part of a slot's name), for steps of one agent's Adam.
        self._groups: dict[str | None, dict[float, list[int]]] = {}
        for k, slot in enumerate(self.slots):
            for agent in (None, slot.name.split(".")[0]):
                for run, lr in enumerate(lrs[slot.name]):
                    self._groups.setdefault(agent, {}).setdefault(float(lr), []).append(k * self.n_runs + run)
        self._agent_slots = {agent: [k for k, slot in enumerate(self.slots) if slot.name.split(".")[0] == agent]
                             for agent in self._groups if agent is not None}

    def _per_run(self, stacked: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [block for slot in self.slots for block in stacked[slot.leaf].unbind(0)]

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], only: str | None = None) -> None:
        """One Adam step of every run with the leaves' gradients ({leaf name: [S, ...]}); `only`
        ("sender" or "receiver"): step that agent's Adam alone, the other's state is left as it is."""
        if only is not None and only not in self._agent_slots:
            raise ValueError(f"StackedAdam.step(only={only!r}): agents are {sorted(self._agent_slots)}")
        params, exp_avgs, exp_avg_sqs, steps = self._views
        views = (params, self._per_run(grads), exp_avgs, exp_avg_sqs, steps)
        groups = self._groups[only]
        if self.fused:  # one op for every (run, parameter) step count
            if only is None:
                self.steps.add_(1)
            else:
                self.steps[self._agent_slots[only]] += 1
        for lr, index in groups.items():
            lists = views if only is None and len(groups) == 1 else tuple([lst[i] for i in index] for lst in views)
            if self.fused:  # what torch.optim.adam.adam(fused=True) calls, minus its per-tensor step increments
                torch._fused_adam_(*lists[:4], [], lists[4], lr=lr, beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1],
                                   weight_decay=0.0, eps=ADAM_EPS, amsgrad=False, maximize=False)
            else:
                adam_update(*lists[:4], [], lists[4], foreach=False, fused=False, amsgrad=False,
                            beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], lr=lr, weight_decay=0.0, eps=ADAM_EPS,
                            maximize=False)

    @torch.no_grad()
    def export_run(self, run: int, optimizer: torch.optim.Adam, names: dict[int, str]) -> None:
        """Write run `run`'s state into a single-run Adam (`names`: id(param) -> parameter name)."""
        optimizer.state.clear()
        for group in optimizer.param_groups:
            for p in group["params"]:
                k = self._index[names[id(p)]]
                step = float(self.steps[k, run])
                if step == 0:
                    continue  # torch's Adam holds no state for a parameter it never stepped
                slot = self.slots[k]
                optimizer.state[p] = {
                    "step": torch.tensor(step, dtype=torch.float32),
                    "exp_avg": _copy(slot.to_single(self.exp_avg[slot.leaf][run])),
                    "exp_avg_sq": _copy(slot.to_single(self.exp_avg_sq[slot.leaf][run])),
                }

    @torch.no_grad()
    def import_run(self, run: int, optimizer: torch.optim.Adam, names: dict[int, str]) -> None:
        """Take run `run`'s state from a single-run Adam; parameters it holds no state for restart."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                k = self._index[names[id(p)]]
                slot, state = self.slots[k], optimizer.state.get(p)
                m = slot.to_single(self.exp_avg[slot.leaf][run])
                v = slot.to_single(self.exp_avg_sq[slot.leaf][run])
                if state:
                    self.steps[k, run] = float(state["step"])
                    m.copy_(state["exp_avg"])
                    v.copy_(state["exp_avg_sq"])
                else:
                    self.steps[k, run] = 0.0
                    m.zero_()
                    v.zero_()


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.clone(memory_format=torch.contiguous_format)
