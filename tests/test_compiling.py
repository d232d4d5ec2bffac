"""torch.compile for the batched step (emergent_frl/batched/compiling.py).

What is checked: the settings parse or fail naming the field; "auto" falls back to eager (with a
warning) only when the first, compiling call fails; the compiled loss and gradients equal the eager
ones for the same weights and batch; a compiled run is reproducible from its seed.
"""

import math
import warnings

import pytest
import torch

from emergent_frl.batched import BatchedLanguageRuns, run_language_batched
from emergent_frl.stacked import StackedGames
from emergent_frl import compiling
from emergent_frl.compiling import MaybeCompiled, compile_mode
from emergent_frl.relearn import RelearnConfig
from emergent_frl.training import LanguageGameConfig, build_game, make_generator
from tiny_configs import TINY



@pytest.mark.parametrize("value, expected", [
    (False, (False, None, False)),
    (True, (True, None, False)),
    ("auto", (True, None, True)),
    ("reduce-overhead", (True, "reduce-overhead", False)),
])
def test_compile_settings(value, expected):
    assert compile_mode(value) == expected


def test_a_bad_compile_setting_fails_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"compile='fast': must be False, True, 'auto' or a torch.compile mode"):
        run_language_batched([{**TINY, "iterations_per_generation": 1}], [str(tmp_path / "run")], compile="fast")
    assert not (tmp_path / "run").exists()


class _BrokenBackend:
    """Stands in for torch.compile on a machine without a working backend."""

    calls = 0

    def __init__(self, fn, **kwargs):
        pass

    def __call__(self, *args):
        type(self).calls += 1
        raise RuntimeError("no C++ compiler found\nsecond line of the report")


def test_auto_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", _BrokenBackend)
    _BrokenBackend.calls = 0
    double = MaybeCompiled(lambda x: 2 * x, "auto")
    with pytest.warns(RuntimeWarning, match=r"torch.compile is not usable here \(RuntimeError: no C\+\+ "
                                            r"compiler found\); training eager"):
        assert double(torch.tensor(3.0)).item() == 6.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert double(torch.tensor(4.0)).item() == 8.0  # eager from now on, silently
    assert _BrokenBackend.calls == 1 and not double.is_compiled


def test_compile_true_does_not_hide_a_broken_backend(monkeypatch):
    monkeypatch.setattr(compiling.torch, "compile", _BrokenBackend)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        MaybeCompiled(lambda x: 2 * x, True)(torch.tensor(1.0))


def test_failures_after_a_successful_compiled_call_propagate(monkeypatch):
    outcomes = iter([torch.tensor(1.0), RuntimeError("later failure")])

    class Flaky:
        def __init__(self, fn, **kwargs):
            pass

        def __call__(self, *args):
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    monkeypatch.setattr(compiling.torch, "compile", Flaky)
    fn = MaybeCompiled(lambda x: x, "auto")
    assert fn(torch.tensor(0.0)).item() == 1.0
    with pytest.raises(RuntimeError, match="later failure"):
        fn(torch.tensor(0.0))


@pytest.mark.slow
@pytest.mark.parametrize("seeds, overrides", [
    ((0,), {}),  # one run: no vmap
    ((0, 1), {"baseline": True}),
    ((0, 1), {"agents": "myagents:build"}),  # a user's own pair (tests/myagents.py)
])
def test_compiled_loss_and_gradients_equal_the_eager_ones(seeds, overrides):
    """Compiled, `losses` + `gradients` (autograd through the compiled forward) and
    `losses_and_gradients` (one graph by torch.func, what training runs) both give the eager
    step's values, for the same weights and batch."""
    configs = [LanguageGameConfig(**{**TINY, **overrides, "seed": seed}) for seed in seeds]

    def fresh(setting):
        return StackedGames([build_game(c) for c in configs], compile=setting)

    def batch_of(game):
        return game.sample([make_generator(c) for c in configs])

    eager = fresh(False)
    loss_e, stats_e = eager.losses(batch_of(eager))
    grads_e = eager.gradients(loss_e)
    separate = fresh(True)
    loss_s, stats_s = separate.losses(batch_of(separate))
    grads_s = separate.gradients(loss_s)
    joint = fresh(True)
    loss_j, stats_j, grads_j = joint.losses_and_gradients(batch_of(joint))
    assert separate._loss.is_compiled and joint._joint.is_compiled
    assert set(grads_j) == set(grads_e)
    for loss, stats, grads in ((loss_s, stats_s, grads_s), (loss_j, stats_j, grads_j)):
        torch.testing.assert_close(loss, loss_e, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats, stats_e, rtol=1e-5, atol=1e-6)
        for name, grad in grads_e.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads_j.values())
    if "baseline" in overrides:  # each path took the runs' mean task loss into their baselines
        for game in (separate, joint):
            torch.testing.assert_close(game.buffers["baseline.mean"], eager.buffers["baseline.mean"])
            assert game.buffers["baseline.count"].tolist() == [1.0, 1.0]


@pytest.mark.slow
def test_a_compiled_run_is_reproducible_from_its_seeds():
    def run():
        configs = [LanguageGameConfig(**{**TINY, "seed": seed, "eval_every": 20}) for seed in (0, 1)]
        relearn = RelearnConfig(strategy="pbf", generations=2, iterations_per_generation=40)
        runs = BatchedLanguageRuns(configs, [relearn] * 2, progress=False, compile=True)
        plain = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731  (nan != nan)
        return [[{k: plain(v) for k, v in r.items() if k != "seconds"} for r in run] for run in runs.run()]

    first, second = run(), run()
    assert first == second
    assert first[0] != first[1]


def test_auto_compiles_only_where_the_work_pays_for_the_warm_up():
    from emergent_frl.compiling import COMPILE_PAYS_FROM, resolve_auto

    assert resolve_auto("auto", COMPILE_PAYS_FROM - 1) is False
    assert resolve_auto("auto", COMPILE_PAYS_FROM) == "auto"
    assert resolve_auto(True, 10) is True and resolve_auto(False, 10**9) is False
    assert resolve_auto("reduce-overhead", 10) == "reduce-overhead"


def test_a_short_run_records_that_it_trained_eager_and_resumes_so(tmp_path):
    import json

    from games import referential

    run = tmp_path / "run"
    flags = ["--n-values", "3", "--vocab-size", "6", "--n-candidates", "3", "--batch-size", "8", "--hidden-size", "8",
             "--generations", "2", "--iterations-per-generation", "20", "--no-plot", "--no-progress"]
    assert referential.main([*flags, "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["compile"] is False
    assert referential.main([*flags, "--resume", str(run), "--generations", "3"]) == 0
    assert json.loads((run / "config.json").read_text())["compile"] is False
