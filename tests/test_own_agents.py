"""A researcher's own sender and receiver (--agents MODULE:FUNCTION) and own strategy object run
through every path the built-in ones do: the scripts, resume, sweeps, forgetting, the records."""

from __future__ import annotations

import json
import pathlib
import re

import pytest
import torch

import myagents
from emergent_frl.batched import run_language_batched
from emergent_frl.forgetting import partial_forgetting
from emergent_frl.imitation import Imitation
from emergent_frl.relearn import run_language
from emergent_frl.strategies import OperatorStrategy
from emergent_frl.sweeps import SweepRun, run_sweep
from emergent_frl.training import LanguageGameConfig, build_game
from fault_catalog import Fault, run_fault
from games import referential

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = {"n_values": 3, "vocab_size": 6, "n_candidates": 3, "batch_size": 16, "eval_every": 100,
         "agents": "myagents:build"}
FLAGS = ["--n-values", "3", "--vocab-size", "6", "--n-candidates", "3", "--batch-size", "16", "--eval-every", "100",
         "--generations", "2", "--iterations-per-generation", "100", "--no-plot", "--no-progress"]


def records(path: pathlib.Path, name: str = "generations.jsonl") -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (path / name).read_text().splitlines()]


# factories of broken agents, named in the catalog below as test_own_agents:FUNCTION
class _NoEos(myagents.MlpGruSender):
    def __getattribute__(self, name):
        if name == "eos":
            raise AttributeError(name)
        return super().__getattribute__(name)


def no_eos(config):
    sender, receiver = myagents.build(config)
    return _NoEos(config.space().input_size, config.vocab_size, config.max_len), receiver


class _ImitatingSender(myagents.MlpGruSender):
    """The guide's speaker with `log_prob_of`, which iterated learning's imitation needs."""

    def log_prob_of(self, x, messages):
        h, symbol, total = self.encoder(x), None, 0.0
        for t in range(self.max_len):
            h = self.cell(symbol, (h, None))[0]
            log_p = self.head(h).log_softmax(-1)
            total = total + log_p.gather(-1, messages[:, t:t + 1])[:, 0]
            symbol = myagents.one_hot(messages[:, t], self.vocab_size, log_p.dtype)
        return total


def imitating(config):
    sender, receiver = myagents.build(config)
    return _ImitatingSender(config.space().input_size, config.vocab_size, config.max_len), receiver


def raises(config):
    raise RuntimeError("my agents need a GPU")


def one_module(config):
    return myagents.build(config)[0]


def not_a_module(config):
    return "sender", "receiver"


AGENTS_OUT = ("--out", "{tmp}/run")
CASES = [
    Fault("not MODULE:FUNCTION", "games.referential", ("--agents", "nonsense", *AGENTS_OUT), 2,
          "--agents nonsense: must be MODULE:FUNCTION"),
    Fault("a module that is not there", "games.referential", ("--agents", "no_such_agents_module:build", *AGENTS_OUT),
          2, "--agents no_such_agents_module:build: cannot import no_such_agents_module"),
    Fault("no such function", "games.referential", ("--agents", "myagents:nothing", *AGENTS_OUT), 2,
          "myagents has no function nothing"),
    Fault("a sender without eos", "games.referential", ("--agents", "test_own_agents:no_eos", *AGENTS_OUT), 2,
          "the sender (_NoEos) has no `eos`, which SenderAgent requires"),
    Fault("a factory that raises", "games.referential", ("--agents", "test_own_agents:raises", *AGENTS_OUT), 2,
          "test_own_agents:raises(config) failed: RuntimeError: my agents need a GPU"),
    Fault("a factory returning one module", "games.referential", ("--agents", "test_own_agents:one_module",
                                                                  *AGENTS_OUT), 2, "must return (sender, receiver)"),
    Fault("agents that are no modules", "games.referential", ("--agents", "test_own_agents:not_a_module",
                                                              *AGENTS_OUT), 2, "not a torch.nn.Module"),
    Fault("iterated learning without log_prob_of", "games.referential",
          (*FLAGS, "--agents", "myagents:build", "--strategy", "iterated_learning", "--listener-only-iterations", "10",
           *AGENTS_OUT), 2,
          "has no `log_prob_of`, which ImitatingSender requires"),
]


