"""Batched runs (emergent_frl/batched/): S runs of one shape as one computation.

What is checked: each run's loss and gradients equal the unbatched game's for the same weights and
random stream; each run consumes exactly its single-run random stream; the stacked Adam is torch's
Adam per run (with per-run resets); runs do not influence each other; a batched run writes the run
directories `LanguageRun` writes, resumes exactly, and falls back to single runs where it must.
"""

import math

import pytest
import torch

from emergent_frl.batched import (
    BatchedGame,
    BatchedLanguageRuns,
    StackedAdam,
    batch_key,
    parse_seeds,
    run_language_batched,
)
from emergent_frl.relearn import EVALUATIONS_FILE, LanguageRun, NonFiniteError, run_language, split_config
from emergent_frl.runs import RunDirectory
from emergent_frl.training import LanguageGameConfig, build_game, make_generator
from tiny_configs import TINY



def tiny(**overrides):
    return {**TINY, **overrides}


def _without_seconds(records):
    """The records minus their timing, nan as None (a degenerate language scores nan)."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return [{k: plain(v) for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("overrides", [
    {},
    {"cell": "gru"},
    {"cell": "rnn"},
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
])
def test_each_runs_loss_and_gradients_equal_the_unbatched_game(overrides):
    values = {**TINY, "hidden_size": 24, **overrides}
    configs = [LanguageGameConfig(**{**values, "seed": seed}) for seed in (0, 3, 5)]
    games = [build_game(c) for c in configs]
    batched = BatchedGame(games)
    generators = [make_generator(c) for c in configs]
    states = [g.get_state() for g in generators]
    batch = batched.sample(generators)
    loss, stats = batched.losses(batch)
    grads = torch.autograd.grad(loss.sum(), list(batched.leaves.values()), allow_unused=True,
                                materialize_grads=True)
    grads = batched.parameters_by_name(dict(zip(batched.leaves, grads)))
    weights = batched.parameters_by_name()
    for run, (game, config) in enumerate(zip(games, configs)):
        generator = make_generator(config)
        generator.set_state(states[run])
        single = game.sample_batch(game.batch_size, generator)
        out = game.play(single, generator)
        game.zero_grad()
        out.loss.backward()
        # The same batch and noise: the run consumed exactly the single run's random stream.
        assert torch.equal(batch.sender_input[run], single.sender_input)
        assert torch.equal(batch.labels[run], single.labels)
        if single.receiver_input is not None:
            assert torch.equal(batch.receiver_input[run], single.receiver_input)
        assert torch.equal(generators[run].get_state(), generator.get_state())
        assert stats[run, 0].item() == pytest.approx(out.accuracy.mean().item())
        assert loss[run].item() == pytest.approx(out.loss.item(), rel=1e-5, abs=1e-6)
        scale = max(p.grad.abs().max().item() for p in game.parameters())
        for name, p in game.named_parameters():
            assert torch.equal(weights[name][run], p.detach())
            torch.testing.assert_close(grads[name][run], p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_stacked_adam_is_torch_adam_per_run_with_resets():
    torch.manual_seed(0)
    game = build_game(LanguageGameConfig(**TINY))
    batched = BatchedGame([game, build_game(LanguageGameConfig(**TINY, seed=1))])
    lrs = {slot.name: [1e-3, 5e-3] for slot in batched.slots}
    adam = StackedAdam(batched.leaves, batched.slots, lrs)
    singles = [{name: p.detach().clone().requires_grad_() for name, p in game.named_parameters()}
               for _ in range(2)]
    start = batched.parameters_by_name()
    for run in range(2):
        for name, p in singles[run].items():
            p.data.copy_(start[name][run])
    optimizers = [torch.optim.Adam(list(singles[run].values()), lr=lr) for run, lr in enumerate((1e-3, 5e-3))]
    names = {id(p): n for n, p in singles[1].items()}
    for step in range(4):
        grads = {leaf: torch.randn_like(t) for leaf, t in batched.leaves.items()}
        by_name = batched.parameters_by_name(grads)
        adam.step(grads)
        for run in range(2):
            for name, p in singles[run].items():
                p.grad = by_name[name][run].clone()
            optimizers[run].step()
        if step == 1:  # run 1 gets fresh optimizer state, run 0 keeps its own
            optimizers[1] = torch.optim.Adam(list(singles[1].values()), lr=5e-3)
            adam.import_run(1, optimizers[1], names)
    now = batched.parameters_by_name()
    for run in range(2):
        for name, p in singles[run].items():
            torch.testing.assert_close(now[name][run], p.detach(), rtol=1e-5, atol=1e-7, msg=name)
    exported = torch.optim.Adam(list(singles[1].values()), lr=5e-3)
    adam.export_run(1, exported, names)
    for p in singles[1].values():
        assert exported.state[p]["step"].item() == 2  # two steps since the reset
        torch.testing.assert_close(exported.state[p]["exp_avg"], optimizers[1].state[p]["exp_avg"])


def test_one_runs_seed_does_not_change_another_runs_records():
    common = tiny(strategy="pbf", generations=2, iterations_per_generation=15, eval_every=5)
    first = run_language_batched([{**common, "seed": s} for s in (0, 1, 2)], progress=False)
    second = run_language_batched([{**common, "seed": s} for s in (0, 1, 7)], progress=False)
    assert _without_seconds(first[0]) == _without_seconds(second[0])
    assert _without_seconds(first[1]) == _without_seconds(second[1])
    assert _without_seconds(first[2]) != _without_seconds(second[2])


def test_batched_runs_write_the_run_directories_a_single_run_writes(tmp_path):
    strategies = ["pbf", "reset_receiver", "no_reset", "partial", "iterated_learning"]
    values = [tiny(strategy=s, seed=i, generations=3, iterations_per_generation=20, eval_every=10,
                   sender_keep_fraction=0.5, fresh_optimizers=True, imitation_iterations=5,
                   listener_only_iterations=5)
              for i, s in enumerate(strategies)]
    outs = [str(tmp_path / f"batched-{i}") for i in range(len(values))]
    seen = []
    records = run_language_batched(values, outs, progress=False, on_record=lambda i, r: seen.append(i))
    assert sorted(seen) == sorted(list(range(len(values))) * 3)
    for i, (v, out) in enumerate(zip(values, outs)):
        single = run_language(v, str(tmp_path / f"single-{i}"), progress=False)
        batched_dir, single_dir = RunDirectory(out, resume=True), RunDirectory(tmp_path / f"single-{i}", resume=True)
        assert sorted(p.name for p in batched_dir.path.iterdir()) == sorted(p.name for p in single_dir.path.iterdir())
        assert batched_dir.read_config() == single_dir.read_config()
        assert [set(r) for r in batched_dir.records()] == [set(r) for r in single_dir.records()]
        assert [set(r) for r in records[i]] == [set(r) for r in single]
        # every 10 iterations of each train call: IL's 5 warm-up + 15 give one per generation
        evaluations = 3 if strategies[i] == "iterated_learning" else 6
        assert len(batched_dir.records(EVALUATIONS_FILE)) == len(single_dir.records(EVALUATIONS_FILE)) == evaluations
        for a, b in zip(records[i], single):
            assert a["generation"] == b["generation"] and a["iteration"] == b["iteration"]
            assert a["strategy"] == b["strategy"] and a["seed"] == b["seed"]
            for key in ("sender_forgotten_fraction", "receiver_forgotten_fraction"):
                assert a.get(key) == b.get(key)  # the same masks: drawn from the same initial weights
            assert 0.0 <= a["accuracy"] <= 1.0 and math.isfinite(a["train_loss"])
        language = batched_dir.read_json("language.json")
        assert set(language) == set(single_dir.read_json("language.json"))


@pytest.mark.parametrize("strategy", ["pbf", "iterated_learning"])
def test_a_batched_run_consumes_its_single_runs_random_stream(strategy):
    """Exact equality of the records with `run_language` is not promised: the batched matmuls,
    the concatenation-free tanh and the candidate-score reassociation round differently from the
    single-run modules, Adam's first steps turn ~1e-7 gradient differences into ~lr parameter
    differences, and sampled symbols eventually flip. What is exact: run i draws the same random
    numbers (batches and sampling noise) as the single run with its seed, so both runs' generators
    end in the same state, and the forgetting masks agree."""
    values = tiny(strategy=strategy, generations=2, iterations_per_generation=10, imitation_iterations=4,
                  listener_only_iterations=3)
    game_configs, relearns = zip(*(split_config({**values, "seed": s}) for s in (0, 1)))
    batched = BatchedLanguageRuns(game_configs, relearns, progress=False)
    batched.run()
    for game_config, relearn, member in zip(game_configs, relearns, batched.members):
        single = LanguageRun(game_config, relearn, progress=False)
        single.run()
        assert torch.equal(member.generator.get_state(), single.generator.get_state())
        for agent, operator in single.strategy.operators.items():
            mine = member.strategy.operators[agent].masks()
            assert all(torch.equal(mine[n], m) for n, m in operator.masks().items())
        # One short generation from the same weights: close, if not bit-identical.
        assert member.records[0]["train_loss"] == pytest.approx(single.records[0]["train_loss"], abs=0.1)


def test_resumed_batch_writes_the_records_of_an_uninterrupted_one(tmp_path):
    values = [tiny(strategy=s, seed=i, generations=3, iterations_per_generation=12, eval_every=6)
              for i, s in enumerate(["pbf", "reset_sender"])]
    straight = [str(tmp_path / f"straight-{i}") for i in range(2)]
    resumed = [str(tmp_path / f"resumed-{i}") for i in range(2)]
    run_language_batched(values, straight, progress=False)
    run_language_batched(values, resumed, progress=False, until=1)
    run_language_batched(values, resumed, progress=False, resume=True)
    for a, b in zip(straight, resumed):
        a, b = RunDirectory(a, resume=True), RunDirectory(b, resume=True)
        assert _without_seconds(a.records()) == _without_seconds(b.records())
        assert a.records(EVALUATIONS_FILE) == b.records(EVALUATIONS_FILE)
    # A batched run's directory is a LanguageRun's: it can be extended by a single run.
    more = run_language({**values[0], "generations": 4}, straight[0], resume=True, progress=False)
    assert [r["generation"] for r in more] == [0, 1, 2, 3]


def test_runs_left_at_different_generations_catch_up_batched_then_go_on_together(tmp_path, monkeypatch):
    """A sweep's batch killed while its runs wrote their checkpoints leaves them at different
    generations: the laggards catch up as a batch of their own on this engine (never on the
    reference engine), and the records equal an uninterrupted batch's."""
    values = [tiny(strategy=s, seed=i, generations=4, iterations_per_generation=12, eval_every=6)
              for i, s in enumerate(["pbf", "reset_sender", "no_reset"])]
    straight = [str(tmp_path / f"straight-{i}") for i in range(3)]
    resumed = [str(tmp_path / f"resumed-{i}") for i in range(3)]
    run_language_batched(values, straight, progress=False)
    run_language_batched(values, resumed, progress=False, until=1)
    run_language_batched(values[:1], resumed[:1], progress=False, resume=True, until=3)  # run 0 at 3
    run_language_batched(values[1:2], resumed[1:2], progress=False, resume=True, until=2)  # run 1 at 2
    reference_steps = []
    real_train = LanguageRun.train
    monkeypatch.setattr(LanguageRun, "train", lambda self, n, opt: reference_steps.append(n) or real_train(self, n, opt))
    run_language_batched(values, resumed, progress=False, resume=True)  # run 2 at 1 catches up to 2, then 3
    assert [n for n in reference_steps if n] == []
    for a, b in zip(straight, resumed):
        a, b = RunDirectory(a, resume=True), RunDirectory(b, resume=True)
        assert _without_seconds(a.records()) == _without_seconds(b.records())
        assert a.records(EVALUATIONS_FILE) == b.records(EVALUATIONS_FILE)


