"""Loading, aggregation, reports and plots over run directories (no torch involved)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from analysis.curves import aggregate_curves, final_values
from analysis.report import markdown_table
from analysis.runs import find_runs, load_evaluations, load_run, load_table, run_labels, truncate_runs
from analysis.stats import mean_ci


def write_run(path, strategy, seed, topsims, accuracies=None, **config):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"strategy": strategy, "seed": seed, **config}))
    lines = []
    for g, t in enumerate(topsims):
        record = {"generation": g, "strategy": strategy, "seed": seed, "topsim": t}
        if accuracies is not None:
            record["accuracy"] = accuracies[g]
        lines.append(json.dumps(record))
    (path / "generations.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def sweep(tmp_path):
    write_run(tmp_path / "a" / "s0", "no_reset", 0, [0.5, 0.6, 0.7], [0.9, 0.95, 1.0])
    write_run(tmp_path / "a" / "s1", "no_reset", 1, [0.3, 0.4, 0.5], [0.8, 0.9, 0.9])
    write_run(tmp_path / "b" / "s0", "pbf", 0, [0.2, 0.8], [0.5, 0.6])
    return tmp_path


def test_mean_ci_matches_student_t():
    values = [0.1, 0.4, 0.35, 0.8]
    mean, half, n = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert n == 4 and mean == pytest.approx(np.mean(values))
    assert half == pytest.approx((high - low) / 2)


def test_mean_ci_skips_missing_and_single_value_has_no_width():
    mean, half, n = mean_ci([0.5, None, float("nan")])
    assert (mean, n) == (0.5, 1) and math.isnan(half)
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=1.5)


def test_find_runs_descends_into_sweeps(sweep):
    runs = find_runs([sweep])
    assert [p.relative_to(sweep).as_posix() for p in runs] == ["a/s0", "a/s1", "b/s0"]
    assert find_runs([sweep / "a" / "s0", sweep]) == runs
    with pytest.raises(ValueError, match="does not exist"):
        find_runs([sweep / "missing"])


def test_aggregate_curves_by_strategy(sweep):
    runs = [load_run(p) for p in find_runs([sweep])]
    curves = {c.label: c for c in aggregate_curves(runs, "topsim")}
    assert curves["no_reset"].x == [0.0, 1.0, 2.0]
    assert curves["no_reset"].mean == pytest.approx([0.4, 0.5, 0.6])
    assert curves["no_reset"].n == [2, 2, 2]
    assert curves["pbf"].mean == pytest.approx([0.2, 0.8])
    with pytest.raises(ValueError, match="recorded keys"):
        aggregate_curves(runs, "nonexistent")


def test_final_values_and_report(sweep):
    runs = [load_run(p) for p in find_runs([sweep])]
    assert final_values(runs, "topsim") == {"no_reset": [0.7, 0.5], "pbf": [0.8]}
    table = markdown_table(runs, ["accuracy", "topsim"])
    lines = table.splitlines()
    assert lines[0] == "| strategy | seeds | final accuracy | final topsim |"
    half = stats.t.ppf(0.975, 1) * np.std([0.7, 0.5], ddof=1) / np.sqrt(2)
    assert lines[2] == f"| no_reset | 2 | 0.950 ± {stats.t.ppf(0.975, 1) * np.std([1.0, 0.9], ddof=1) / np.sqrt(2):.3f} | 0.600 ± {half:.3f} |"
    assert lines[3] == "| pbf | 1 | 0.600 | 0.800 |"


def test_report_window_means_from_a_generation_on(sweep):
    runs = [load_run(p) for p in find_runs([sweep])]
    lines = markdown_table(runs, ["topsim"], since=1, x="generation").splitlines()
    assert lines[0] == "| strategy | seeds | final topsim | mean topsim from generation 1 |"
    half = stats.t.ppf(0.975, 1) * np.std([0.65, 0.45], ddof=1) / np.sqrt(2)
    assert lines[2].endswith(f"| 0.550 ± {half:.3f} |")  # seeds' means of generations 1-2: 0.65, 0.45
    assert lines[3] == "| pbf | 1 | 0.800 | 0.800 |"


def test_until_reports_the_runs_as_they_stood_then(sweep, capsys):
    runs = [load_run(p) for p in find_runs([sweep])]
    early = truncate_runs(runs, 1, x="generation")
    assert final_values(early, "topsim") == {"no_reset": [0.6, 0.4], "pbf": [0.8]}
    assert [len(r["records"]) for r in runs] == [3, 3, 2]  # the loaded runs are left as they were
    assert truncate_runs(runs, None) is runs
    from analysis import compare, report

    assert report.main([str(sweep), "--metric", "topsim", "--until", "0", "--x", "generation"]) == 0
    assert "| no_reset | 2 | 0.400 ± " in capsys.readouterr().out
    assert compare.main([str(sweep), "--until", "0", "--x", "generation"]) == 0
    assert "| pbf | 1 | -0.300 |" in capsys.readouterr().out  # pbf 0.2 - no_reset 0.5, seed 0, generation 0


def test_load_table_rows(sweep):
    rows = load_table([sweep], as_frame=False)
    assert len(rows) == 8
    assert {r["label"] for r in rows} == {"no_reset", "pbf"}
    assert all("topsim" in r and "run" in r for r in rows)


def test_plot_cli_writes_png_and_errors_cleanly(sweep, tmp_path):
    out = tmp_path / "fig.png"
    done = subprocess.run([sys.executable, "-m", "analysis.plot", str(sweep), "--metric", "topsim",
                           "--metric", "accuracy", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "analysis.plot", str(sweep), "--metric", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "nope" in bad.stderr


def test_analysis_never_imports_torch(sweep):
    code = ("import sys, analysis.runs, analysis.curves, analysis.report, analysis.plot, analysis.stats,"
            " analysis.compare, analysis.language_scores, analysis.figures, analysis.probe_plot, analysis._parser,"
            " analysis.dynamics, analysis.language_figure, analysis.html_report, analysis.teaching_plot,"
            " analysis.language_metrics;"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_paired_comparison_subtracts_the_baseline_seed_by_seed(tmp_path):
    from analysis.compare import paired_table

    write_run(tmp_path / "n0", "no_reset", 0, [0.5, 0.4])
    write_run(tmp_path / "n1", "no_reset", 1, [0.6, 0.7])
    write_run(tmp_path / "p0", "pbf", 0, [0.5, 0.6])
    write_run(tmp_path / "p1", "pbf", 1, [0.6, 0.8])
    write_run(tmp_path / "p2", "pbf", 2, [0.9, 0.9])  # no baseline for seed 2: left out of the pairs
    runs = [load_run(p) for p in find_runs([tmp_path])]
    lines = paired_table(runs, "no_reset", "topsim").splitlines()
    half = stats.t.ppf(0.975, 1) * np.std([0.2, 0.1], ddof=1) / np.sqrt(2)
    assert lines[2] == f"| pbf | 2 | +0.150 ± {half:.3f} | +0.20 +0.10 |"
    with pytest.raises(ValueError, match="--baseline: no run of strategy 'reset_receiver'"):
        paired_table(runs, "reset_receiver", "topsim")


def test_final_language_topsim_under_a_named_convention(tmp_path):
    from analysis.compositionality import topographic_similarity
    from analysis.language_scores import language_table

    objects = [[a, b] for a in range(3) for b in range(2)]
    compositional = [[a, b + 3] for a, b in objects]
    for name, messages in (("c", compositional), ("p", compositional[::-1])):
        write_run(tmp_path / name, "pbf" if name == "c" else "no_reset", 0, [0.1])
        (tmp_path / name / "language.json").write_text(json.dumps({"objects": objects, "messages": messages,
                                                                   "eos": False}))
    lines = language_table(find_runs([tmp_path]), "li_bowling").splitlines()
    expected = topographic_similarity(np.array(objects), np.array(compositional), convention="li_bowling")
    assert lines[3] == f"| pbf | 1 | {expected:.3f} | {expected:.2f} |" and expected > 0.5
    assert lines[2].startswith("| no_reset | 1 |")


# -- grouping: runs pool only as seeds of one experiment ---------------------------------------------
def games_sweep(tmp_path):
    """pbf on the referential game (seeds 0, 1) and on the reconstruction game (seed 0), with the
    package defaults a new run records."""
    default = {"receiver_training": "cross_entropy", "receiver_head": False}
    write_run(tmp_path / "ref0", "pbf", 0, [0.5, 0.7], [0.8, 0.9], game="referential", device="cpu", **default)
    write_run(tmp_path / "ref1", "pbf", 1, [0.3, 0.5], [0.6, 0.7], game="referential", device="cuda", **default)
    write_run(tmp_path / "rec0", "pbf", 0, [0.1, 0.2], [0.2, 0.3], game="reconstruction", device="cpu", **default)
    return tmp_path


def test_runs_of_different_games_never_pool(tmp_path, capsys):
    from analysis import language_scores, plot, report

    sweep = games_sweep(tmp_path)
    runs = [load_run(p) for p in find_runs([sweep])]
    assert run_labels(runs) == ["pbf (game=reconstruction)", "pbf (game=referential)", "pbf (game=referential)"]
    curves = {c.label: c for c in aggregate_curves(runs, "topsim")}
    referential, reconstruction = curves["pbf (game=referential)"], curves["pbf (game=reconstruction)"]
    assert referential.n == [2, 2] and referential.mean == pytest.approx([0.4, 0.6])
    assert reconstruction.n == [1, 1] and reconstruction.mean == pytest.approx([0.1, 0.2])
    assert final_values(runs, "topsim") == {"pbf (game=reconstruction)": [0.2], "pbf (game=referential)": [0.7, 0.5]}
    assert report.main([str(sweep), "--metric", "topsim"]) == 0
    table = capsys.readouterr().out
    assert "| pbf (game=reconstruction) | 1 | 0.200 |" in table and "| pbf (game=referential) | 2 | 0.600 ± " in table
    assert {row["label"] for row in load_table([sweep], as_frame=False)} == {"pbf (game=reconstruction)",
                                                                            "pbf (game=referential)"}
    objects = [[a, b] for a in range(3) for b in range(2)]
    language = {"objects": objects, "messages": [[a, b + 3] for a, b in objects]}
    for run in ("ref0", "ref1", "rec0"):
        (sweep / run / "language.json").write_text(json.dumps(language))
    rows = language_scores.language_table(find_runs([sweep]), "egg").splitlines()[2:]
    assert [row.split(" | ")[:2] for row in rows] == [["| pbf (game=reconstruction)", "1"],
                                                      ["| pbf (game=referential)", "2"]]
    assert plot.main([str(sweep), "--out", str(tmp_path / "fig.png")]) == 0


def test_a_run_older_than_a_knob_pools_with_new_runs_trained_the_same_way(tmp_path):
    """A paper-preset run made before `receiver_training` and `receiver_head` existed sampled its
    listener's choice and had the head: it pools with a new run that records both, and apart from
    one that records `cross_entropy`."""
    paper = {"game": "referential", "channel": "reinforce", "cell": "lstm"}
    write_run(tmp_path / "old", "pbf", 0, [0.1], **paper)
    write_run(tmp_path / "new", "pbf", 1, [0.2], **paper, receiver_training="reinforce", receiver_head=True)
    write_run(tmp_path / "default", "pbf", 0, [0.3], **paper, receiver_training="cross_entropy", receiver_head=True)
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert final_values(runs, "topsim") == {"pbf (receiver_training=cross_entropy)": [0.3],
                                            "pbf (receiver_training=reinforce)": [0.2, 0.1]}


def test_labels_name_each_differing_experiment_field_and_ignore_per_run_ones(tmp_path):
    launch = {"hidden_size": 16, "generations": 2, "iterations_per_generation": 10, "iterations": 20}
    write_run(tmp_path / "a", "pbf", 0, [0.1], **launch, device="cpu", argv=["--seed", "0"], engine="batched",
              compile="auto", sweep_run="pbf/seed0", preset=None)
    write_run(tmp_path / "b", "pbf", 1, [0.2], **launch, device="cuda", argv=["--seed", "1"], engine="reference",
              compile=False, sweep_run="pbf/seed1", preset="paper")
    write_run(tmp_path / "c", "pbf", 0, [0.3], **{**launch, "hidden_size": 64})
    write_run(tmp_path / "d", "pbf", 0, [0.4], **{**launch, "generations": 4, "iterations": 40})
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert run_labels(runs) == ["pbf (generations=2, hidden_size=16)", "pbf (generations=2, hidden_size=16)",
                                "pbf (generations=2, hidden_size=64)", "pbf (generations=4, hidden_size=16)"]
    assert final_values(runs, "topsim") == {"pbf (generations=2, hidden_size=16)": [0.1, 0.2],
                                            "pbf (generations=2, hidden_size=64)": [0.3],
                                            "pbf (generations=4, hidden_size=16)": [0.4]}


def test_labels_show_lists_unset_fields_and_table_pipes_plainly(tmp_path):
    write_run(tmp_path / "a", "no_reset", 0, [0.1], n_values=[3, 3], note="a|b", temperature=1)
    write_run(tmp_path / "b", "no_reset", 1, [0.2], note="plain", temperature=1.0)  # 1 and 1.0: one setting
    labels = run_labels([load_run(tmp_path / "a"), load_run(tmp_path / "b")])
    assert labels == ['no_reset (n_values=[3, 3], note="a\\|b")', "no_reset (n_values=(unset), note=plain)"]


def test_compare_pairs_each_game_with_its_own_baseline(tmp_path):
    from analysis.compare import paired_table

    finals = {("no_reset", "referential"): (0.5, 0.6), ("no_reset", "reconstruction"): (0.1, 0.2),
              ("pbf", "referential"): (0.7, 0.9), ("pbf", "reconstruction"): (0.2, 0.2)}
    for (strategy, game), values in finals.items():
        for seed, value in enumerate(values):
            write_run(tmp_path / f"{strategy}-{game}-{seed}", strategy, seed, [0.0, value], game=game,
                      receiver_training="cross_entropy", receiver_head=False)
    runs = [load_run(p) for p in find_runs([tmp_path])]
    lines = paired_table(runs, "no_reset", "topsim").splitlines()
    half = stats.t.ppf(0.975, 1) * np.std([0.1, 0.0], ddof=1) / np.sqrt(2)
    assert lines[2] == f"| pbf (game=reconstruction) | 2 | +0.050 ± {half:.3f} | +0.10 +0.00 |"
    assert lines[3].startswith("| pbf (game=referential) | 2 | +0.250 ± ")
    referential_baseline = [r for r in runs if not (r["config"]["strategy"] == "no_reset"
                                                    and r["config"]["game"] == "reconstruction")]
    lines = paired_table(referential_baseline, "no_reset", "topsim").splitlines()
    assert lines[2] == "| pbf (game=reconstruction) | 0 | - |  |"  # never subtracted from a referential run
    assert lines[3].startswith("| pbf (game=referential) | 2 | +0.250 ± ")


def test_per_strategy_settings_follow_the_strategy_name(tmp_path):
    """A sweep's per-strategy variant (reset_receiver forgets every 6,000 iterations, the rest every
    3,000) is part of what the strategy stands for: labels stay plain and the comparison pairs them;
    once one strategy's runs differ in that setting, it is named in every label."""
    from analysis.compare import paired_table

    write_run(tmp_path / "n0", "no_reset", 0, [0.5], iterations_per_generation=3000, game="referential")
    write_run(tmp_path / "r0", "reset_receiver", 0, [0.8], iterations_per_generation=6000, game="referential")
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert run_labels(runs) == ["no_reset", "reset_receiver"]
    assert paired_table(runs, "no_reset", "topsim").splitlines()[2] == "| reset_receiver | 1 | +0.300 | +0.30 |"
    write_run(tmp_path / "r1", "reset_receiver", 0, [0.9], iterations_per_generation=3000, game="referential")
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert run_labels(runs) == ["no_reset (iterations_per_generation=3000)",
                                "reset_receiver (iterations_per_generation=6000)",
                                "reset_receiver (iterations_per_generation=3000)"]
    lines = paired_table(runs, "no_reset", "topsim").splitlines()
    assert lines[2] == "| reset_receiver (iterations_per_generation=3000) | 1 | +0.400 | +0.40 |"
    assert lines[3] == ("| reset_receiver (iterations_per_generation=6000) vs no_reset (iterations_per_generation=3000)"
                        " | 1 | +0.300 | +0.30 |")


