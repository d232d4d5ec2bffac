"""Plots that show forget-and-relearn happen: curves inside generations from evaluations.jsonl with
every forgetting event and the drop right after it, bands clipped to what a metric can take, titles
that do not claim an interval over one run, grouping that says what differs, and the language
figure (no torch involved)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from analysis.dynamics import dynamics, dynamics_figure, forgetting_events, forgot
from analysis.language_figure import (check_language, language_figure, load_languages, select_generations,
                                      symbol_attribute_matrix)
from analysis.plot import curves_figure
from analysis.runs import differences_note, differing_fields, find_runs, load_run, run_labels
from analysis.stats import clipped_band, metric_range

CONFIG = {"game": "referential", "generations": 3, "iterations_per_generation": 30, "hidden_size": 16,
          "receiver_training": "cross_entropy", "receiver_head": False}  # as a run records the defaults


def write_run(path, strategy, seed, generations, evaluations=(), **config):
    """A run directory: config.json, generations.jsonl (`generations`: dicts merged into each record)
    and, when given, evaluations.jsonl without strategy or seed columns (as runs write it)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({**CONFIG, "strategy": strategy, "seed": seed, **config}))
    records = [{"generation": g, "strategy": strategy, "seed": seed, **fields} for g, fields in enumerate(generations)]
    (path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if evaluations:
        (path / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evaluations))
    return path


def pbf_run(path, seed, shift=0.0):
    """Two generations of 30 iterations, evaluated every 10; forgetting after generation 0 drops
    topsim from 0.5 to 0.1 and accuracy from 0.8 to 0.3."""
    evaluations = [{"generation": 0, "iteration": 10, "topsim": 0.2 + shift, "accuracy": 0.4},
                   {"generation": 0, "iteration": 20, "topsim": 0.3 + shift, "accuracy": 0.6},
                   {"generation": 0, "iteration": 30, "topsim": 0.5 + shift, "accuracy": 0.8},
                   {"generation": 1, "iteration": 40, "topsim": 0.3 + shift, "accuracy": 0.5},
                   {"generation": 1, "iteration": 50, "topsim": 0.6 + shift, "accuracy": 0.9}]
    generations = [{"iteration": 30, "topsim": 0.5 + shift, "accuracy": 0.8, "sender_forgotten_fraction": 0.0,
                    "receiver_forgotten_fraction": 0.9, "topsim_after_forgetting": 0.1 + shift,
                    "accuracy_after_forgetting": 0.3},
                   {"iteration": 60, "topsim": 0.7 + shift, "accuracy": 0.95, "topsim_after_forgetting": None,
                    "accuracy_after_forgetting": None}]
    return write_run(path, "pbf", seed, generations, evaluations)


# -- ranges and bands ----------------------------------------------------------------------------------
def test_metric_ranges_follow_the_metric_name():
    assert metric_range("topsim") == (-1, 1) and metric_range("topsim_after_forgetting") == (-1, 1)
    assert metric_range("accuracy") == metric_range("holdout_accuracy") == metric_range("posdis") == (0, 1)
    assert metric_range("bosdis") == metric_range("receiver_forgotten_fraction") == (0, 1)
    assert metric_range("sender_entropy") == metric_range("message_entropy") == (0, math.inf)
    assert metric_range("train_loss") == (-math.inf, math.inf)


def test_band_of_two_seeds_is_clipped_to_the_metric_range():
    """The issue's case: n = 2 gave 0.558 +- 2.217, drawn from -1.7 to 2.8 for topsim."""
    assert clipped_band([0.558], [2.217], "topsim") == ([-1.0], [1.0])
    lower, upper = clipped_band([0.9, 0.1], [0.3, 0.05], "accuracy")
    assert lower == pytest.approx([0.6, 0.05]) and upper == pytest.approx([1.0, 0.15])
    lower, upper = clipped_band([0.2], [float("nan")], "sender_entropy")
    assert lower == upper == [0.2]
    assert clipped_band([0.1], [5.0], "train_loss") == (pytest.approx([-4.9]), pytest.approx([5.1]))