@pytest.mark.parametrize("fault", CASES, ids=str)
def test_own_agents_fault(fault, tmp_path, monkeypatch):
    run_fault(fault, tmp_path, monkeypatch)


def test_the_guide_shows_the_example_module_verbatim_in_at_most_40_lines():
    guide = (ROOT / "docs" / "own_agents.md").read_text()
    block = re.search(r"```python\n(.*?)```", guide, re.S).group(1)
    source = (ROOT / "tests" / "myagents.py").read_text()
    assert block == source
    assert len(source.splitlines()) <= 40


def test_own_agents_are_the_ones_built_seeded_and_forgotten_by_the_operators():
    config = LanguageGameConfig(**SMALL).validate()
    game, again = build_game(config), build_game(config)
    assert isinstance(game.sender, myagents.MlpGruSender) and isinstance(game.receiver, myagents.GruReceiver)
    for a, b in zip(game.parameters(), again.parameters()):  # the seed fixes the user's initialisation
        assert torch.equal(a, b)
    operator = partial_forgetting(0.1)  # PBF's: keep the 10 % largest at init
    operator.prepare(game.receiver)
    before = [p.clone() for p in game.receiver.parameters()]
    report = operator.apply(game.receiver)
    changed = sum(int((p != q).sum()) for p, q in zip(game.receiver.parameters(), before))
    total = sum(p.numel() for p in before)
    assert 0.8 < report.fraction <= 0.9 and 0.8 * total < changed <= 0.9 * total


def test_own_agents_learn_with_forgetting_and_resume_equals_an_uninterrupted_run(tmp_path):
    values = {**SMALL, "strategy": "pbf", "generations": 3, "iterations_per_generation": 400}
    whole = run_language(values, str(tmp_path / "whole"), progress=False)
    assert [r["strategy"] for r in whole] == ["pbf"] * 3
    # 3 candidates: chance is 1/3; forgetting knocks accuracy down and each generation relearns
    assert all(r["accuracy"] > 0.45 for r in whole), [r["accuracy"] for r in whole]
    for before, after in zip(whole, whole[1:]):
        assert before["receiver_forgotten_fraction"] > 0.8
        assert after["accuracy"] > before["accuracy_after_forgetting"] + 0.05
    run_language(values, str(tmp_path / "cut"), progress=False, until=1)
    run_language(values, str(tmp_path / "cut"), progress=False, resume=True)
    assert records(tmp_path / "cut") == records(tmp_path / "whole")
    assert records(tmp_path / "cut", "evaluations.jsonl") == records(tmp_path / "whole", "evaluations.jsonl")


