"""Batched runs (emergent_frl/batched/): S runs of one shape trained as one computation.

What is checked here, at the level of runs (the engine's step: tests/test_stacked.py): each run
consumes exactly its single-run random stream; runs do not influence each other; a batched run
writes the run directories `LanguageRun` writes, resumes exactly, and brings lagging runs level on
the batched engine.
"""

import math

import pytest
import torch

from emergent_frl.batched import BatchedLanguageRuns, batch_key, parse_seeds, run_language_batched
from emergent_frl.relearn import EVALUATIONS_FILE, LanguageRun, NonFiniteError, run_language, split_config
from emergent_frl.runs import RunDirectory
from emergent_frl.trainers import ReferenceTrainer
from tiny_configs import TINY



def tiny(**overrides):
    return {**TINY, **overrides}


def _without_seconds(records):
    """The records minus their timing, nan as None (a degenerate language scores nan)."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return [{k: plain(v) for k, v in r.items() if k != "seconds"} for r in records]


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


@pytest.mark.parametrize("strategies", [("pbf", "reset_sender"), ("iterated_learning", "iterated_learning")])
def test_resumed_batch_writes_the_records_of_an_uninterrupted_one(tmp_path, strategies):
    # two iterated-learning runs: their speakers imitate together at each boundary
    values = [tiny(strategy=s, seed=i, generations=3, iterations_per_generation=12, eval_every=6,
                   imitation_iterations=8, listener_only_iterations=3)
              for i, s in enumerate(strategies)]
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
    reference engine), and the records equal an uninterrupted batch's, to float rounding: a run
    trained in a batch of 1 and then of 3 sums its reductions in another order than in a batch of 3
    throughout (a ~1e-7 relative difference in a score), so the comparison is approximate here."""
    values = [tiny(strategy=s, seed=i, generations=4, iterations_per_generation=12, eval_every=6)
              for i, s in enumerate(["pbf", "reset_sender", "no_reset"])]
    straight = [str(tmp_path / f"straight-{i}") for i in range(3)]
    resumed = [str(tmp_path / f"resumed-{i}") for i in range(3)]
    run_language_batched(values, straight, progress=False)
    run_language_batched(values, resumed, progress=False, until=1)
    run_language_batched(values[:1], resumed[:1], progress=False, resume=True, until=3)  # run 0 at 3
    run_language_batched(values[1:2], resumed[1:2], progress=False, resume=True, until=2)  # run 1 at 2
    reference_steps = []
    real_train = ReferenceTrainer.train
    monkeypatch.setattr(ReferenceTrainer, "train",
                        lambda self, runs, n, only: reference_steps.append(n) or real_train(self, runs, n, only))
    run_language_batched(values, resumed, progress=False, resume=True)  # run 2 at 1 catches up to 2, then 3
    assert [n for n in reference_steps if n] == []
    for a, b in zip(straight, resumed):
        a, b = RunDirectory(a, resume=True), RunDirectory(b, resume=True)
        for name in ("generations.jsonl", EVALUATIONS_FILE):
            mine, theirs = _without_seconds(a.records(name)), _without_seconds(b.records(name))
            assert len(mine) == len(theirs) and [r.keys() for r in mine] == [r.keys() for r in theirs]
            for x, y in zip(mine, theirs):
                assert x == pytest.approx(y, rel=1e-5, abs=1e-6), name


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


def test_a_diverging_run_stops_alone(tmp_path):
    values = [tiny(strategy="pbf", generations=3, iterations_per_generation=5, seed=s) for s in (0, 1)]
    game_configs, relearns = zip(*(split_config(v) for v in values))
    run_dirs = [RunDirectory(tmp_path / f"r{i}") for i in range(2)]
    runs = BatchedLanguageRuns(game_configs, relearns, run_dirs, progress=False)
    runs.run(until=1)
    with torch.no_grad():
        runs.members[1].game.sender.encoder.weight.fill_(float("nan"))  # a view into the stack
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
