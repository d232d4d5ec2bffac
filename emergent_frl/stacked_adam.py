"""The runs' own torch optimizers stepped together, for `StackedGames.step`.

Why: S runs x P parameters are S*P small tensors, and torch's fused Adam costs microseconds per
tensor whatever its size. So each run's Adam state lives in stacked tensors, as its parameters do:
an [S, ...] `exp_avg` and `exp_avg_sq` per parameter name and one flat tensor of step counts, and
the run's `optimizer.state[param]` holds views of its slices. That is the real torch state: a
checkpoint's `state_dict()` reads it (as copies, `compact_state_dict`), a `load_state_dict`
replaces it and the next plan takes the values in. Runs [a, b) next to each other that share
hyperparameters and step count are then one tensor of one functional-Adam call (fused on CPU,
foreach elsewhere); a run whose count differs (a fresh optimizer for one run, runs resumed at
different generations) is stepped as its own tensors, as before.

Exactness: every run's parameters and state are bit for bit what torch's fused Adam computes for
the run alone. The CPU kernel computes the last `numel % vector width` elements of a tensor in a
scalar loop that rounds differently from its vector loop (no fused multiply-add), and a run's
tail is not the stack's tail; so on CPU a parameter is stacked only when its size is a multiple of
the kernel's work unit (a cache line of elements: 16 float32), where every element takes the
vector loop either way; the others are stepped per run.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.optim.adam import adam as functional_adam

ADAM_STATE = {"step", "exp_avg", "exp_avg_sq"}
CACHE_LINE_BYTES = 64  # the CPU fused kernel's work unit (ATen's FusedAdamKernel.cpp)


def is_plain_adam(optimizer: torch.optim.Optimizer) -> bool:
    """torch's Adam with the options the functional step here reproduces."""
    if type(optimizer) is not torch.optim.Adam:
        return False
    return all(not g.get("amsgrad") and not g.get("maximize") and not g.get("differentiable")
               and not g.get("capturable") and not g.get("decoupled_weight_decay")
               and not isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups)