def test_the_script_records_the_agents_and_the_engine_and_resume_rebuilds_them(tmp_path, capsys):
    run = tmp_path / "run"
    assert referential.main([*FLAGS, "--agents", "myagents:build", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["agents"] == "myagents:build" and config["engine"] == "batched"
    assert referential.main(["--resume", str(run), "--generations", "3"]) == 0
    assert [r["generation"] for r in records(run)] == [0, 1, 2]
    assert json.loads((run / "config.json").read_text())["agents"] == "myagents:build"


def test_a_sweep_trains_own_agents_from_the_grid_key(tmp_path):
    base = {**LanguageGameConfig().to_dict(), **SMALL, "generations": 2, "iterations_per_generation": 50,
            "strategy": "pbf", "iterations_per_generation": 50}
    runs = [SweepRun(f"pbf/seed{seed}", {**base, "seed": seed}) for seed in (0, 1)]
    summary = run_sweep(runs, tmp_path / "out", workers=2, log=None)
    assert summary.count("finished") == 2, summary.report()
    for seed in (0, 1):
        run = tmp_path / "out" / "pbf" / f"seed{seed}"
        config = json.loads((run / "config.json").read_text())
        assert config["agents"] == "myagents:build" and config["engine"] == "batched"
        assert [r["seed"] for r in records(run)] == [seed, seed]


def test_own_agents_train_batched_with_seeds_and_resume_to_the_uninterrupted_records(tmp_path):
    """--seeds with --agents: the user's pair trains as one batched computation, each seed writes
    its own run directory, and an interrupted batch resumed gives the uninterrupted records."""
    flags = [*FLAGS, "--agents", "myagents:build", "--seeds", "0-3", "--generations", "3",
             "--iterations-per-generation", "40", "--eval-every", "20"]
    assert referential.main([*flags, "--out", str(tmp_path / "whole")]) == 0
    straight = [records(tmp_path / "whole" / f"seed{s}") for s in range(4)]
    assert [[r["seed"] for r in rs] for rs in straight] == [[s] * 3 for s in range(4)]
    config = json.loads((tmp_path / "whole" / "seed2" / "config.json").read_text())
    assert config["agents"] == "myagents:build" and config["engine"] == "batched"
    values = [{**SMALL, "seed": s, "generations": 3, "iterations_per_generation": 40, "eval_every": 20,
               "strategy": "pbf"} for s in range(4)]
    cut = [str(tmp_path / "cut" / f"seed{s}") for s in range(4)]
    run_language_batched(values, cut, progress=False, until=1)
    run_language_batched(values, cut, progress=False, resume=True)
    run_language_batched(values, [str(tmp_path / "again" / f"seed{s}") for s in range(4)], progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    for s in range(4):
        for name in ("generations.jsonl", "evaluations.jsonl"):
            assert strip(records(tmp_path / "cut" / f"seed{s}", name)) == \
                strip(records(tmp_path / "again" / f"seed{s}", name))


def test_a_strategy_object_of_your_own_is_what_runs_and_what_the_records_name(tmp_path):
    def mine():
        return OperatorStrategy("forget_half_listener",
                                {"receiver": partial_forgetting(0.5, mask="bernoulli", timing="each")},
                                fresh_optimizers=False)

    values = {**SMALL, "generations": 3, "iterations_per_generation": 50}
    whole = run_language(values, str(tmp_path / "whole"), progress=False, strategy=mine())
    assert [r["strategy"] for r in whole] == ["forget_half_listener"] * 3
    assert 0.4 < whole[0]["receiver_forgotten_fraction"] < 0.6 and "sender_forgotten_fraction" not in whole[0]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["strategy"] == "forget_half_listener"
    run_language(values, str(tmp_path / "cut"), progress=False, strategy=mine(), until=2)
    run_language(values, str(tmp_path / "cut"), progress=False, strategy=mine(), resume=True)
    assert records(tmp_path / "cut") == records(tmp_path / "whole")


def test_own_speakers_imitate_together_in_a_batch_with_iterated_learning(monkeypatch):
    taught_alone = []
    monkeypatch.setattr(Imitation, "run", lambda self, run=Imitation.run: taught_alone.append(self) or run(self))
    values = [{**SMALL, "agents": "test_own_agents:imitating", "seed": s, "strategy": "iterated_learning",
               "generations": 2, "iterations_per_generation": 60, "imitation_iterations": 300,
               "listener_only_iterations": 10, "lr_sender": 0.01} for s in (0, 1)]
    batched = run_language_batched(values, progress=False)
    assert taught_alone == []  # one computation for both speakers
    for records in batched:
        assert records[0]["strategy"] == "iterated_learning"
        assert records[0]["imitation_accuracy"] > 0.9, records[0]  # each new speaker learned its lexicon