# -- files and values --------------------------------------------------------------------------------
def test_plot_out_without_extension_names_the_file_written(sweep, tmp_path, capsys):
    from analysis import plot

    assert plot.main([str(sweep), "--out", str(tmp_path / "figure")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'figure.png'} (3 runs)"
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "figure").exists()
    assert plot.main([str(sweep), "--out", str(tmp_path / "figure.PDF")]) == 0
    assert (tmp_path / "figure.PDF").read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("figure", ".figure"))) == [
        "figure.PDF", "figure.png"]  # no temporary file left beside them


def test_null_and_nan_values_are_skipped_not_averaged(tmp_path):
    write_run(tmp_path / "a", "pbf", 0, [0.5, float("nan"), None])
    write_run(tmp_path / "b", "pbf", 1, [0.3, 0.4, 0.6])
    runs = [load_run(p) for p in find_runs([tmp_path])]
    assert final_values(runs, "topsim") == {"pbf": [0.5, 0.6]}
    (curve,) = aggregate_curves(runs, "topsim")
    assert curve.n == [2, 1, 1] and curve.mean == pytest.approx([0.4, 0.4, 0.6])
    assert markdown_table(runs, ["topsim"]).splitlines()[2].startswith("| pbf | 2 | 0.550 ± ")


def test_a_run_that_has_recorded_nothing_yet_leaves_the_others_alone(sweep, capsys):
    from analysis import report

    write_run(sweep / "c" / "s0", "pbf", 1, [])  # a sweep's run just started: an empty generations.jsonl
    assert report.main([str(sweep), "--metric", "topsim"]) == 0
    assert "| pbf | 1 | 0.800 |" in capsys.readouterr().out