def stacks_exactly(stack: torch.Tensor, fused: bool) -> bool:
    """Whether one call over slices [a:b] of `stack` [S, ...] computes each run's slice bit for bit
    as a call over that slice alone: on CPU (fused), when every element takes the vector loop."""
    return not fused or stack[0].numel() % (CACHE_LINE_BYTES // stack.element_size()) == 0


def compact_state_dict(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Optimizer state-dict post-hook: copies of the state tensors that are views of a larger
    storage (the stacks), so a run's checkpoint holds its own state, not every run's (torch.save
    writes a view's whole storage). The live state is left as it is."""
    def own(value):
        if isinstance(value, torch.Tensor) and value.untyped_storage().nbytes() > value.numel() * value.element_size():
            return value.clone()
        return value

    state_dict["state"] = {k: {n: own(v) for n, v in s.items()} for k, s in state_dict["state"].items()}
    return state_dict


@dataclass
class _Member:
    """One run's parameter in one optimizer group; `adopted`: its state is views of the stacks."""

    run: int
    param: torch.Tensor
    state: dict[str, Any]
    adopted: bool


@dataclass
class _Call:
    """One functional-Adam call: its tensors, where each gradient comes from ((name, run, end):
    the piece of the gradient for runs [run, end), or row `run` if end is None), and the
    step-count slots it advances itself (the kernel advances the first of each range)."""

    hyper: dict[str, Any]
    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[tuple[str, int, int | None]] = field(default_factory=list)
    exp_avgs: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sqs: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    also_count: list[int] = field(default_factory=list)
    mask: torch.Tensor | None = None
    pieces: list[tuple[str, int]] = field(default_factory=list)  # (name, piece index) or (name, -1 - row)


class StackedAdams:
    """The Adam state of S runs in stacked tensors, and the plan that steps the runs' optimizers.

    `plan` after the optimizers, their state or the parameters changed; `stale` says whether an
    optimizer's state was replaced since; `step` steps them."""

    def __init__(self, params: Mapping[str, torch.Tensor], n_runs: int, device: torch.device):
        self.shapes = {n: p.shape for n, p in params.items()}
        self.n_runs = n_runs
        self.fused = device.type == "cpu"
        self.index = {name: k for k, name in enumerate(params)}
        self.exp_avg = {n: torch.zeros_like(p, memory_format=torch.contiguous_format) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p, memory_format=torch.contiguous_format) for n, p in params.items()}
        # torch's Adam keeps a step count per parameter; run r's of parameter k is slot r * P + k
        self.steps = torch.zeros(self.n_runs * len(self.index), dtype=torch.float32)
        self.calls: dict[str | None, list[_Call]] = {}
        self.cuts: dict[str, list[int]] = {}
        self.others: list[tuple[int, str, torch.optim.Optimizer]] = []
        self.names: list[dict[int, str]] = []
        self._seen: list[tuple[torch.optim.Optimizer, Any, int]] = []
        self._hooked: weakref.WeakSet = weakref.WeakSet()

    def fits(self, params: Mapping[str, torch.Tensor]) -> bool:
        return {n: p.shape for n, p in params.items()} == self.shapes

    def tensors_per_step(self) -> int:
        """How many tensors one step of every planned Adam hands to the kernel (S x parameters
        when nothing is stacked, one per parameter when everything is)."""
        return sum(len(call.params) for call in self.calls.get(None, []))

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, params: Mapping[str, torch.Tensor], names: list[dict[int, str]],
             optimizers: Sequence[Mapping[str, torch.optim.Optimizer]]) -> None:
        """Group the runs' plain Adams into functional-Adam calls, one per agent and hyperparameters,
        taking each run's Adam state into the stacks (torch's initial state where it has none)."""
        self.names, self.others, self._seen = names, [], []
        members: dict[tuple, dict[str, list[_Member]]] = {}
        claimed: set[tuple[int, str]] = set()
        for run, run_optimizers in enumerate(optimizers):
            for agent, optimizer in run_optimizers.items():
                if any(id(p) not in names[run] for g in optimizer.param_groups for p in g["params"]):
                    raise ValueError(f"run {run}: the {agent!r} optimizer holds tensors that are not its game's "
                                     "parameters")
                if not is_plain_adam(optimizer):
                    self.others.append((run, agent, optimizer))
                    continue
                if optimizer not in self._hooked:
                    optimizer.register_state_dict_post_hook(compact_state_dict)
                    self._hooked.add(optimizer)
                for group in optimizer.param_groups:
                    hyper = (agent, float(group["lr"]), tuple(group["betas"]), float(group["eps"]),
                             float(group["weight_decay"]))
                    for param in group["params"]:
                        name = names[run][id(param)]
                        state = optimizer.state[param]
                        # A parameter in two of a run's optimizers: the second keeps its own state.
                        adopted = (run, name) not in claimed and self._adopt(run, name, state)
                        claimed.add((run, name))
                        if not adopted and not state:
                            _initial_state(param, state)
                        members.setdefault(hyper, {}).setdefault(name, []).append(_Member(run, param, state, adopted))
                self._seen.append((optimizer, optimizer.state, len(optimizer.state)))
        counts = self.steps.tolist()
        self.calls, spans = {}, {}
        for (agent, lr, betas, eps, weight_decay), by_name in members.items():
            call = _Call(dict(lr=lr, beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay,
                              amsgrad=False, maximize=False, foreach=not self.fused, fused=self.fused,
                              capturable=False, differentiable=False))
            for name, group in by_name.items():
                for first, last in self._together(name, group, counts, stacks_exactly(params[name], self.fused)):
                    self._add(call, name, params[name], first, last)
                    if first.adopted:
                        spans.setdefault(name, []).append((first.run, last.run + 1))
            self.calls.setdefault(agent, []).append(call)
            self.calls.setdefault(None, []).append(call)
        self._cut(spans)

    def _slot(self, run: int, name: str) -> int:
        return run * len(self.index) + self.index[name]

    def _adopt(self, run: int, name: str, state: dict[str, Any]) -> bool:
        """Make `state` (one run's Adam state of one parameter) views of its slots in the stacks,
        its values copied in (zeros and step 0 if empty); False if it is not plain Adam state."""
        targets = {"step": self.steps[self._slot(run, name)], "exp_avg": self.exp_avg[name][run],
                   "exp_avg_sq": self.exp_avg_sq[name][run]}
        if not state:
            for target in targets.values():
                target.zero_()
        elif set(state) != ADAM_STATE or not all(_fits(state[k], t) for k, t in targets.items()):
            return False
        else:
            for key, target in targets.items():
                if state[key].data_ptr() != target.data_ptr():
                    target.copy_(state[key])
        state.update(targets)
        return True

    def _together(self, name: str, members: list[_Member], counts: list[float], exact: bool
                  ) -> Iterator[tuple[_Member, _Member]]:
        """(first, last) member of each range of runs stepped as one tensor: adopted state, runs
        next to each other, one step count, a parameter that stacks exactly."""
        members = sorted(members, key=lambda m: m.run)
        start = members[0]
        for prev, member in zip(members, members[1:] + [None]):
            if not (member is not None and exact and prev.adopted and member.adopted and member.run == prev.run + 1
                    and counts[self._slot(member.run, name)] == counts[self._slot(start.run, name)]):
                yield start, prev
                start = member

    def _add(self, call: _Call, name: str, stack: torch.Tensor, first: _Member, last: _Member) -> None:
        if not first.adopted:  # its own state tensors, stepped alone
            call.params.append(first.param)
            call.grads.append((name, first.run, None))
            call.exp_avgs.append(first.state["exp_avg"])
            call.exp_avg_sqs.append(first.state["exp_avg_sq"])
            call.steps.append(first.state["step"])
            return
        a, b = first.run, last.run + 1
        call.params.append(stack.detach()[a:b])
        call.grads.append((name, a, b))
        call.exp_avgs.append(self.exp_avg[name][a:b])
        call.exp_avg_sqs.append(self.exp_avg_sq[name][a:b])
        call.steps.append(self.steps[self._slot(a, name)])
        call.also_count.extend(self._slot(r, name) for r in range(a + 1, b))

    def _cut(self, spans: dict[str, list[tuple[int, int]]]) -> None:
        """How each gradient [S, ...] is split into the calls' pieces (one split per name), and each
        call's mask of the step counts it advances itself."""
        self.cuts, where = {}, {}
        for name, ranges in spans.items():
            bounds = sorted({0, self.n_runs} | {a for a, _ in ranges} | {b for _, b in ranges})
            self.cuts[name] = [b - a for a, b in zip(bounds, bounds[1:])]
            where[name] = {a: i for i, a in enumerate(bounds[:-1])}
        for call in {id(c): c for calls in self.calls.values() for c in calls}.values():
            call.pieces = [(n, -1 - a if b is None else where[n][a]) for n, a, b in call.grads]
            if call.also_count:
                call.mask = torch.zeros_like(self.steps)
                call.mask[call.also_count] = 1.0

    # -- stepping ------------------------------------------------------------------------------------
    def stale(self) -> bool:
        """Whether an optimizer's state was replaced (`load_state_dict`) or lost entries (a
        forgetting operator's optimizer reset) since the plan."""
        return any(o.state is not state or len(o.state) != n for o, state, n in self._seen)

    def step(self, grads: Mapping[str, torch.Tensor], only: str | None) -> None:
        """One step of the planned Adams (all, or agent `only`'s) and of the other optimizers."""
        # contiguous: the fused kernel is several times slower on strided views
        grads = {name: grad.contiguous() for name, grad in grads.items()}
        pieces = {name: grads[name].split(cuts) if len(cuts) > 1 else (grads[name],)
                  for name, cuts in self.cuts.items()}
        for call in self.calls.get(only, []):
            functional_adam(call.params, [grads[n][-1 - k] if k < 0 else pieces[n][k] for n, k in call.pieces],
                            call.exp_avgs, call.exp_avg_sqs, [], call.steps, **call.hyper)
            if call.mask is not None:
                self.steps.add_(call.mask)
        for run, agent, optimizer in self.others:
            if only is None or agent == only:
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        param.grad = grads[self.names[run][id(param)]][run]
                optimizer.step()


def _fits(value: Any, target: torch.Tensor) -> bool:
    return (isinstance(value, torch.Tensor) and value.shape == target.shape and value.dtype == target.dtype
            and value.device == target.device)


def _initial_state(param: torch.Tensor, state: dict[str, Any]) -> None:
    """torch's Adam state before its first step."""
    state["step"] = torch.tensor(0.0, dtype=torch.float32)
    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