def band_limits(ax):
    """(lowest, highest) y of every filled band on the axes."""
    ys = np.concatenate([p.vertices[:, 1] for c in ax.collections if isinstance(c, PolyCollection)
                         for p in c.get_paths()])
    return ys.min(), ys.max()


def test_generation_curves_clip_bands_and_title_one_run_honestly(tmp_path):
    write_run(tmp_path / "a", "pbf", 0, [{"topsim": 0.9, "accuracy": 0.99}, {"topsim": -0.9, "accuracy": 0.98}])
    write_run(tmp_path / "b", "pbf", 1, [{"topsim": 0.2, "accuracy": 0.2}, {"topsim": 0.95, "accuracy": 0.97}])
    runs = [load_run(p) for p in find_runs([tmp_path])]
    fig = curves_figure(runs, ["topsim", "accuracy"])
    topsim_ax, accuracy_ax = fig.axes
    low, high = band_limits(topsim_ax)
    assert low == pytest.approx(-1.0) and high == pytest.approx(1.0)  # unclipped: 0.55 +- 4.4
    low, high = band_limits(accuracy_ax)
    assert low >= 0 and high == pytest.approx(1.0)
    assert "CI over seeds" in fig._suptitle.get_text()
    single = curves_figure(runs[:1], ["topsim"])
    assert "CI" not in single._suptitle.get_text() and "one run" in single._suptitle.get_text()


# -- inside generations --------------------------------------------------------------------------------
def test_dynamics_average_evaluations_over_seeds_and_find_the_drop(tmp_path):
    pbf_run(tmp_path / "s0", 0)
    pbf_run(tmp_path / "s1", 1, shift=0.1)
    runs = [load_run(p) for p in find_runs([tmp_path])]
    (result,) = dynamics(runs, "topsim")
    assert result.label == "pbf" and result.n == 2
    assert result.segments[0].x == [10, 20, 30] and result.segments[0].mean == pytest.approx([0.25, 0.35, 0.55])
    # generation 1: its evaluations, and the generation-end record at 60 that no evaluation covers
    assert result.segments[1].x == [40, 50, 60] and result.segments[1].mean == pytest.approx([0.35, 0.65, 0.75])
    (boundary,) = result.boundaries  # the last generation is not followed by forgetting
    assert (boundary.generation, boundary.x, boundary.runs) == (0, 30, 2)
    assert boundary.before[0] == pytest.approx(0.55) and boundary.after[0] == pytest.approx(0.15)
    assert boundary.after[2] == 2
    (accuracy,) = dynamics(runs, "accuracy")
    assert accuracy.boundaries[0].after[0] == pytest.approx(0.3)
    (posdis,) = dynamics(runs, "posdis")  # not recorded: no curve, the event still known, no drop
    assert posdis.segments == {} and posdis.boundaries[0].after is None
    (early,) = dynamics(runs, "topsim", until=25)
    assert early.segments[0].x == [10, 20] and early.boundaries == [] and 1 not in early.segments


def test_what_counts_as_forgetting():
    assert forgot({"receiver_forgotten_fraction": 0.9, "sender_forgotten_fraction": 0.0}, "pbf")
    assert not forgot({"receiver_forgotten_fraction": 0.0, "topsim_after_forgetting": 0.3}, "custom")
    assert not forgot({"topsim_after_forgetting": 0.4, "accuracy_after_forgetting": 0.9}, "no_reset")
    assert forgot({"topsim_after_forgetting": None, "accuracy_after_forgetting": 0.2}, "iterated_learning")
    assert not forgot({"topsim_after_forgetting": None, "accuracy_after_forgetting": None}, "pbf")  # last generation