def test_record_errors_name_the_file_line_even_after_truncation(tmp_path):
    run = tmp_path / "run"
    write_run(run, "pbf", 0, [0.1])
    with (run / "generations.jsonl").open("a") as handle:
        handle.write("\n" + json.dumps({"generation": 1, "topsim": "high"}) + "\n")
    loaded = load_run(run)
    assert loaded["lines"] == [1, 3]
    for runs in ([loaded], truncate_runs([loaded], 5, x="generation")):
        with pytest.raises(ValueError, match=r"run/generations.jsonl: line 3: 'topsim' is \"high\", not a number"):
            final_values(runs, "topsim")


def test_load_evaluations_checks_every_line(tmp_path):
    run = tmp_path / "run"
    write_run(run, "pbf", 0, [0.1])
    assert load_evaluations(run) == []
    (run / "evaluations.jsonl").write_text('{"iteration": 10, "accuracy": 0.5}\n{"iteration": 20,\n')
    with pytest.raises(ValueError, match="evaluations.jsonl: line 2 is not valid JSON"):
        load_evaluations(run)
    (run / "evaluations.jsonl").write_text('{"iteration": 10, "accuracy": 0.5}\n')
    assert load_evaluations(run) == [{"iteration": 10, "accuracy": 0.5}]


def test_find_runs_accepts_a_run_file(sweep):
    assert find_runs([sweep / "a" / "s0" / "generations.jsonl", sweep / "b" / "s0" / "config.json"]) == [
        sweep / "a" / "s0", sweep / "b" / "s0"]