def test_runs_of_other_shapes_or_warm_ups_go_to_other_batches():
    values = [tiny(strategy="iterated_learning", generations=2, iterations_per_generation=10,
                   imitation_iterations=5, listener_only_iterations=2),
              tiny(strategy="pbf", generations=2, iterations_per_generation=10),
              tiny(strategy="pbf", generations=2, iterations_per_generation=10, seed=1),
              tiny(strategy="pbf", generations=2, iterations_per_generation=10, hidden_size=8)]
    assert batch_key(values[1]) == batch_key(values[2]) != batch_key(values[3])
    assert batch_key(values[0]) != batch_key(values[1])  # iterated learning's listener-only warm-up
    assert batch_key({**values[0], "strategy": "pbf"}) == batch_key(values[1])  # the warm-up is IL's alone
    records = run_language_batched(values, progress=False, max_batch=2)
    assert [len(r) for r in records] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="listener-only warm-up"):
        BatchedLanguageRuns(*zip(*(split_config(v) for v in values[:2])), progress=False)
    with pytest.raises(ValueError, match="hidden_size"):
        BatchedLanguageRuns(*zip(*(split_config(v) for v in values[2:])), progress=False)


def test_iterated_learnings_warm_up_trains_the_listener_alone():
    # a whole generation of listener-only steps: the speaker ends it as imitation left it
    values = [tiny(strategy="iterated_learning", generations=2, iterations_per_generation=12, seed=s,
                   imitation_iterations=6, listener_only_iterations=12) for s in (0, 1)]
    runs = BatchedLanguageRuns(*zip(*(split_config(v) for v in values)), progress=False)
    runs.run(until=1)
    imitated = [{n: p.detach().clone() for n, p in m.game.named_parameters()} for m in runs.members]
    assert all(r["generation"] == 0 and "imitation_accuracy" in r for m in runs.members for r in m.records)
    runs.run()
    for member, before in zip(runs.members, imitated):
        now = dict(member.game.named_parameters())
        sender = [n for n in before if n.startswith("sender.")]
        receiver = [n for n in before if n.startswith("receiver.")]
        assert sender and receiver
        assert all(torch.equal(now[n], before[n]) for n in sender)
        assert not all(torch.equal(now[n], before[n]) for n in receiver)


