"""The generational engine: strategies, records, resume, iterated learning's imitation."""

import math

import pytest
import torch

import copy

from emergent_frl.imitation import Imitation, JointImitation, imitate, imitate_together, lexicon, lexicon_accuracy
from emergent_frl.relearn import (
    EVALUATIONS_FILE,
    LanguageRun,
    NonFiniteError,
    RelearnConfig,
    run_language,
    split_config,
)
from emergent_frl.runs import RunDirectory
from emergent_frl.training import ConfigError, LanguageGameConfig, build_game
from tiny_configs import TINY


REQUIRED = {"generation", "iteration", "strategy", "seed", "accuracy", "sender_entropy", "topsim",
            "topsim_after_forgetting", "posdis", "bosdis"}


def tiny(**overrides):
    return {**TINY, **overrides}


def test_reset_receiver_writes_one_finite_record_per_generation(tmp_path):
    records = run_language(tiny(strategy="reset_receiver", generations=3, iterations_per_generation=30),
                           str(tmp_path / "run"), progress=False)
    assert [r["generation"] for r in records] == [0, 1, 2]
    assert [r["iteration"] for r in records] == [30, 60, 90]
    for r in records:
        assert REQUIRED <= set(r)
        for key in ("accuracy", "sender_entropy", "topsim"):
            assert math.isfinite(r[key])
    assert records[0]["receiver_forgotten_fraction"] == 1.0
    # A receiver reset leaves the speaker, hence its language, untouched.
    assert records[0]["topsim_after_forgetting"] == records[0]["topsim"]
    assert records[-1]["topsim_after_forgetting"] is None
    run_dir = RunDirectory(tmp_path / "run", resume=True)
    assert [r["accuracy"] for r in run_dir.records()] == [r["accuracy"] for r in records]
    language = run_dir.read_json("language.json")
    assert len(language["messages"]) == 9 and len(language["objects"]) == 9
    assert run_dir.read_config()["strategy"] == "reset_receiver"


def test_pbf_keeps_ten_percent_and_changes_the_language(tmp_path):
    records = run_language(tiny(strategy="pbf", generations=2, iterations_per_generation=20), None,
                           progress=False)
    assert records[0]["sender_forgotten_fraction"] == pytest.approx(0.9, abs=0.01)
    assert records[0]["receiver_forgotten_fraction"] == pytest.approx(0.9, abs=0.01)


def test_no_reset_equals_one_long_generation():
    """The control: G generations of N iterations are the same run as one of G*N iterations."""
    split = run_language(tiny(generations=3, iterations_per_generation=20), None, progress=False)
    whole = run_language(tiny(generations=1, iterations_per_generation=60), None, progress=False)
    assert split[-1]["accuracy"] == whole[-1]["accuracy"]
    assert split[-1]["topsim"] == whole[-1]["topsim"]


@pytest.mark.parametrize("strategy", ["reset_sender", "iterated_learning", "pbf"])
def test_resume_after_interruption_gives_the_same_records(tmp_path, strategy):
    values = tiny(strategy=strategy, generations=4, iterations_per_generation=25, eval_every=10,
                  imitation_iterations=20, listener_only_iterations=5)
    run_language(values, str(tmp_path / "straight"), progress=False)
    # Interrupt after two generations, then resume the same directory to the end.
    run_language(values, str(tmp_path / "resumed"), progress=False, until=2)
    run_language(values, str(tmp_path / "resumed"), resume=True, progress=False)
    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
    straight = RunDirectory(tmp_path / "straight", resume=True).records()
    resumed = RunDirectory(tmp_path / "resumed", resume=True).records()
    assert len(resumed) == 4 and drop(resumed) == drop(straight)
    a = RunDirectory(tmp_path / "straight", resume=True).records(EVALUATIONS_FILE)
    b = RunDirectory(tmp_path / "resumed", resume=True).records(EVALUATIONS_FILE)
    assert a == b and len(a) == 4 * 2


def test_records_after_the_checkpoint_are_redone(tmp_path):
    values = tiny(strategy="reset_receiver", generations=3, iterations_per_generation=15)
    straight = run_language(values, str(tmp_path / "a"), progress=False)
    run_language(values, str(tmp_path / "b"), progress=False, until=2)
    run_dir = RunDirectory(tmp_path / "b", resume=True)
    # Simulate a crash after the record of a third generation was written but before its checkpoint.
    run_dir.append_record({"generation": 2, "junk": True})
    resumed = run_language(values, str(tmp_path / "b"), resume=True, progress=False)
    assert [r["accuracy"] for r in resumed] == [r["accuracy"] for r in straight]
    assert all("junk" not in r for r in run_dir.records())


