"""Many games of one shape trained as one computation: the games' own modules, parameters stacked.

Why: forget-and-relearn science needs many seeds x strategies x long runs of tiny networks, and one
run's step is a few hundred tiny ops, bound by per-op overhead. Stacking S runs' parameters along a
leading dimension and running the game's own `forward` under `torch.func.vmap(functional_call)`
makes every op serve all S runs, with no second copy of the agents, games or losses: whatever the
modules compute for one run (a user's own agents included) is what the batch computes.

    stacked = StackedGames(games)              # S games of one shape (built-in or your own agents)
    stats = stacked.train_step(generators, optimizers)    # one iteration of every run

How state is kept: each game's parameters and buffers become views into the stacked tensors
(`link`), so the games stay the real thing. Their own code (evaluation, forgetting, checkpoints,
their own torch optimizers) reads and writes the stack directly, with no copying at boundaries;
`link` again after code that may have replaced a parameter re-attaches it.
Randomness: each run's batch comes from its game's own `sample_batch` and its sampling noise from
its own generator, in the order and shapes the single run draws them (`emergent_frl.noise`), so
run i consumes the random stream of the same seed trained alone. The built-in games' batches are
arranged from those draws inside the step.
Gradients: compiled, one graph computes each run's loss and its gradients
(`torch.func.grad_and_value`); eager, autograd does.
Optimizers: each run keeps its own torch optimizers (one Adam per agent, `build_optimizers`);
plain Adams are stepped together by torch's functional Adam (fused on CPU, foreach on CUDA), one
call per learning rate, with their state stacked as the parameters are, so that runs at one step
count are one tensor (`emergent_frl.stacked_adam`); any other optimizer steps on its own.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch.func import functional_call, grad_and_value, vmap

from emergent_frl.compiling import MaybeCompiled
from emergent_frl.games import GameBatch, LanguageGame
from emergent_frl.noise import DrawRecorder, NoiseTape, draw_noise
from emergent_frl.stacked_adam import StackedAdams

RANDOM_IN_VMAP = "random operation"  # torch's words when something draws inside vmap
NO_BATCHING_RULE = "Batching rule not implemented"  # ... and when an operation has no vmap rule


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


def check_same_shape(index: int, game: LanguageGame, first: LanguageGame) -> None:
    """Raise if `game` cannot share a batch with `first`: other classes, parameter or buffer
    shapes, batch size, or any setting its forward reads from plain attributes."""
    def differs(what: str, a, b) -> None:
        if a != b:
            raise ValueError(f"game {index}: {what}={a!r}, game 0 has {b!r}; only games of one shape share a batch")

    differs("type", type(game).__name__, type(first).__name__)
    for role in ("sender", "receiver"):
        differs(f"{role} type", type(getattr(game, role)).__name__, type(getattr(first, role)).__name__)
    differs("parameters", [(n, tuple(p.shape)) for n, p in game.named_parameters()],
            [(n, tuple(p.shape)) for n, p in first.named_parameters()])
    differs("buffers", [(n, tuple(b.shape), b.dtype) for n, b in game.named_buffers()],
            [(n, tuple(b.shape), b.dtype) for n, b in first.named_buffers()])
    for attr in ("channel", "batch_size", "n_candidates"):
        differs(attr, getattr(game, attr, None), getattr(first, attr, None))
    for attr in ("vocab_size", "max_len", "eos", "temperature", "straight_through"):
        differs(f"sender.{attr}", getattr(game.sender, attr, None), getattr(first.sender, attr, None))
    code = lambda fn: getattr(fn, "__code__", fn)  # noqa: E731  (one loss closure per game is fine)
    differs("loss", code(game.loss_fn), code(first.loss_fn))
    differs("device", game.device, first.device)


Fields = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None", "dict[str, torch.Tensor] | None"]


def _fields(batch: GameBatch) -> Fields:
    """What the step reads of a batch: (sender_input, labels, receiver_input, aux_input)."""
    return batch.sender_input, batch.labels, batch.receiver_input, batch.aux_input or None


@dataclass
class StackedBatch:
    """One step's inputs for S runs, stacked [S, ...], and each run's noise.

    Games that sample by draws (`LanguageGame.samples_by_draws`, the built-in games) give the
    runs' random draws: the batch they make is arranged inside the step, so that under
    torch.compile its dozen small integer ops fuse with the forward. A game with its own
    `sample_batch` gives the batch (`given`). Either way `sender_input`, `labels`,
    `receiver_input` and `aux_input` read the stacked batch."""

    noise: list[torch.Tensor]
    draws: tuple[torch.Tensor, ...] | None = None
    given: Fields | None = None
    game: LanguageGame | None = None  # arranges `draws`

    def fields(self) -> Fields:
        if self.given is None:
            self.given = _fields(self.game.batch_from_draws(self.draws))
        return self.given

    sender_input = property(lambda self: self.fields()[0])
    labels = property(lambda self: self.fields()[1])
    receiver_input = property(lambda self: self.fields()[2])
    aux_input = property(lambda self: self.fields()[3])


def _stack_batches(batches: Sequence[GameBatch]) -> Fields:
    first = batches[0]
    receiver_input = None if first.receiver_input is None else torch.stack([b.receiver_input for b in batches])
    aux = None
    if first.aux_input:
        aux = {k: torch.stack([b.aux_input[k] for b in batches]) for k in first.aux_input}
    return (torch.stack([b.sender_input for b in batches]), torch.stack([b.labels for b in batches]),
            receiver_input, aux)


class StackedGames:
    """S games of one shape (see `check_same_shape`) as one computation. `compile`: see
    `emergent_frl.compiling.MaybeCompiled` (False, True, "auto" or a torch.compile mode)."""

    def __init__(self, games: Sequence[LanguageGame], *, compile: bool | str = False):
        if not games:
            raise ValueError("StackedGames needs at least one game")
        for i, game in enumerate(games):
            check_same_shape(i, game, games[0])
        self.games = list(games)
        self.n_runs = len(self.games)
        self.template = self.games[0]
        self.device = self.template.device
        # One run needs no stack: its game's own tensors are used as they are (no vmap either).
        self.solo = self.n_runs == 1
        if not self.solo:
            params = [dict(g.named_parameters()) for g in self.games]
            buffers = [dict(g.named_buffers()) for g in self.games]
            with torch.no_grad():
                self.params = {n: torch.stack([p[n] for p in params]).requires_grad_() for n in params[0]}
                self.buffers = {n: torch.stack([b[n] for b in buffers]) for n in buffers[0]}
        self.link()
        self._draws: list[tuple[tuple[int, ...], torch.dtype]] | None = None
        # The games sample as the template does (same class code, same training pool): the runs'
        # draws are arranged into batches by one call; otherwise each game samples its own batch.
        pool = self.template.train_pool
        self._shared_sampling = all(g.samples_by_draws() and torch.equal(g.train_pool, pool) for g in self.games)
        self._loss = MaybeCompiled(self._losses, compile)
        self._joint = MaybeCompiled(self._losses_and_gradients, compile)
        self._adams: StackedAdams | None = None
        self._optimizers_seen: list[dict[str, torch.optim.Optimizer]] | None = None

    # -- the games' tensors are views into the stack ------------------------------------------------
    @torch.no_grad()
    def link(self) -> None:
        """Make every game's parameters and buffers views of its slice of the stack; a tensor that
        is not (a module or parameter replaced since) is first copied into its slice."""
        self._optimizers_seen = None  # the optimizer plan is rebuilt on the next step
        if self.solo:  # [1, ...] views of the one game's own tensors, read-only
            self.params = {n: p.detach().unsqueeze(0) for n, p in self.template.named_parameters()}
            self.buffers = {n: b.unsqueeze(0) for n, b in self.template.named_buffers()}
            return
        for i, game in enumerate(self.games):
            for table, named in ((self.params, game.named_parameters()), (self.buffers, game.named_buffers())):
                named = dict(named)
                if set(named) != set(table):
                    raise ValueError(f"run {i}: its modules now hold {sorted(set(named) ^ set(table))[:5]} "
                                     "that the batch does not (or the reverse); a batch keeps one structure")
                for name, tensor in named.items():
                    block = table[name].detach()[i]
                    if tensor.data_ptr() == block.data_ptr() and tensor.shape == block.shape:
                        continue
                    if tensor.shape != block.shape:
                        raise ValueError(f"run {i}: {name} now has shape {tuple(tensor.shape)}, the batch "
                                         f"{tuple(block.shape)}")
                    block.copy_(tensor)
                    tensor.data = block

    def parameters_by_name(self) -> dict[str, torch.Tensor]:
        """{parameter name: [S, *shape]} (copies), e.g. to compare runs."""
        return {n: p.detach().clone() for n, p in self.params.items()}

    # -- one step -------------------------------------------------------------------------------------
    def sample(self, generators: Sequence[torch.Generator]) -> StackedBatch:
        """Each run's batch draws (or, for a game with its own `sample_batch`, its batch), then its
        noise, both from its own generator, in the single run's order."""
        if len(generators) != self.n_runs:
            raise ValueError(f"{len(generators)} generators for {self.n_runs} runs")
        if self._draws is None:
            self._draws = self._discover_draws()
        batch_size = self.template.batch_size
        draws, batches, noise = [], [], []
        for game, generator in zip(self.games, generators):
            if self._shared_sampling:
                draws.append(game.draw_batch(batch_size, generator))
            else:
                batches.append(game.sample_batch(batch_size, generator))
            noise.append(draw_noise(self._draws, generator, self.device))
        stacked_noise = [torch.stack([drawn[k] for drawn in noise]) for k in range(len(self._draws))]
        if self._shared_sampling:  # arranged in the step, every run's draws by one call
            return StackedBatch(stacked_noise, draws=tuple(torch.stack(parts) for parts in zip(*draws)),
                                game=self.template)
        return StackedBatch(stacked_noise, given=_stack_batches(batches))

    @torch.no_grad()
    def _discover_draws(self) -> list[tuple[tuple[int, ...], torch.dtype]]:
        """The shapes of the random draws one training step makes: one forward of the template on a
        batch from a throwaway generator, with a recorder in place of the generator."""
        game = self.template
        batch = game.sample_batch(game.batch_size, torch.Generator(device=self.device).manual_seed(0))
        recorder = DrawRecorder()
        game(batch.sender_input, batch.labels, batch.receiver_input, batch.aux_input, generator=recorder)
        return recorder.shapes

    def _loss_and_stats(self, params, buffers, fields: Fields, noise, baseline):
        """One run's (loss, stats [4]): the template's own forward on that run's tensors."""
        out = functional_call(self.template, (params, buffers), tuple(fields),
                              {"generator": NoiseTape(noise), "update_baseline": False,
                               "baseline_value": baseline}, strict=True)
        return out.loss, out.training_stats()

    def _run_inputs(self, buffers, draws, given, noise, baseline):
        """The step's inputs with the batch arranged, and vmap's in_dims for (params, buffers, fields,
        noise, baseline); for one run, its own tensors without the leading run dimension and in_dims
        None."""
        template = self.template
        if self.solo:
            first = lambda t: None if t is None else t[0]  # noqa: E731
            if given is None:
                fields = _fields(template.batch_from_draws(tuple(d[0] for d in draws)))
            else:
                fields = (given[0][0], given[1][0], first(given[2]),
                          None if given[3] is None else {k: v[0] for k, v in given[3].items()})
            return {n: b[0] for n, b in buffers.items()}, fields, [n[0] for n in noise], first(baseline), None
        fields = _fields(template.batch_from_draws(draws)) if given is None else given
        in_dims = (0, 0, (0, 0, None if fields[2] is None else 0, None if fields[3] is None else 0), 0,
                   None if baseline is None else 0)
        return buffers, fields, noise, baseline, in_dims

    def _losses(self, params, buffers, draws, given, noise, baseline):
        """(loss [S], stats [S, 4]): the template game's own forward, once per run, under vmap,
        on the batch `given` or the one the template arranges from the runs' `draws`."""
        buffers, fields, noise, baseline, in_dims = self._run_inputs(buffers, draws, given, noise, baseline)
        if in_dims is None:  # one run: the game's own parameters, as autograd's leaves
            out = self.template(*fields, generator=NoiseTape(noise), update_baseline=False, baseline_value=baseline)
            return out.loss.unsqueeze(0), out.training_stats().unsqueeze(0)
        return vmap(self._loss_and_stats, in_dims=in_dims)(params, buffers, fields, noise, baseline)

    def _losses_and_gradients(self, params, buffers, draws, given, noise, baseline):
        """(loss [S], stats [S, 4], {name: gradient [S, ...]}) by `torch.func.grad_and_value` of
        each run's forward: compiled, the forward and the gradients are one graph."""
        buffers, fields, noise, baseline, in_dims = self._run_inputs(buffers, draws, given, noise, baseline)
        joint = grad_and_value(self._loss_and_stats, has_aux=True)  # -> (grads, (loss, stats))
        if in_dims is None:
            grads, (loss, stats) = joint({n: p[0] for n, p in params.items()}, buffers, fields, noise, baseline)
            return loss.unsqueeze(0), stats.unsqueeze(0), {n: g.unsqueeze(0) for n, g in grads.items()}
        grads, (loss, stats) = vmap(joint, in_dims=in_dims)(params, buffers, fields, noise, baseline)
        return loss, stats, grads

    @contextmanager
    def _explained_errors(self):
        """Say what to do when the agents cannot run batched."""
        try:
            yield
        except RuntimeError as error:
            if RANDOM_IN_VMAP in str(error):
                raise RuntimeError(
                    "the agents draw random numbers with a torch function inside the batched step; batched "
                    "runs need every random draw to come through emergent_frl.noise (sample_categorical, "
                    "exponential_noise) with the generator the agents are given, or train them with "
                    "--engine reference (docs/own_agents.md)") from error
            if NO_BATCHING_RULE in str(error):
                raise RuntimeError(
                    f"the agents use a torch operation that vmap cannot batch over runs ({_first_line(error)}); "
                    "use the cells of emergent_frl.cells instead of nn.LSTM/nn.GRU(Cell), or train them with "
                    "--engine reference (docs/own_agents.md)") from error
            raise

    def _baseline_input(self) -> torch.Tensor | None:
        """A copy of the runs' running means for the step to read (the buffers change after it)."""
        return None if self.template.baseline is None else self.buffers["baseline.mean"].clone()

    @torch.no_grad()
    def _update_baselines(self, stats: torch.Tensor) -> None:
        """Each run's running-mean baseline takes its mean task loss, as the single game's forward
        does (outside the possibly compiled step: a buffer changed inside it could be read back by
        the compiled backward, which may recompute the advantage from it)."""
        if self.template.baseline is not None:
            self.template.baseline.updated(self.buffers["baseline.mean"], self.buffers["baseline.count"], stats[:, 1])

    def losses(self, batch: StackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-run loss [S] to backpropagate, per-run stats [S, 4] in `TRAINING_STATS` order); then each
        run's running-mean baseline takes its mean task loss, as the single game's forward does."""
        with self._explained_errors():
            loss, stats = self._loss(self.params, self.buffers, batch.draws, batch.given, batch.noise,
                                     self._baseline_input())
        self._update_baselines(stats)
        return loss, stats

    def gradients(self, loss: torch.Tensor) -> dict[str, torch.Tensor]:
        """{parameter name: [S, ...] gradient}; a parameter the loss does not reach gets zeros, as
        a single run's optimizer would see no change."""
        names = list(self.params)
        leaves = dict(self.template.named_parameters()) if self.solo else self.params
        grads = torch.autograd.grad(loss.sum(), [leaves[n] for n in names], allow_unused=True,
                                    materialize_grads=True)
        return {n: g.unsqueeze(0) if self.solo else g for n, g in zip(names, grads)}

    def train_step(self, generators: Sequence[torch.Generator],
                   optimizers: Sequence[Mapping[str, torch.optim.Optimizer]], only: str | None = None) -> torch.Tensor:
        """One iteration of every run: sample, forward, backward, and a step of each run's
        optimizers (`optimizers[i]` maps agent name -> optimizer over game i's parameters; `only`:
        step that one alone, as a single run passing only that optimizer). Returns stats [S, 4]
        (on the device, no host sync)."""
        batch = self.sample(generators)
        _, stats, grads = self.losses_and_gradients(batch)
        self.step(grads, optimizers, only)
        return stats

    def losses_and_gradients(self, batch: StackedBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """`losses` and `gradients` of one step. Compiled, one graph computes both
        (`torch.func.grad_and_value`): a step then skips autograd's engine and the compiled
        function's wrappers, about a sixth of one run's compiled step on a CPU. Eager, autograd
        computes the gradients, which runs faster there than the functional transform."""
        if not self._joint.is_compiled:
            loss, stats = self.losses(batch)
            return loss, stats, self.gradients(loss)
        params = {n: p.detach() for n, p in self.params.items()}
        with self._explained_errors():
            loss, stats, grads = self._joint(params, self.buffers, batch.draws, batch.given, batch.noise,
                                             self._baseline_input())
        self._update_baselines(stats)
        return loss, stats, grads

    # -- optimizers ----------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], optimizers: Sequence[Mapping[str, torch.optim.Optimizer]],
             only: str | None = None) -> None:
        """Step the runs' optimizers with their slices of `grads`: plain Adams together (one functional
        call per group of hyperparameters, runs at one step count as one tensor: `StackedAdams`), any
        other optimizer alone after its parameters' `.grad` are set."""
        optimizers = list(optimizers)
        if len(optimizers) != self.n_runs:
            raise ValueError(f"{len(optimizers)} optimizer sets for {self.n_runs} runs")
        if only is not None and any(only not in o for o in optimizers):
            raise ValueError(f"step(only={only!r}): every run's optimizers must include {only!r}")
        if (self._optimizers_seen is None or self._adams is None or self._adams.stale()
                or any(a != dict(b) for a, b in zip(self._optimizers_seen, optimizers))):
            self._plan(optimizers)
        self._adams.step(grads, only)

    def _plan(self, optimizers: Sequence[Mapping[str, torch.optim.Optimizer]]) -> None:
        self._optimizers_seen = [dict(o) for o in optimizers]
        if self._adams is None or not self._adams.fits(self.params):
            self._adams = StackedAdams(self.params, self.n_runs, self.device)
        self._adams.plan(self.params, [{id(p): n for n, p in game.named_parameters()} for game in self.games],
                         optimizers)

    def adam_tensors_per_step(self) -> int:
        """How many tensors a step hands to the Adam kernel (after a step has planned it): one per
        parameter when every run's state is stacked, S per parameter when none is."""
        return 0 if self._adams is None else self._adams.tensors_per_step()
