"""The one engine for many runs (emergent_frl/stacked.py): the games' own modules, stacked.

What is checked: for the built-in agents (every cell, channel and game) and for a user's own pair,
each run's loss and gradients in the batch equal the single game's, from the same weights, batch
and noise, and each run consumes exactly its single-run random stream; the runs' own torch
optimizers are stepped as torch would step them (per-run learning rates, a fresh optimizer for one
run, one agent alone); the games stay the real thing (their tensors are views into the stack); a
game's own `sample_batch` is honoured; randomness drawn behind the engine's back is refused.
"""

import copy

import pytest
import torch
from torch import nn

from emergent_frl.games import ReferentialGame
from emergent_frl.stacked import StackedGames
from emergent_frl.training import LanguageGameConfig, build_game, build_optimizers, make_generator
from tiny_configs import TINY

MYAGENTS = "myagents:build"


@pytest.mark.parametrize("overrides", [
    {},
    {"cell": "gru"},
    {"cell": "lstm"},
    {"cell": "lstm", "receiver_training": "reinforce", "baseline": False},  # the paper's agents
    {"receiver_training": "reinforce"},
    {"cell": "lnlstm"},
    {"channel": "gumbel"},
    {"channel": "gumbel", "straight_through": False},
    {"eos": True, "max_len": 4},
    {"max_len": 1},
    {"embed_size": 5, "learned_start": True},
    {"baseline": True, "sender_entropy_coeff": 0.05},
    {"easy_limit": 1, "n_values": 4},
    {"holdout": "random", "holdout_fraction": 0.2},
    {"game": "reconstruction"},
    {"game": "reconstruction", "eos": True, "max_len": 3, "cell": "gru", "channel": "gumbel"},
    {"agents": MYAGENTS},
])
def test_each_runs_loss_and_gradients_equal_the_single_game(overrides):
    values = {**TINY, "hidden_size": 24, **overrides}
    configs = [LanguageGameConfig(**{**values, "seed": seed}) for seed in (0, 3, 5)]
    if "entropy" in str(overrides):  # the runs of a batch may each have their own coefficient
        configs[1] = LanguageGameConfig(**{**values, "seed": 3, "sender_entropy_coeff": 0.2})
    games = [build_game(c) for c in configs]
    singles = [copy.deepcopy(g) for g in games]
    stacked = StackedGames(games)
    generators = [make_generator(c) for c in configs]
    states = [g.get_state() for g in generators]
    batch = stacked.sample(generators)
    loss, stats = stacked.losses(batch)
    grads = stacked.gradients(loss)
    for run, (game, config) in enumerate(zip(singles, configs)):
        generator = make_generator(config)
        generator.set_state(states[run])
        single = game.sample_batch(game.batch_size, generator)
        out = game.play(single, generator)
        out.loss.backward()
        # The same batch and noise: the run consumed exactly the single run's random stream.
        assert torch.equal(batch.sender_input[run], single.sender_input)
        assert torch.equal(batch.labels[run], single.labels)
        if single.receiver_input is not None:
            assert torch.equal(batch.receiver_input[run], single.receiver_input)
        assert torch.equal(generators[run].get_state(), generator.get_state())
        assert stats[run, 0].item() == pytest.approx(out.accuracy.mean().item())
        assert loss[run].item() == pytest.approx(out.loss.item(), rel=1e-5, abs=1e-6)
        scale = max(p.grad.abs().max().item() for p in game.parameters() if p.grad is not None)
        for name, p in game.named_parameters():
            assert torch.equal(games[run].get_parameter(name), p.detach())
            expected = torch.zeros_like(p) if p.grad is None else p.grad
            torch.testing.assert_close(grads[name][run], expected, rtol=1e-4, atol=1e-5 * scale, msg=name)
        if game.baseline is not None:  # the game's own forward updated each run's own baseline
            assert games[run].baseline.mean.item() == pytest.approx(game.baseline.mean.item())


def _pair(lr=(1e-3, 5e-3)):
    configs = [LanguageGameConfig(**{**TINY, "seed": s, "lr_sender": l, "lr_receiver": l}) for s, l in zip((0, 1), lr)]
    return configs, [build_game(c) for c in configs]


def test_the_runs_own_adams_step_as_torch_steps_them_alone():
    configs, games = _pair()
    singles = [copy.deepcopy(g) for g in games]
    stacked = StackedGames(games)
    optimizers = [build_optimizers(g, c) for g, c in zip(games, configs)]
    references = [build_optimizers(g, c) for g, c in zip(singles, configs)]
    for step in range(4):
        grads = {n: torch.randn_like(p) for n, p in stacked.params.items()}
        stacked.step(grads, optimizers)
        for run, single in enumerate(singles):
            for name, p in single.named_parameters():
                p.grad = grads[name][run].clone()
            for optimizer in references[run].values():
                optimizer.step()
        if step == 1:  # run 1 starts afresh; run 0 keeps its state
            optimizers[1] = build_optimizers(games[1], configs[1])
            references[1] = build_optimizers(singles[1], configs[1])
    for game, single, optimizer in zip(games, singles, optimizers):
        for (name, p), q in zip(game.named_parameters(), single.parameters()):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-7, msg=name)
    steps = {float(s["step"]) for s in optimizers[1]["sender"].state.values()}
    assert steps == {2.0}  # two steps since its fresh start, in the optimizer the run checkpoints