def test_resume_refuses_other_settings(tmp_path):
    run_language(tiny(generations=1, iterations_per_generation=5), str(tmp_path / "r"), progress=False)
    with pytest.raises(ValueError, match="hidden_size"):
        run_language(tiny(generations=2, iterations_per_generation=5, hidden_size=8),
                     str(tmp_path / "r"), resume=True, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        run_language(tiny(generations=1, iterations_per_generation=5), str(tmp_path / "r"), progress=False)


def test_imitation_copies_the_previous_language():
    game = build_game(LanguageGameConfig(**{k: v for k, v in TINY.items()}, seed=1))
    objects = torch.arange(game.space.n_objects)
    target = torch.randint(4, (len(objects), 2), generator=torch.Generator().manual_seed(0))
    assert lexicon_accuracy(game.sender, game.space, objects, target) < 0.5
    out = imitate(game.sender, game.space, objects, target, iterations=300, batch_size=16, lr=1e-2,
                  generator=torch.Generator().manual_seed(0))
    assert out["imitation_accuracy"] > 0.9
    assert torch.equal(lexicon(game.sender, game.space, objects), target) or out["imitation_accuracy"] < 1


def _imitations(games, generator_seed=10, iterations=40):
    """One imitation per game: its sender (a copy) taught a random lexicon, own generator."""
    out = []
    for i, game in enumerate(games):
        objects = torch.arange(game.space.n_objects)
        target = torch.randint(game.sender.vocab_size, (len(objects), game.sender.max_len),
                               generator=torch.Generator().manual_seed(100 + i))
        out.append(Imitation(copy.deepcopy(game.sender), game.space, objects, target, iterations=iterations,
                             batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(generator_seed + i)))
    return out


def test_imitations_taught_together_match_each_taught_alone(monkeypatch):
    # Three speakers of one shape (taught as one computation) and one of another (alone).
    games = [build_game(LanguageGameConfig(**{**TINY, "seed": s})) for s in (1, 2, 3)]
    games.append(build_game(LanguageGameConfig(**{**TINY, "seed": 4, "hidden_size": 24})))
    alone, together = _imitations(games), _imitations(games)
    for work in alone:
        work.run()
    taught_alone = []
    monkeypatch.setattr(Imitation, "run", lambda self, run=Imitation.run: taught_alone.append(self) or run(self))
    imitate_together(together)
    assert taught_alone == [together[3]]
    for a, b in zip(alone, together):
        assert torch.equal(a.generator.get_state(), b.generator.get_state())  # the same draws
        for (name, p), q in zip(a.sender.named_parameters(), b.sender.parameters()):
            assert torch.allclose(p, q, atol=1e-5), name
        assert b.fields["imitation_loss"] == pytest.approx(a.fields["imitation_loss"], abs=1e-4)
        assert b.fields["imitation_accuracy"] == a.fields["imitation_accuracy"]
        assert b.sender.training  # its mode as it was
    assert together[0].fields["imitation_accuracy"] > lexicon_accuracy(
        games[0].sender, games[0].space, together[0].objects, together[0].messages)  # it learned


def test_compiled_joint_imitation_matches_each_taught_alone_and_compiles_once():
    games = [build_game(LanguageGameConfig(**{**TINY, "seed": s})) for s in (1, 2)]
    joint = JointImitation(compile=True)
    for boundary in range(2):  # two boundaries of one batch: the same first speaker, one compiled step
        alone, together = (_imitations(games, generator_seed=10 * boundary) for _ in range(2))
        together[0].sender = games[0].sender
        for work in alone:
            work.run()
        joint(together)
        for a, b in zip(alone, together):
            assert torch.equal(a.generator.get_state(), b.generator.get_state())
            for (name, p), q in zip(a.sender.named_parameters(), b.sender.parameters()):
                assert torch.allclose(p, q, atol=1e-5), name
            assert b.fields["imitation_loss"] == pytest.approx(a.fields["imitation_loss"], abs=1e-4)
        (template, step), = joint._steps.values()
        assert step.is_compiled and template.sender is games[0].sender


def test_speakers_vmap_cannot_batch_are_taught_one_by_one():
    class Unbatchable(type(build_game(LanguageGameConfig(**TINY)).sender)):
        def log_prob_of(self, x, messages):
            out = super().log_prob_of(x, messages)
            return out * (1.0 if float(out.detach().sum()) < 1e9 else 0.0)  # a host read: vmap cannot batch it

    games = [build_game(LanguageGameConfig(**{**TINY, "seed": s})) for s in (1, 2)]
    alone, together = _imitations(games), _imitations(games)
    for work in together:
        work.sender.__class__ = Unbatchable
    for work in alone:
        work.run()
    imitate_together(together)
    for a, b in zip(alone, together):
        assert torch.equal(a.generator.get_state(), b.generator.get_state())  # nothing drawn by the attempt
        assert all(torch.equal(p, q) for p, q in zip(a.sender.parameters(), b.sender.parameters()))
        assert b.fields == a.fields


def test_iterated_learning_passes_the_lexicon_on():
    records = run_language(tiny(strategy="iterated_learning", generations=2, iterations_per_generation=40,
                                imitation_iterations=300, listener_only_iterations=10), None,
                           progress=False)
    assert records[0]["imitation_accuracy"] > 0.9
    # The new speaker speaks (almost) the old language, so topsim survives the generation change.
    assert records[0]["topsim_after_forgetting"] == pytest.approx(records[0]["topsim"], abs=0.15)


def test_a_trainer_of_your_own_without_imitate_teaches_each_speaker_alone():
    from emergent_frl.trainers import ReferenceTrainer

    class Mine:  # trains as the reference trainer does, and has no `imitate`
        name = "mine"

        def __init__(self):
            self.inner, self.bar = ReferenceTrainer(progress=False), None

        def train(self, runs, n, only):
            self.inner.bar = self.bar
            return self.inner.train(runs, n, only)

        def boundary_done(self):
            pass

    values = tiny(strategy="iterated_learning", generations=2, iterations_per_generation=20,
                  imitation_iterations=30, listener_only_iterations=5)
    game_config, relearn = split_config(values)
    mine = LanguageRun(game_config, relearn, progress=False, trainer=Mine()).run()
    reference = LanguageRun(game_config, relearn, progress=False).run()
    strip = lambda rs: str([{k: v for k, v in r.items() if k != "seconds"} for r in rs])  # noqa: E731  (nan == nan)
    assert strip(mine) == strip(reference) and "imitation_accuracy" in mine[0]


def test_ease_of_teaching_records_a_learning_curve():
    records = run_language(tiny(generations=1, iterations_per_generation=20, ease_of_teaching=True,
                                ease_of_teaching_iterations=30, ease_of_teaching_eval_every=10), None,
                           progress=False)
    record = records[0]
    curve, steps = record["ease_of_teaching_curve"], record["ease_of_teaching_steps"]
    # Step 0 (the untrained listener), the log-spaced 1, 2, 5 below eval_every, then every 10.
    assert steps == [0, 1, 2, 5, 10, 20, 30]
    assert len(curve) == len(steps) and all(0 <= a <= 1 for a in curve)
    assert record["ease_of_teaching_protocol"] == "single" and record["ease_of_teaching_listeners"] == 1
    # The area under the curve over the 30 iterations, by trapezoids between the recorded steps.
    area = sum((b - a) * (x + y) / 2 for a, b, x, y in zip(steps, steps[1:], curve, curve[1:])) / 30
    assert record["ease_of_teaching"] == pytest.approx(area)


def test_ease_of_teaching_does_not_disturb_the_run():
    plain = run_language(tiny(generations=2, iterations_per_generation=20), None, progress=False)
    probed = run_language(tiny(generations=2, iterations_per_generation=20, ease_of_teaching=True,
                               ease_of_teaching_iterations=10, ease_of_teaching_eval_every=5), None,
                          progress=False)
    assert [r["topsim"] for r in plain] == [r["topsim"] for r in probed]


@pytest.mark.parametrize("field,value,needle", [
    ("strategy", "forget_everything", "strategy"),
    ("generations", 0, "generations"),
    ("receiver_keep_fraction", 1.5, "receiver_keep_fraction"),
    ("mask", "largest", "mask"),
    ("mask_timing", "sometimes", "mask_timing"),
])
def test_bad_relearn_config_names_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        RelearnConfig(**{field: value}).validate()


def test_unknown_config_key_is_refused():
    with pytest.raises(ValueError, match="unknown config keys"):
        split_config({"stratgy": "pbf"})


def test_non_finite_weights_stop_the_run_and_keep_records(tmp_path):
    game_config, relearn = split_config(tiny(generations=3, iterations_per_generation=5))
    run = LanguageRun(game_config, relearn, RunDirectory(tmp_path / "r"), progress=False)
    run.run(until=1)
    with torch.no_grad():
        next(run.game.sender.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="generation 1"):
        run.run()
    assert len(run.run_dir.records()) == 1


def test_every_generations_language_before_and_after_forgetting_is_kept_and_resumes_exactly(tmp_path):
    values = tiny(strategy="reset_sender", generations=3, iterations_per_generation=20)
    run_language(values, str(tmp_path / "whole"), progress=False)
    tables = RunDirectory(tmp_path / "whole", resume=True).records("languages.jsonl")
    assert [(t["generation"], t["when"]) for t in tables] == [
        (0, "before_forgetting"), (0, "after_forgetting"), (1, "before_forgetting"), (1, "after_forgetting"),
        (2, "before_forgetting")]
    assert tables[1]["messages"] != tables[0]["messages"]  # a new speaker speaks differently
    final = RunDirectory(tmp_path / "whole", resume=True).read_json("language.json")
    assert final["messages"] == tables[-1]["messages"] and "when" not in final
    config = RunDirectory(tmp_path / "whole", resume=True).read_config()
    assert set(config["versions"]) == {"emergent_frl", "torch", "numpy", "git_commit"}
    assert config["versions"]["torch"] == torch.__version__
    # interrupted after one generation, resumed, then extended by a generation: the same lines as
    # one run of four generations
    run_language(values, str(tmp_path / "cut"), progress=False, until=1)
    run_language(values, str(tmp_path / "cut"), progress=False, resume=True)
    run_language({**values, "generations": 4}, str(tmp_path / "cut"), progress=False, resume=True)
    run_language({**values, "generations": 4}, str(tmp_path / "four"), progress=False)
    cut = RunDirectory(tmp_path / "cut", resume=True).records("languages.jsonl")
    assert cut == RunDirectory(tmp_path / "four", resume=True).records("languages.jsonl")
    assert len(cut) == 7


@pytest.mark.parametrize("strategy, counted", [("no_reset", 20), ("reset_receiver", 0), ("pbf", 0)])
def test_the_running_mean_baseline_restarts_when_a_boundary_forgets(strategy, counted):
    game_config, relearn = split_config(tiny(strategy=strategy, generations=2, iterations_per_generation=20,
                                             baseline=True))
    run = LanguageRun(game_config, relearn, progress=False)
    run.run(until=1)  # one generation, then its boundary
    assert run.game.baseline.count.item() == counted
    run.run()
    assert run.game.baseline.count.item() == counted + 20


def test_difficulty_probes_and_the_wider_metrics_are_recorded_when_asked(tmp_path):
    values = tiny(strategy="pbf", generations=2, iterations_per_generation=20, eval_every=10,
                  difficulty_probes=True, wider_metrics=True)
    records = run_language(values, str(tmp_path / "run"), progress=False)
    probes = {"probe_same_attr0", "probe_same_attr1", "probe_easy", "probe_random"}
    evaluations = RunDirectory(tmp_path / "run", resume=True).records(EVALUATIONS_FILE)
    for record in [*records, *evaluations]:
        assert probes <= set(record) and all(0.0 <= record[k] <= 1.0 for k in probes)
        assert {"mutual_information", "context_independence"} <= set(record)
    assert all(0.0 <= records[0][f"{k}_after_forgetting"] <= 1.0 for k in probes)
    assert not any(k.startswith("probe_") for k in run_language(tiny(generations=1, iterations_per_generation=5),
                                                                 None, progress=False)[0])
    with pytest.raises(ConfigError, match="difficulty_probes"):
        run_language(tiny(game="reconstruction", difficulty_probes=True, generations=1,
                          iterations_per_generation=5), None, progress=False)


def test_one_progress_bar_covers_the_whole_run(monkeypatch):
    import emergent_frl.relearn as relearn

    totals = []
    real = relearn.tqdm

    def recording(*args, **kwargs):
        totals.append(kwargs.get("total"))
        return real(*args, **{**kwargs, "disable": True})

    monkeypatch.setattr(relearn, "tqdm", recording)
    game_config, relearn_config = split_config(tiny(strategy="pbf", generations=3, iterations_per_generation=15))
    LanguageRun(game_config, relearn_config, progress=True).run()
    run = LanguageRun(game_config, relearn_config, progress=True)
    run.run(until=1)
    run.run()
    assert totals == [45, 15, 30]  # one bar for every iteration a call trains: all, then one, then the rest