def test_stacked_adam_steps_one_agent_alone():
    batched = BatchedGame([build_game(LanguageGameConfig(**TINY, seed=s)) for s in (0, 1)])
    adam = StackedAdam(batched.leaves, batched.slots, {slot.name: [1e-2, 1e-2] for slot in batched.slots})
    start = {n: t.clone() for n, t in batched.parameters_by_name().items()}
    grads = {leaf: torch.ones_like(t) for leaf, t in batched.leaves.items()}
    adam.step(grads, only="receiver")
    now = batched.parameters_by_name()
    assert all(torch.equal(now[n], start[n]) for n in now if n.startswith("sender."))
    assert all(not torch.equal(now[n], start[n]) for n in now if n.startswith("receiver."))
    receiver_slots = [k for k, slot in enumerate(batched.slots) if slot.name.startswith("receiver.")]
    assert adam.steps[receiver_slots].eq(1).all() and adam.steps.sum() == len(receiver_slots) * 2
    with pytest.raises(ValueError, match="agents are"):
        adam.step(grads, only="listener")


def test_a_diverging_run_stops_alone(tmp_path):
    values = [tiny(strategy="pbf", generations=3, iterations_per_generation=5, seed=s) for s in (0, 1)]
    game_configs, relearns = zip(*(split_config(v) for v in values))
    run_dirs = [RunDirectory(tmp_path / f"r{i}") for i in range(2)]
    runs = BatchedLanguageRuns(game_configs, relearns, run_dirs, progress=False)
    runs.run(until=1)
    with torch.no_grad():
        runs.game.leaves["sender.encoder.weight_t"][1].fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="run 1 .seed 1.*generation 1"):
        runs.run()
    assert [len(d.records()) for d in run_dirs] == [3, 1]
    assert all(math.isfinite(r["train_loss"]) for r in run_dirs[0].records())


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-1, 5") == [0, 1, 5]
    for bad in ("", "3-1", "a", "1,1"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