def test_plot_curves_draws_a_run_whose_topsim_was_never_defined(tmp_path):
    """The game scripts' --plot calls plot_curves after training: a constant language (topsim null in
    every record) must still give the accuracy panel, not an error after the run."""
    from analysis.plot import plot_curves

    write_run(tmp_path / "run", "pbf", 0, [None, None], [0.5, 0.6])
    written = plot_curves([load_run(tmp_path / "run")], ["topsim", "accuracy"], str(tmp_path / "run" / "topsim.png"))
    assert written == tmp_path / "run" / "topsim.png" and written.stat().st_size > 1000


def test_the_fresh_listeners_curves_are_drawn_per_generation_with_their_numbers(tmp_path, capsys):
    from analysis import plot

    for strategy, shift in (("no_reset", 0.0), ("reset_receiver", 0.1)):
        for seed in (0, 1):
            path = tmp_path / strategy / f"seed{seed}"
            path.mkdir(parents=True)
            (path / "config.json").write_text(json.dumps({"strategy": strategy, "seed": seed}))
            records = [{"generation": g, "strategy": strategy, "seed": seed, "topsim": 0.5,
                        "ease_of_teaching_steps": [0, 1, 10, 100],
                        "ease_of_teaching_curve": [0.2, 0.3 + shift, 0.6 + shift, 0.8 + seed / 10]}
                       for g in range(2)]
            (path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "eot.png"
    assert plot.main([str(tmp_path), "--metric", "ease_of_teaching_curve", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.stat().st_size > 10_000
    assert "| reset_receiver | 1 | 2 | 0.20 | 0.40 | 0.70 | 0.85 |" in printed
    (tmp_path / "no_reset" / "seed0" / "generations.jsonl").write_text(
        json.dumps({"generation": 0, "strategy": "no_reset", "seed": 0, "topsim": 0.5,
                    "ease_of_teaching_curve": [0.2]}) + "\n")
    assert plot.main([str(tmp_path), "--metric", "ease_of_teaching_curve", "--out", str(out)]) == 2
    assert "without ease_of_teaching_steps" in capsys.readouterr().err