def test_one_agent_steps_alone_and_other_optimizers_step_themselves():
    configs, games = _pair()
    stacked = StackedGames(games)
    optimizers = [build_optimizers(g, c) for g, c in zip(games, configs)]
    optimizers[1]["receiver"] = torch.optim.SGD(games[1].receiver.parameters(), lr=0.5)
    start = stacked.parameters_by_name()
    grads = {n: torch.ones_like(p) for n, p in stacked.params.items()}
    stacked.step(grads, [{"receiver": o["receiver"]} for o in optimizers], only="receiver")
    now = stacked.parameters_by_name()
    assert all(torch.equal(now[n], start[n]) for n in now if n.startswith("sender."))
    assert all(not torch.equal(now[n][0], start[n][0]) for n in now if n.startswith("receiver."))
    # run 1's SGD: minus lr times the gradient, exactly
    assert all(torch.equal(now[n][1], start[n][1] - 0.5) for n in now if n.startswith("receiver."))
    with pytest.raises(ValueError, match="must include 'listener'"):
        stacked.step(grads, optimizers, only="listener")


def test_the_games_are_views_of_the_stack_and_relink_after_replacement():
    configs, games = _pair()
    stacked = StackedGames(games)
    with torch.no_grad():
        games[1].receiver.head.weight.add_(1.0)  # the game's own code writes into the stack
    assert torch.equal(stacked.params["receiver.head.weight"][1], games[1].receiver.head.weight)
    fresh = nn.Linear(*reversed(games[0].sender.head.weight.shape))
    games[0].sender.head = fresh  # a strategy of a user's that swaps a module
    stacked.link()
    assert torch.equal(stacked.params["sender.head.weight"][0], fresh.weight)
    assert fresh.weight.data_ptr() == stacked.params["sender.head.weight"][0].data_ptr()
    games[0].sender.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="one structure"):
        stacked.link()


class OddBatches(ReferentialGame):
    """A game with its own sampling: the target always in slot 0."""

    def sample_batch(self, batch_size, generator):
        candidates, _ = self.sampler_for(generator.device).sample(batch_size, generator)
        return self.make_batch(candidates, torch.zeros(batch_size, dtype=torch.long))


def test_a_games_own_sample_batch_is_what_the_batch_trains_on():
    configs, games = _pair()
    games = [OddBatches(g.space, g.sender, g.receiver, n_candidates=g.n_candidates, batch_size=g.batch_size)
             for g in games]
    stacked = StackedGames(games)
    batch = stacked.sample([make_generator(c) for c in configs])
    assert torch.equal(batch.labels, torch.zeros_like(batch.labels))


class DropoutSender(nn.Module):
    """A sender that draws randomness with torch directly (dropout), not through its generator."""

    def __init__(self, sender):
        super().__init__()
        self.inner, self.drop = sender, nn.Dropout(0.5)
        self.vocab_size, self.max_len, self.eos, self.channel = sender.vocab_size, sender.max_len, False, "reinforce"

    def forward(self, x, generator=None):
        return self.inner(self.drop(x), generator)


def test_randomness_behind_the_engines_back_is_refused_with_a_way_out():
    configs, games = _pair()
    for game in games:
        game.sender = DropoutSender(game.sender)
    stacked = StackedGames(games)
    with pytest.raises(RuntimeError, match="emergent_frl.noise.*--engine reference"):
        stacked.losses(stacked.sample([make_generator(c) for c in configs]))


class TorchGruReceiver(nn.Module):
    """A listener built on nn.GRU, which vmap cannot batch."""

    def __init__(self, receiver):
        super().__init__()
        self.inner, self.gru = receiver, nn.GRU(receiver.vocab_size, 4, batch_first=True)

    def forward(self, symbols, candidates, length=None, generator=None):
        self.gru(symbols)
        return self.inner(symbols, candidates, length, generator)


def test_a_layer_vmap_cannot_batch_is_named_with_the_way_out():
    configs, games = _pair()
    for game in games:
        game.receiver = TorchGruReceiver(game.receiver)
    stacked = StackedGames(games)
    with pytest.raises(RuntimeError, match="vmap cannot batch.*emergent_frl.cells.*--engine reference"):
        stacked.losses(stacked.sample([make_generator(c) for c in configs]))


def test_one_run_trains_its_game_itself_without_a_stack():
    config = LanguageGameConfig(**{**TINY, "baseline": True})
    game, single = build_game(config), None
    single = copy.deepcopy(game)
    stacked = StackedGames([game])
    generator, reference = make_generator(config), make_generator(config)
    loss, stats = stacked.losses(stacked.sample([generator]))
    grads = stacked.gradients(loss)
    out = single.play(single.sample_batch(single.batch_size, reference), reference)
    out.loss.backward()
    assert loss.shape == (1,) and loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    for name, p in single.named_parameters():
        torch.testing.assert_close(grads[name][0], p.grad, rtol=1e-5, atol=1e-7)
    assert game.baseline.count.item() == 1
    optimizers = [build_optimizers(game, config)]
    stacked.step(grads, optimizers)
    assert all(float(s["step"]) == 1 for o in optimizers[0].values() for s in o.state.values())
    assert not torch.equal(game.sender.head.weight, single.sender.head.weight)  # stepped in place
