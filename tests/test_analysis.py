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
from analysis.runs import find_runs, load_run, load_table, truncate_runs
from analysis.stats import mean_ci


def write_run(path, strategy, seed, topsims, accuracies=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"strategy": strategy, "seed": seed}))
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
            " analysis.compare, analysis.language_scores;"
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