def test_image_track_forgets_at_the_start_of_a_generation(tmp_path):
    records = [{"epoch": 5, "val_accuracy": 0.5, "forgotten_fraction": 0.0},
               {"epoch": 10, "val_accuracy": 0.6, "forgotten_fraction": 0.3},
               {"epoch": 15, "val_accuracy": 0.7, "forgotten_fraction": 0.3}]
    run = load_run(write_run(tmp_path / "img", "llf", 0, records))
    assert forgetting_events(run, "epoch") == [(1, 5.0, 1), (2, 10.0, 2)]


def test_no_reset_runs_have_no_forgetting_marks(tmp_path):
    write_run(tmp_path / "n", "no_reset", 0, [{"iteration": 30, "topsim": 0.5, "topsim_after_forgetting": 0.5},
                                             {"iteration": 60, "topsim": 0.6, "topsim_after_forgetting": None}])
    (result,) = dynamics([load_run(tmp_path / "n")], "topsim")
    assert result.boundaries == [] and result.segments[0].x == [30]  # drawn from the generation ends


def test_dynamics_figure_marks_every_forgetting_event_and_the_value_after(tmp_path):
    pbf_run(tmp_path / "s0", 0)
    pbf_run(tmp_path / "s1", 1, shift=0.1)
    runs = [load_run(p) for p in find_runs([tmp_path])]
    fig = dynamics_figure(runs, ["topsim", "accuracy"])
    topsim_ax = fig.axes[0]
    vertical = [line for line in topsim_ax.lines if line.get_linestyle() == "--" and len(line.get_xdata()) == 2
                and line.get_xdata()[0] == line.get_xdata()[1]]
    assert [line.get_xdata()[0] for line in vertical] == [30]
    triangles = [line for line in topsim_ax.lines if line.get_marker() == "v" and len(line.get_xdata())]
    assert [(t.get_xdata()[0], round(t.get_ydata()[0], 6)) for t in triangles] == [(30, 0.15)]
    # generation 1's curve starts at the value right after forgetting, so the drop and relearning show
    curves = [line for line in topsim_ax.lines if line.get_marker() == "o"]
    assert list(curves[1].get_xdata()) == [30, 40, 50, 60] and curves[1].get_ydata()[0] == pytest.approx(0.15)
    labels = topsim_ax.get_legend_handles_labels()[1]
    assert "pbf (n=2)" in labels and "forgetting" in labels and any("topsim_after_forgetting" in t for t in labels)
    assert "CI over seeds" in fig._suptitle.get_text()
    single = dynamics_figure(runs[:1], ["topsim"])
    assert "CI" not in single._suptitle.get_text()


def test_bad_evaluation_line_names_evaluations_jsonl(tmp_path):
    run = pbf_run(tmp_path / "s0", 0)
    with (run / "evaluations.jsonl").open("a") as handle:
        handle.write(json.dumps({"generation": 1, "iteration": 55, "topsim": "high"}) + "\n")
    with pytest.raises(ValueError, match=r"s0/evaluations.jsonl: line 6: 'topsim' is \"high\", not a number"):
        dynamics([load_run(run)], "topsim")


