"""The one engine for many runs (emergent_frl/stacked.py): the games' own modules, stacked.

What is checked: for the built-in agents (every cell, channel and game) and for a user's own pair,
each run's loss and gradients in the batch equal the single game's, from the same weights, batch
and noise, and each run consumes exactly its single-run random stream; the runs' own torch
optimizers are stepped as torch would step them (per-run learning rates, a fresh optimizer for one
run, one agent alone), bit for bit as torch's fused Adam of each run alone whether the runs' state
is stepped stacked or per run, across switches between the two, checkpoints and resumes; the
games stay the real thing (their tensors are views into the stack); a game's own `sample_batch` is
honoured; randomness drawn behind the engine's back is refused.
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
    {"cell": "lstm", "receiver_training": "reinforce", "receiver_head": True, "baseline": False},  # the paper's
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


def _adams(game, lr=1e-2, fused=False):
    """One Adam per agent; fused=True is the reference: torch's own fused Adam of the run alone,
    which the stacked step must match bit for bit."""
    return {agent: torch.optim.Adam(getattr(game, agent).parameters(), lr=lr, fused=fused)
            for agent in ("sender", "receiver")}


class AdamTwins:
    """S runs stepped by `StackedGames.step` and, beside them, copies stepped alone by torch."""

    def __init__(self, n_runs=4, lrs=None, hidden_size=20):
        self.lrs = lrs or [1e-2] * n_runs
        configs = [LanguageGameConfig(**{**TINY, "hidden_size": hidden_size, "seed": s}) for s in range(n_runs)]
        self.games = [build_game(c) for c in configs]
        self.singles = [copy.deepcopy(g) for g in self.games]
        self.stacked = StackedGames(self.games)
        self.optimizers = [_adams(g, lr) for g, lr in zip(self.games, self.lrs)]
        self.references = [_adams(g, lr, fused=True) for g, lr in zip(self.singles, self.lrs)]
        self.generator = torch.Generator().manual_seed(0)

    def fresh(self, run):
        """A fresh optimizer for `run` (a strategy's fresh_optimizers at a forgetting boundary)."""
        self.optimizers[run] = _adams(self.games[run], self.lrs[run])
        self.references[run] = _adams(self.singles[run], self.lrs[run], fused=True)

    def step(self):
        grads = {n: torch.randn(p.shape, generator=self.generator) for n, p in self.stacked.params.items()}
        self.stacked.step(grads, self.optimizers)
        for run, single in enumerate(self.singles):
            for name, p in single.named_parameters():
                p.grad = grads[name][run].clone()
            for optimizer in self.references[run].values():
                optimizer.step()

    def assert_bit_for_bit(self):
        for run, (game, single) in enumerate(zip(self.games, self.singles)):
            for (name, p), q in zip(game.named_parameters(), single.parameters()):
                assert torch.equal(p, q), f"run {run}: {name}"
            for agent, optimizer in self.optimizers[run].items():
                ours, theirs = optimizer.state_dict()["state"], self.references[run][agent].state_dict()["state"]
                assert ours.keys() == theirs.keys()
                for k in ours:
                    for key in ("step", "exp_avg", "exp_avg_sq"):
                        assert torch.equal(ours[k][key].float(), theirs[k][key].float()), f"run {run} {agent} {k} {key}"


def _stackable(stacked):
    """How many parameters the CPU kernel steps exactly as one tensor for all runs (sizes that are a
    multiple of 16 float32), and how many it steps per run."""
    sizes = [p[0].numel() for p in stacked.params.values()]
    return sum(s % 16 == 0 for s in sizes), sum(s % 16 != 0 for s in sizes)


def test_runs_at_one_step_count_are_stepped_as_one_tensor_bit_for_bit_as_torch_alone():
    twins = AdamTwins(n_runs=4)
    aligned, unaligned = _stackable(twins.stacked)
    assert aligned and unaligned  # both kinds of parameter are exercised
    for _ in range(3):
        twins.step()
        twins.assert_bit_for_bit()
    assert twins.stacked.adam_tensors_per_step() == aligned + 4 * unaligned
    # the runs' optimizers hold views of the stacked state, not copies
    aligned_name = next(n for n, p in twins.stacked.params.items() if n.startswith("receiver.") and p[0].numel() % 16 == 0)
    state = twins.optimizers[2]["receiver"].state[twins.games[2].get_parameter(aligned_name)]
    assert state["exp_avg"].untyped_storage().nbytes() == 4 * state["exp_avg"].nbytes


def test_a_run_with_a_fresh_optimizer_falls_back_alone_then_all_are_stacked_again():
    twins = AdamTwins(n_runs=4)
    aligned, unaligned = _stackable(twins.stacked)
    twins.step()
    twins.step()
    twins.fresh(1)  # run 1 starts afresh: its step count differs from the others'
    for _ in range(3):
        twins.step()
        twins.assert_bit_for_bit()
    # runs [0], [1], [2, 3] for each stackable parameter
    assert twins.stacked.adam_tensors_per_step() == 3 * aligned + 4 * unaligned
    steps = {float(s["step"]) for s in twins.optimizers[1]["sender"].state.values()}
    assert steps == {3.0}  # three steps since its fresh start, in the optimizer the run checkpoints
    for run in range(4):  # every run starts afresh at one boundary: one count again
        twins.fresh(run)
    for _ in range(2):
        twins.step()
        twins.assert_bit_for_bit()
    assert twins.stacked.adam_tensors_per_step() == aligned + 4 * unaligned


def test_runs_with_other_learning_rates_are_stacked_by_neighbours_of_one_rate():
    twins = AdamTwins(n_runs=4, lrs=[1e-2, 1e-2, 5e-3, 1e-2])
    aligned, unaligned = _stackable(twins.stacked)
    for _ in range(3):
        twins.step()
        twins.assert_bit_for_bit()
    assert twins.stacked.adam_tensors_per_step() == 3 * aligned + 4 * unaligned  # [0, 1], [2], [3]


def test_a_checkpoint_holds_one_runs_state_and_a_resume_steps_on_bit_for_bit(tmp_path):
    twins = AdamTwins(n_runs=3)
    for _ in range(2):
        twins.step()
    saved = {agent: o.state_dict() for agent, o in twins.optimizers[1].items()}
    for state in saved["receiver"]["state"].values():  # its own slices, not every run's stack
        assert all(t.untyped_storage().nbytes() == t.nbytes for t in state.values())
    torch.save(saved, tmp_path / "optimizers.pt")
    twins.step()  # the live state moves on; the checkpoint does not
    loaded = torch.load(tmp_path / "optimizers.pt")
    assert not torch.equal(loaded["receiver"]["state"][0]["exp_avg"],
                           twins.optimizers[1]["receiver"].state_dict()["state"][0]["exp_avg"])
    # run 2 loads a state dict into the optimizer it has: the next step takes the loaded tensors in
    receiver = twins.optimizers[2]["receiver"]
    receiver.load_state_dict(copy.deepcopy(receiver.state_dict()))
    twins.step()
    twins.assert_bit_for_bit()
    # run 1 resumes from the checkpoint with new optimizers (as LanguageRun.load_state_dict does);
    # its reference loads the same state, and both carry on from run 1's live weights
    twins.optimizers[1] = _adams(twins.games[1])
    for agent, optimizer in twins.optimizers[1].items():
        optimizer.load_state_dict(loaded[agent])
        reference = twins.references[1][agent]
        reference.load_state_dict({**reference.state_dict(), "state": copy.deepcopy(loaded[agent]["state"])})
    with torch.no_grad():
        for p, q in zip(twins.singles[1].parameters(), twins.games[1].parameters()):
            p.copy_(q)
    for _ in range(2):
        twins.step()
        twins.assert_bit_for_bit()


def test_a_forgetting_operator_that_resets_optimizer_state_is_seen_without_a_relink():
    twins = AdamTwins(n_runs=3)
    twins.step()
    for optimizers in (twins.optimizers[0], twins.references[0]):  # as optimizer_state="reset" does
        sender = optimizers["sender"]
        for p in list(sender.state)[:2]:
            del sender.state[p]
    twins.step()
    twins.assert_bit_for_bit()


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
        games[1].receiver.candidate_encoder.weight.add_(1.0)  # the game's own code writes into the stack
    assert torch.equal(stacked.params["receiver.candidate_encoder.weight"][1], games[1].receiver.candidate_encoder.weight)
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
