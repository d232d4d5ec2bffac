"""`BatchedGame`: the stacked parameters of S language games and their batched training forward.

See the package docstring for how the computation differs from the single-run modules (all exact
up to float rounding).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from emergent_frl.agents import ReceiverOutput, SenderOutput, categorical_entropy, find_lengths
from emergent_frl.batched.cells import StackedCell, cell_kind, stacked_linear
from emergent_frl.batched.compiling import MaybeCompiled
from emergent_frl.batched.layout import parameter_layout
from emergent_frl.batched.sampling import StackedBatch, StackedSampler
from emergent_frl.games import LanguageGame, ReconstructionGame


class BatchedGame:
    """The games of S runs as one computation: stacked parameters, batched sampling and loss.

    `games` must share a shape (architecture, batch size, channel, eos, baseline, ...); they keep
    their own data (splits, samplers, evaluation sets). `slots` says where each of `games[0]`'s
    parameters lives in `leaves` (the autograd leaves, [S, ...] each); `store`/`load` copy one
    run between the stack and a game's modules. Entropy coefficients may differ per run.
    `compile`: wrap the loss computation in `torch.compile`: True, a mode such as "reduce-overhead"
    (CUDA graphs on a GPU), or "auto" (compile where the backend works, else eager with a warning;
    see `compiling.py`); off by default.
    """

    def __init__(self, games: Sequence[LanguageGame], *, compile: bool | str = False):
        if not games:
            raise ValueError("BatchedGame needs at least one game")
        first = games[0]
        for i, game in enumerate(games):
            check_same_shape(i, game, first)
        self.games = list(games)
        self.n_runs = len(games)
        self.template = first
        self.device = first.device
        self.sender_cell = cell_kind(first.sender.cell)
        self.receiver_cell = cell_kind(first.receiver.cell)
        self.slots = parameter_layout(first)
        single = dict(first.named_parameters())
        self.leaves = {}
        for slot in self.slots:
            shape = tuple(single[slot.name].shape)
            self.leaves[slot.leaf] = torch.zeros(self.n_runs, *(shape[::-1] if slot.transposed else shape),
                                                 device=self.device, requires_grad=True)
        self.sender_coeff = torch.tensor([g.sender_entropy_coeff for g in games], device=self.device)
        self.receiver_coeff = torch.tensor([g.receiver_entropy_coeff for g in games], device=self.device)
        self.has_baseline = first.baseline is not None
        self.baseline_mean = torch.zeros(self.n_runs, device=self.device)
        self.baseline_count = torch.zeros(self.n_runs, device=self.device)
        for run, game in enumerate(games):
            self.load(run, game)
        self.sampler = StackedSampler(self.games, self.device)
        self._symbols = torch.arange(first.sender.vocab_size, device=self.device)
        self._loss = MaybeCompiled(self._losses, compile)

    # -- copying between the stack and the single-run modules --------------------------------------
    @torch.no_grad()
    def store(self, run: int, game: LanguageGame | None = None) -> None:
        """Copy run `run`'s slice into its game's modules (weights and baseline)."""
        game = self.games[run] if game is None else game
        params = dict(game.named_parameters())
        for slot in self.slots:
            params[slot.name].copy_(slot.to_single(self.leaves[slot.leaf][run]))
        if self.has_baseline:
            game.baseline.mean.copy_(self.baseline_mean[run])
            game.baseline.count.copy_(self.baseline_count[run])

    @torch.no_grad()
    def load(self, run: int, game: LanguageGame | None = None) -> None:
        """Copy a game's modules (weights and baseline) into run `run`'s slice."""
        game = self.games[run] if game is None else game
        params = dict(game.named_parameters())
        for slot in self.slots:
            slot.to_single(self.leaves[slot.leaf][run]).copy_(params[slot.name])
        if self.has_baseline:
            self.baseline_mean[run] = game.baseline.mean
            self.baseline_count[run] = game.baseline.count

    def parameters_by_name(self, stacked: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Leaf-shaped tensors (default: the leaves themselves, detached; or e.g. their gradients)
        -> {single-run parameter name: [S, *that parameter's shape]} (copies)."""
        stacked = {k: v.detach() for k, v in self.leaves.items()} if stacked is None else stacked
        return {slot.name: stacked[slot.leaf].transpose(1, 2).clone() if slot.transposed
                else stacked[slot.leaf].clone() for slot in self.slots}

    def sample(self, generators: Sequence[torch.Generator]) -> StackedBatch:
        """Each run's batch and noise from its own generator (`generators[i]` for run i), as the
        single-run game draws them; see `StackedSampler.sample`."""
        return self.sampler.sample(generators)

    # -- the batched forward -------------------------------------------------------------------------
    def _one_hot(self, symbol: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """F.one_hot without its range check (a host sync on a GPU)."""
        return (symbol.unsqueeze(-1) == self._symbols).to(dtype)

    def speak(self, leaves: dict[str, torch.Tensor], x: torch.Tensor, noise: torch.Tensor) -> SenderOutput:
        """The senders in training mode (sampling with the given noise); every field gets a leading
        run dimension. Mirrors `Sender.forward` / `Sender._choose` / `Sender._finish`."""
        sender = self.template.sender
        runs, batch = x.shape[:2]
        cell = StackedCell(self.sender_cell, leaves, "sender.cell")
        encoder_t, encoder_bias = leaves["sender.encoder.weight_t"], leaves["sender.encoder.bias"]
        chain = self.sender_cell != "gru" and encoder_t.shape[1] < encoder_t.shape[2]
        state = None if chain else cell.initial_state(stacked_linear(x, encoder_t, encoder_bias))
        embedding = leaves.get("sender.embedding.weight_t")
        # The zero start token (the paper's) is a zero input: its product is skipped.
        inputs = leaves["sender.start.weight"].unsqueeze(1).expand(runs, batch, -1) if sender.start.learned else None
        symbols, one_hots, log_probs, entropies = [], [], [], []
        for t in range(sender.max_len):
            if state is None:
                state = cell.first_step_from(x, encoder_t, encoder_bias, inputs)
            else:
                state = cell.step(inputs, state)
            logits = stacked_linear(state[0], leaves["sender.head.weight_t"], leaves["sender.head.bias"])
            log_p = F.log_softmax(logits, dim=-1)
            if sender.channel == "reinforce":
                symbol = (logits - noise[t].log()).argmax(-1)
                one_hot = self._one_hot(symbol, logits.dtype)
            else:
                soft = F.softmax((logits - noise[t].log()) / sender.temperature, dim=-1)
                symbol = soft.argmax(-1)
                one_hot = soft
                if sender.straight_through:
                    hard = self._one_hot(symbol, soft.dtype)
                    one_hot = hard + soft - soft.detach()
            symbols.append(symbol)
            one_hots.append(one_hot)
            log_probs.append(log_p.gather(-1, symbol.unsqueeze(-1)).squeeze(-1))
            entropies.append(categorical_entropy(log_p))
            inputs = one_hot if embedding is None else stacked_linear(one_hot, embedding, None)
        message = torch.stack(symbols, -1)  # [S, B, T]
        one_hots = torch.stack(one_hots, 2)  # [S, B, T, V]
        log_probs, entropies = torch.stack(log_probs, -1), torch.stack(entropies, -1)
        if not sender.eos:
            length = torch.full((runs, batch), sender.max_len, dtype=torch.long, device=x.device)
            return SenderOutput(message, one_hots, log_probs.sum(-1), entropies.sum(-1), length)
        length = find_lengths(message.reshape(runs * batch, -1)).view(runs, batch)
        keep = torch.arange(sender.max_len, device=x.device) < length.unsqueeze(-1)
        return SenderOutput(message * keep, one_hots * keep.unsqueeze(-1), (log_probs * keep).sum(-1),
                            (entropies * keep).sum(-1), length)

    def read(self, leaves: dict[str, torch.Tensor], symbols: torch.Tensor,
             length: torch.Tensor | None) -> torch.Tensor:
        """The receivers' final hidden state [S, B, H] (mirrors `_MessageReader.read`)."""
        runs, batch, steps, _ = symbols.shape
        embedding = leaves.get("receiver.embedding.weight_t")
        inputs = symbols if embedding is None else stacked_linear(symbols, embedding, None)
        cell = StackedCell(self.receiver_cell, leaves, "receiver.cell")
        state = cell.initial_state()  # zeros: the first step's products with it are skipped
        for t in range(steps):
            new = cell.step(inputs[:, :, t], state)
            if length is not None:  # messages that ended keep their state
                active = (length > t).unsqueeze(-1)
                new = tuple(None if n is None else torch.where(active, n, torch.zeros_like(n) if s is None else s)
                            for n, s in zip(new, state))
            state = new
        return state[0]

    def listen(self, leaves: dict[str, torch.Tensor], spoken: SenderOutput, receiver_input,
               noise: torch.Tensor | None) -> ReceiverOutput:
        """The receivers in training mode; mirrors `ReferentialReceiver` / `ReconstructionReceiver`."""
        length = spoken.length if self.template.sender.eos else None
        hidden = self.read(leaves, spoken.symbols, length)
        head = stacked_linear(hidden, leaves["receiver.head.weight_t"], leaves["receiver.head.bias"])
        if isinstance(self.template, ReconstructionGame):
            blocks = torch.split(head, list(self.template.receiver.n_values), dim=-1)
            choice = torch.stack([block.argmax(-1) for block in blocks], dim=-1)
            zeros = head.new_zeros(head.shape[:2])
            return ReceiverOutput(logits=head, choice=choice, log_prob=zeros, entropy=zeros)
        # scores = (candidate @ W_c + b_c) . message, computed as candidate . (W_c @ message) +
        # b_c . message: the same sum without the [S, B, K, H] candidate encodings.
        weight_t, bias = leaves["receiver.candidate_encoder.weight_t"], leaves["receiver.candidate_encoder.bias"]
        projected = torch.bmm(head, weight_t.transpose(1, 2))  # [S, B, D]
        logits = (receiver_input * projected.unsqueeze(2)).sum(-1) + (head * bias.unsqueeze(1)).sum(-1, keepdim=True)
        log_p = F.log_softmax(logits, dim=-1)
        choice = (logits - noise.log()).argmax(-1)
        return ReceiverOutput(logits=logits, choice=choice,
                              log_prob=log_p.gather(-1, choice.unsqueeze(-1)).squeeze(-1),
                              entropy=categorical_entropy(log_p))

    def _losses(self, leaves, sender_input, labels, receiver_input, sender_noise, receiver_noise,
                baseline_mean, sender_coeff, receiver_coeff):
        """(per-run optimised loss [S], per-run training stats [S, 4], per-run mean task loss [S])."""
        game = self.template
        runs, batch = sender_input.shape[:2]
        spoken = self.speak(leaves, sender_input, sender_noise)
        heard = self.listen(leaves, spoken, receiver_input, receiver_noise)
        # The game's own per-sample loss and accuracy, on the runs' samples laid end to end.
        flat_heard = ReceiverOutput(*(t.flatten(0, 1) for t in (heard.logits, heard.choice, heard.log_prob,
                                                                heard.entropy)))
        flat_labels = labels.flatten(0, 1)
        task_loss, _ = game.loss_fn(
            sender_input.flatten(0, 1), spoken.message.flatten(0, 1),
            None if receiver_input is None else receiver_input.flatten(0, 1),
            game.receiver_output_for_loss(flat_heard), flat_labels, None,
        )
        if task_loss.shape != (runs * batch,):
            raise ValueError(f"loss: must return a per-sample loss of shape ({runs * batch},), got "
                             f"{tuple(task_loss.shape)}")
        task_loss = task_loss.view(runs, batch)
        accuracy = game.accuracy(flat_heard, flat_labels).view(runs, batch)
        # EGG's loss, per run (as LanguageGame.forward computes it for one run).
        entropy_bonus = sender_coeff * spoken.entropy.mean(-1) + receiver_coeff * heard.entropy.mean(-1)
        if game.channel == "reinforce":
            advantage = task_loss.detach()
            if baseline_mean is not None:
                advantage = advantage - baseline_mean.unsqueeze(-1)
            policy = (advantage * (spoken.log_prob + heard.log_prob)).mean(-1)
            loss = policy - entropy_bonus + task_loss.mean(-1)
        else:
            loss = task_loss.mean(-1) - entropy_bonus
        stats = torch.stack([accuracy.mean(-1), task_loss.detach().mean(-1), spoken.entropy.detach().mean(-1),
                             heard.entropy.detach().mean(-1)], -1)
        return loss, stats, task_loss.detach().mean(-1)

    def losses(self, batch: StackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-run loss [S] to backpropagate, per-run stats [S, 4] in `runs.STAT_NAMES` order);
        updates the running-mean baselines (after the loss, as the single-run game does)."""
        loss, stats, mean_task = self._loss(
            self.leaves, batch.sender_input, batch.labels, batch.receiver_input, batch.sender_noise,
            # A copy: the baseline is updated below, before the backward pass that may still read it.
            batch.receiver_noise, self.baseline_mean.clone() if self.has_baseline else None, self.sender_coeff,
            self.receiver_coeff,
        )
        if self.has_baseline:
            with torch.no_grad():
                self.baseline_count += 1
                self.baseline_mean += (mean_task - self.baseline_mean) / self.baseline_count
        return loss, stats


def check_same_shape(index: int, game: LanguageGame, first: LanguageGame) -> None:
    """Raise if `game` cannot share a batch with `first` (other structure or shape)."""
    def differs(what: str, a, b) -> None:
        if a != b:
            raise ValueError(f"game {index}: {what}={a!r}, game 0 has {b!r}; only games of one shape share a batch")

    differs("type", type(game).__name__, type(first).__name__)
    differs("parameters", [(n, tuple(p.shape)) for n, p in game.named_parameters()],
            [(n, tuple(p.shape)) for n, p in first.named_parameters()])
    for attr in ("channel", "batch_size", "n_candidates"):
        differs(attr, getattr(game, attr, None), getattr(first, attr, None))
    for attr in ("vocab_size", "max_len", "eos", "temperature", "straight_through"):
        differs(f"sender.{attr}", getattr(game.sender, attr), getattr(first.sender, attr))
    differs("sender.start.learned", game.sender.start.learned, first.sender.start.learned)
    differs("baseline", game.baseline is None, first.baseline is None)
    code = lambda fn: getattr(fn, "__code__", fn)  # noqa: E731  (one loss closure per game is fine)
    differs("loss", code(game.loss_fn), code(first.loss_fn))
    differs("device", game.device, first.device)