def test_plot_command_draws_the_dynamics(tmp_path, capsys):
    from analysis import plot

    pbf_run(tmp_path / "runs" / "s0", 0)
    out = tmp_path / "dyn.png"
    assert plot.main([str(tmp_path / "runs"), "--dynamics", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out} (1 runs)"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert plot.main([str(tmp_path / "runs"), "--dynamics", "--metric", "nope", "--out", str(out)]) == 2


# -- grouping says what differs ------------------------------------------------------------------------
def test_games_and_configs_never_pool_and_every_plot_names_the_differences(tmp_path):
    pbf_run(tmp_path / "ref0", 0)
    write_run(tmp_path / "rec0", "pbf", 0, [{"iteration": 30, "topsim": 0.9}], game="reconstruction")
    write_run(tmp_path / "nr0", "no_reset", 0, [{"iteration": 30, "topsim": 0.4}], iterations_per_generation=60)
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert sorted(set(run_labels(runs))) == ["no_reset (game=referential)", "pbf (game=reconstruction)",
                                             "pbf (game=referential)"]
    labels = [d.label for d in dynamics(runs, "topsim")]
    assert labels == ["no_reset (game=referential)", "pbf (game=reconstruction)", "pbf (game=referential)"]
    # iterations_per_generation follows the strategy here, so labels leave it out; the note names it
    assert differing_fields(runs) == {"game": ["reconstruction", "referential"], "strategy": ["no_reset", "pbf"],
                                      "iterations_per_generation": ["30", "60"]}
    note = differences_note(runs)
    assert note == ("configs differ in: game (reconstruction, referential); strategy (no_reset, pbf); "
                    "iterations_per_generation (30, 60)")
    for fig in (dynamics_figure(runs, ["topsim"]), curves_figure(runs, ["topsim"])):
        assert note in [t.get_text() for t in fig.texts]
    assert differences_note(runs[:1]) == "one configuration (game=referential), 1 run(s)"


def test_library_figures_leave_the_global_backend_alone(tmp_path):
    """Notebooks keep their backend: building and saving figures never imports pyplot (nor torch)."""
    pbf_run(tmp_path / "s0", 0)
    code = (
        "import sys, matplotlib; matplotlib.use('svg');"
        "from analysis.runs import load_run; from analysis.dynamics import dynamics_figure;"
        "from analysis.plot import plot_curves; from analysis.figures import save_figure;"
        "from analysis.language_figure import language_figure; import analysis.html_report;"
        f"run = load_run({str(tmp_path / 's0')!r});"
        f"plot_curves([run], ['topsim'], {str(tmp_path / 'c.png')!r});"
        f"save_figure(dynamics_figure([run]), {str(tmp_path / 'd.png')!r}, None);"
        "language_figure([{'objects': [[0, 0], [0, 1]], 'messages': [[1], [2]]}]);"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend();"
        "assert 'matplotlib.pyplot' not in sys.modules; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "c.png").stat().st_size > 1000 and (tmp_path / "d.png").stat().st_size > 1000


# -- the language figure -------------------------------------------------------------------------------
OBJECTS = [[a, b] for a in range(3) for b in range(2)]
COMPOSITIONAL = [[a, b + 3] for a, b in OBJECTS]


def table(generation, messages, when=None, **extra):
    out = {"generation": generation, "n_values": [3, 2], "vocab_size": 5, "eos": False, "objects": OBJECTS,
           "messages": messages, **extra}
    if when is not None:
        out["when"] = when
    return out


@pytest.mark.parametrize("change, message", [
    ({"messages": [[9, 0]] * 6}, r"'messages' holds symbol 9, allowed range 0..4 \(vocab_size\)"),
    ({"messages": [[1, 3]] * 5}, "6 objects but 5 messages"),
    ({"objects": [[3, 0]] + OBJECTS[1:]}, r"'objects'\[0\] has value 3 for attribute 0, allowed range 0..2"),
    ({"when": "during"}, "'when' is \"during\"; allowed: before_forgetting, after_forgetting"),
    ({"messages": [[1, 3]] * 5 + [[1]]}, r"'messages'\[5\] has 1 entries, the first has 2"),
    ({"n_values": [3]}, "'n_values' has 1 entries but objects have 2 attributes"),
    ({"generation": -1}, "'generation' is -1, not an integer >= 0"),
])
def test_language_tables_are_checked_field_by_field(change, message):
    with pytest.raises(ValueError, match=message):
        check_language({**table(0, COMPOSITIONAL), **change}, "t")


def test_languages_jsonl_is_preferred_and_language_json_is_the_fallback(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert load_languages(run) == []
    (run / "language.json").write_text(json.dumps(table(2, COMPOSITIONAL)))
    (final,) = load_languages(run)
    assert (final.generation, final.when) == (2, "before_forgetting")
    lines = [table(1, COMPOSITIONAL, "after_forgetting"), table(0, COMPOSITIONAL[::-1]), table(1, COMPOSITIONAL)]
    (run / "languages.jsonl").write_text("".join(json.dumps(t) + "\n" for t in lines) + '{"objects": 3}\n')
    with pytest.raises(ValueError, match=r"languages.jsonl: line 4: 'messages' is missing"):
        load_languages(run)
    (run / "languages.jsonl").write_text("".join(json.dumps(t) + "\n" for t in lines))
    assert [(t.generation, t.when) for t in load_languages(run)] == [
        (0, "before_forgetting"), (1, "before_forgetting"), (1, "after_forgetting")]


def test_select_generations_spreads_and_keeps_both_sides_of_forgetting():
    tables = [check_language(table(g, COMPOSITIONAL, w), "t") for g in range(10) for w in ("before_forgetting",
                                                                                           "after_forgetting")]
    chosen = select_generations(tables, 4)
    assert sorted({t.generation for t in chosen}) == [0, 3, 6, 9] and len(chosen) == 8
    with pytest.raises(ValueError, match="max_generations 0"):
        select_generations(tables, 0)


def test_symbol_attribute_matrix_of_a_compositional_language():
    matrix, rows, columns = symbol_attribute_matrix(check_language(table(0, COMPOSITIONAL), "t"))
    assert columns == ["a0=0", "a0=1", "a0=2", "a1=0", "a1=1"]
    assert rows == ["pos 0: 0", "pos 0: 1", "pos 0: 2", "pos 1: 3", "pos 1: 4"]
    np.testing.assert_allclose(matrix[0], [1, 0, 0, 0.5, 0.5])  # symbol 0 first: attribute 0 is 0, attribute 1 either
    np.testing.assert_allclose(matrix[3], [1 / 3, 1 / 3, 1 / 3, 1, 0])
    holistic, _, _ = symbol_attribute_matrix(check_language(table(0, [[0, 0]] * 6), "t"))
    np.testing.assert_allclose(holistic, [[1 / 3, 1 / 3, 1 / 3, 0.5, 0.5]] * 2)


def test_grid_figure_writes_each_objects_message_per_generation_and_a_strip():
    changed = [m if i else [2, 3] for i, m in enumerate(COMPOSITIONAL)]  # object (0, 0) says 23 after forgetting
    fig = language_figure([table(0, COMPOSITIONAL), table(0, changed, "after_forgetting"), table(1, COMPOSITIONAL)])
    grids = [ax for ax in fig.axes if ax.get_xlabel() == "attribute 1"]
    assert [ax.get_title().splitlines()[0] for ax in grids] == ["generation 0", "generation 1",
                                                               "generation 0, after forgetting"]
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in grids[2].texts}
    assert cells[(0, 0)] == "23" and cells[(2, 1)] == "24" and len(cells) == 6
    assert "5 distinct messages / 6 objects" in grids[2].get_title()
    (strip,) = [ax for ax in fig.axes if ax.get_title().startswith("across generations")]
    assert [t.get_text() for t in strip.get_yticklabels()] == [
        "generation 0", "generation 0, after forgetting (1 changed)", "generation 1 (1 changed)"]


def test_larger_spaces_get_heatmaps():
    objects = [[a, b, c] for a in range(2) for b in range(2) for c in range(2)]
    tables = [{"objects": objects, "messages": [[a, b + 2, c + 4] for a, b, c in objects], "vocab_size": 6}]
    fig = language_figure(tables)
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_title() == "generation 0"]
    assert len(heatmaps) == 1 and heatmaps[0].images[0].get_array().shape == (6, 6)
    with pytest.raises(ValueError, match="kind 'grid': needs 2 attributes, the objects have 3"):
        language_figure(tables, kind="grid")
    with pytest.raises(ValueError, match="none given"):
        language_figure([])
