"""Ease of teaching: the fresh-listener curve starts untrained, is log-spaced early, says its protocol,
averages Li & Bowling's listeners, and leaves the run alone."""

import copy

import numpy as np
import pytest
import torch

from emergent_frl.forgetting import reset_module
from emergent_frl.imitation import imitate
from emergent_frl.knobs import knobs
from emergent_frl.relearn import RelearnConfig, run_language
from emergent_frl.teaching import (
    PROTOCOLS,
    ease_of_teaching,
    listener_seed,
    teach_fresh_listener,
    teaching_steps,
)
from emergent_frl.training import (
    ConfigError,
    LanguageGameConfig,
    build_game,
    evaluate,
)
from tiny_configs import TINY


@pytest.fixture(scope="module")
def trained():
    """A tiny referential game whose speaker speaks an unambiguous compositional language (taught
    by imitation: the tiny pair itself learns too slowly for a unit test), so a listener can learn
    it; the listener's lr is 1e-2 for the same reason."""
    config = LanguageGameConfig(**TINY, baseline=True, seed=3, lr_receiver=1e-2)
    game = build_game(config)
    objects = torch.arange(game.space.n_objects)
    out = imitate(game.sender, game.space, objects, game.space.attributes_of(objects), iterations=300,
                  batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(0))
    assert out["imitation_accuracy"] == 1.0, "the fixture's speaker is ambiguous: the tests below would be vacuous"
    return game, config


def probe(**fields) -> RelearnConfig:
    return RelearnConfig(ease_of_teaching=True, **fields).validate()


@pytest.mark.parametrize("iterations,every,expected", [
    (1000, 100, [0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]),
    (30, 10, [0, 1, 2, 5, 10, 20, 30]),
    (25, 10, [0, 1, 2, 5, 10, 20, 25]),     # the last iteration is always a point
    (3, 1, [0, 1, 2, 3]),
    (4, 4, [0, 1, 2, 4]),
    (5000, 1000, [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 3000, 4000, 5000]),
])
def test_steps_are_log_spaced_below_eval_every(iterations, every, expected):
    assert teaching_steps(iterations, every) == expected


def test_steps_refuse_no_iterations():
    with pytest.raises(ValueError, match="iterations=0"):
        teaching_steps(0, 10)


def test_curve_starts_with_the_untrained_listener(trained):
    game, config = trained
    seed = 11
    record = ease_of_teaching(game, config, probe(ease_of_teaching_iterations=40, ease_of_teaching_eval_every=20),
                              seed=seed)
    assert record["ease_of_teaching_steps"] == [0, 1, 2, 5, 10, 20, 40]
    # Step 0 is the speaker with a freshly drawn listener, before any listener training.
    untrained = copy.deepcopy(game)
    reset_module(untrained.receiver, torch.Generator().manual_seed(seed))
    assert record["ease_of_teaching_curve"][0] == pytest.approx(evaluate(untrained)["accuracy"])
    assert record["ease_of_teaching_curve"][0] < 0.6  # near chance (3 candidates), far below where it ends


def test_the_fresh_listener_learns(trained):
    game, config = trained
    record = ease_of_teaching(game, config, probe(ease_of_teaching_iterations=300, ease_of_teaching_eval_every=100),
                              seed=5)
    curve = record["ease_of_teaching_curve"]
    assert curve[0] < 0.6 and curve[-1] > 0.9
    assert curve[0] < record["ease_of_teaching"] < curve[-1]


def test_single_protocol_is_recorded(trained):
    game, config = trained
    record = ease_of_teaching(game, config, probe(ease_of_teaching_iterations=10, ease_of_teaching_eval_every=5), 0)
    assert record["ease_of_teaching_protocol"] == "single"
    assert record["ease_of_teaching_listeners"] == 1
    assert "ease_of_teaching_curve_sd" not in record
    steps, curve = record["ease_of_teaching_steps"], record["ease_of_teaching_curve"]
    assert record["ease_of_teaching"] == pytest.approx(np.trapezoid(curve, steps) / 10)


def test_li_bowling_averages_its_listeners(trained):
    game, config = trained
    relearn = probe(ease_of_teaching_protocol="li_bowling", ease_of_teaching_listeners=3,
                    ease_of_teaching_iterations=20, ease_of_teaching_eval_every=10)
    record = ease_of_teaching(game, config, relearn, seed=7)
    steps = [0, 1, 2, 5, 10, 20]
    assert record["ease_of_teaching_protocol"] == "li_bowling"
    assert record["ease_of_teaching_listeners"] == 3
    assert record["ease_of_teaching_steps"] == steps
    curves = np.array([teach_fresh_listener(game, config.lr_receiver, steps, listener_seed(7, k)) for k in range(3)])
    assert len({listener_seed(7, k) for k in range(3)}) == 3
    assert not np.allclose(curves[0], curves[1])  # each listener its own stream
    np.testing.assert_allclose(record["ease_of_teaching_curve"], curves.mean(0))
    np.testing.assert_allclose(record["ease_of_teaching_curve_sd"], curves.std(0))
    # One Li & Bowling listener is the single protocol's listener.
    one = ease_of_teaching(game, config, probe(ease_of_teaching_protocol="li_bowling", ease_of_teaching_listeners=1,
                                               ease_of_teaching_iterations=20, ease_of_teaching_eval_every=10), 7)
    single = ease_of_teaching(game, config, probe(ease_of_teaching_iterations=20, ease_of_teaching_eval_every=10), 7)
    assert one["ease_of_teaching_curve"] == single["ease_of_teaching_curve"]


def test_the_probe_leaves_the_game_and_random_state_alone(trained):
    game, config = trained
    before = {k: v.clone() for k, v in game.state_dict().items()}
    modes = (game.sender.training, game.receiver.training)
    rng = torch.get_rng_state()
    ease_of_teaching(game, config, probe(ease_of_teaching_protocol="li_bowling", ease_of_teaching_listeners=2,
                                         ease_of_teaching_iterations=10, ease_of_teaching_eval_every=5), 1)
    after = game.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (game.sender.training, game.receiver.training) == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_li_bowling_leaves_the_run_untouched():
    tiny = {**TINY, "generations": 2, "iterations_per_generation": 20}
    plain = run_language(tiny, None, progress=False)
    probed = run_language({**tiny, "ease_of_teaching": True, "ease_of_teaching_protocol": "li_bowling",
                           "ease_of_teaching_listeners": 2, "ease_of_teaching_iterations": 10,
                           "ease_of_teaching_eval_every": 5}, None, progress=False)
    for key in ("accuracy", "topsim", "accuracy_after_forgetting", "train_loss"):
        assert [r[key] for r in plain] == [r[key] for r in probed], key
    assert [r["ease_of_teaching_protocol"] for r in probed] == ["li_bowling"] * 2
    assert all("ease_of_teaching" not in r for r in plain)


def test_protocol_knob_offers_the_teaching_protocols():
    assert knobs(RelearnConfig)["ease_of_teaching_protocol"].choices == PROTOCOLS


@pytest.mark.parametrize("field,value,needle", [
    ("ease_of_teaching_protocol", "many", r"ease_of_teaching_protocol=.*single.*li_bowling"),
    ("ease_of_teaching_listeners", 0, r"ease_of_teaching_listeners=0: must be an integer >= 1"),
])
def test_bad_teaching_settings_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        RelearnConfig(ease_of_teaching=True, **{field: value}).validate()
