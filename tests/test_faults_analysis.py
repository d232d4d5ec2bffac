"""The analysis commands' fault catalog: a corrupt, mistyped or missing run file, an --out that
cannot be written, a flag that names nothing the runs recorded: each is one stderr line naming the
file (and line) or the flag, exit 2, and nothing created or changed. A failed write of the figure
(disk full) is exit 1 and leaves the old figure as it was; Ctrl-C is exit 130."""

from __future__ import annotations

import errno
import json
import pathlib
from typing import Any, Callable

import matplotlib.figure
import pytest

import analysis.report
from fault_catalog import Fault, run_fault

PLOT, REPORT, COMPARE, SCORES, PROBE = ("analysis.plot", "analysis.report", "analysis.compare",
                                        "analysis.language_scores", "analysis.probe_plot")
CONFIG = {"game": "referential", "strategy": "pbf", "seed": 0, "hidden_size": 16}
OBJECTS = [[a, b] for a in range(3) for b in range(2)]
LANGUAGE = {"objects": OBJECTS, "messages": [[a, b + 3] for a, b in OBJECTS], "eos": False}


def record(index: int, **fields: Any) -> str:
    """The JSON line of generation `index`, any field replaced by `fields`."""
    values = {"generation": index, "iteration": 10 * (index + 1), "strategy": "pbf", "seed": 0,
              "accuracy": 0.5, "topsim": 0.3}
    return json.dumps({**values, **fields})


GOOD = (record(0), record(1), record(2))


def write_run(tmp: pathlib.Path, name: str = "run", config: Any = CONFIG, lines: tuple[str, ...] | bytes = GOOD,
              language: Any = LANGUAGE) -> pathlib.Path:
    """A hand-made run directory (config.json written as JSON unless bytes; no file when None)."""
    run = tmp / name
    run.mkdir(parents=True)
    for file, value in (("config.json", config), ("language.json", language)):
        if value is not None:
            (run / file).write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
    (run / "generations.jsonl").write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    (run / ".emergent-frl.lock").write_text("123\n")
    return run


def run_with(**kwargs: Any) -> Callable[[pathlib.Path], None]:
    """A case's setup that writes one run directory, `tmp`/run."""
    return lambda tmp: write_run(tmp, **kwargs) and None


def seeds_of(*pairs: tuple[str, int]) -> Callable[[pathlib.Path], None]:
    """A setup with one run per (strategy, seed)."""
    def setup(tmp: pathlib.Path) -> None:
        for i, (strategy, seed) in enumerate(pairs):
            write_run(tmp, f"r{i}", {**CONFIG, "strategy": strategy, "seed": seed},
                      tuple(record(g, strategy=strategy, seed=seed) for g in range(2)))
    return setup


def probe(tmp: pathlib.Path, value: Any) -> None:
    """A probe directory whose probe.json holds `value` (bytes as they are)."""
    (tmp / "probe").mkdir()
    (tmp / "probe" / "probe.json").write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())


def with_figure(setup: Callable[[pathlib.Path], None]) -> Callable[[pathlib.Path], None]:
    """`setup` plus an existing fig.png that a failed plot must leave as it was."""
    def both(tmp: pathlib.Path) -> None:
        setup(tmp)
        (tmp / "fig.png").write_bytes(b"an older figure")
    return both


def disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device", str(args[1]) if len(args) > 1 else "fig")


def interrupted(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt


RUN, FIG = "{tmp}/run", "{tmp}/fig.png"
MEASURE = {"n": 10, "accuracy": 0.9, "loss": 0.1, "entropy": 0.5}

CASES = [
    # corrupt or mistyped records: the file and its line are named
    Fault("plot: a line that is not JSON", PLOT, (RUN, "--out", FIG), 2,
          "generations.jsonl: line 3 is not valid JSON", run_with(lines=(record(0), record(1), '{"generation": 2,'))),
    Fault("report: a record that is a list", REPORT, (RUN,), 2,
          "generations.jsonl: line 2 is a list, not a JSON object", run_with(lines=(record(0), "[1, 2]"))),
    Fault("compare: a record that is a number", COMPARE, (RUN,), 2,
          "generations.jsonl: line 2 is a number, not a JSON object", run_with(lines=(record(0), "3"))),
    Fault("language_scores: a record that is a string", SCORES, (RUN,), 2,
          "generations.jsonl: line 1 is a string, not a JSON object", run_with(lines=('"gen 0"',))),
    Fault("plot: a metric that is a string", PLOT, (RUN, "--out", FIG), 2,
          "generations.jsonl: line 2: 'topsim' is \"abc\", not a number",
          run_with(lines=(record(0), record(1, topsim="abc")))),
    Fault("report: a metric that is a list", REPORT, (RUN, "--metric", "accuracy"), 2,
          "generations.jsonl: line 3: 'accuracy' is [0.5], not a number",
          run_with(lines=(record(0), record(1), record(2, accuracy=[0.5])))),
    Fault("plot: a generation that is null", PLOT, (RUN, "--out", FIG), 2,
          "generations.jsonl: line 2: 'generation' is null, not a number",
          run_with(lines=(record(0), record(1, generation=None)))),
    Fault("compare: an iteration that is a boolean", COMPARE, (RUN, "--until", "20"), 2,
          "generations.jsonl: line 2: 'iteration' is true, not a number",
          run_with(lines=(record(0), record(1, iteration=True)))),
    Fault("plot: bytes that are not UTF-8", PLOT, (RUN, "--out", FIG), 2,
          "generations.jsonl: line 2 is not UTF-8 text",
          run_with(lines=(record(0) + '\n{"generation": 1, "note": "').encode() + b"\xe9\xff\"}\n")),
    Fault("report: an empty generations.jsonl", REPORT, (RUN,), 2,
          "no generation recorded yet", run_with(lines=b"")),
    Fault("compare: a record nested too deeply", COMPARE, (RUN,), 2,
          "generations.jsonl: line 1 is not valid JSON", run_with(lines=("[" * 100_000 + "]" * 100_000,))),
    # config.json: missing, empty, of the wrong type or with fields of the wrong type
    Fault("report: config.json missing", REPORT, (RUN,), 2, "config.json is missing", run_with(config=None)),
    Fault("plot: config.json empty", PLOT, (RUN, "--out", FIG), 2, "config.json is empty", run_with(config=b"")),
    Fault("compare: config.json holds a list", COMPARE, (RUN,), 2,
          "config.json holds a list, not a JSON object", run_with(config=[CONFIG])),
    Fault("language_scores: config.json holds a string", SCORES, (RUN,), 2,
          "config.json holds a string, not a JSON object", run_with(config="pbf")),
    Fault("report: config.json is not JSON", REPORT, (RUN,), 2,
          "config.json is not valid JSON", run_with(config=b'{"strategy": "pbf",')),
    Fault("compare: a seed that is a list", COMPARE, (RUN,), 2,
          "config.json: 'seed' is [0, 1], not an integer", run_with(config={**CONFIG, "seed": [0, 1]})),
    Fault("plot: a strategy that is a number", PLOT, (RUN, "--out", FIG), 2,
          "config.json: 'strategy' is 3, not a string", run_with(config={**CONFIG, "strategy": 3})),
    # paths that hold no runs
    Fault("plot: a folder with no runs", PLOT, ("{tmp}", "--out", FIG), 2,
          "no generations.jsonl (or probe.json) found", lambda tmp: (tmp / "empty").mkdir()),
    Fault("report: a path that does not exist", REPORT, ("{tmp}/nowhere",), 2, "nowhere does not exist"),
    Fault("compare: a file that is no run", COMPARE, ("{tmp}/notes.txt",), 2,
          "notes.txt is a file, not a run directory", lambda tmp: (tmp / "notes.txt").write_text("hi")),
    # --out
    Fault("plot: --out in a folder that does not exist", PLOT, (RUN, "--out", "{tmp}/missing/fig.png"), 2,
          "missing does not exist", run_with()),
    Fault("plot: --out under a regular file", PLOT, (RUN, "--out", "{tmp}/run/config.json/fig.png"), 2,
          "config.json is not a folder", run_with()),
    Fault("plot: --out names a folder", PLOT, (RUN, "--out", "{tmp}/run"), 2, "is a folder", run_with()),
    Fault("plot: --out with an extension that is no image type", PLOT, (RUN, "--out", "{tmp}/fig.v2"), 2,
          "'.v2' is no image type; use one of", run_with()),
    Fault("probe_plot: --out in a folder that does not exist", PROBE, ("{tmp}/probe", "--out", "{tmp}/no/p.png"), 2,
          "no does not exist",
          lambda tmp: probe(tmp, {"groups": ["a", "b"], "measurements": [
              {"step": 1, "before": {"a": MEASURE, "b": MEASURE}, "after": {"a": MEASURE, "b": MEASURE}}]})),
    # flags that name nothing the runs recorded
    Fault("plot: --x that no run records", PLOT, (RUN, "--x", "bogus", "--out", FIG), 2,
          "--x 'bogus': no run records a number under it; recorded keys are generation, iteration", run_with()),
    Fault("plot: --metric that no run records", PLOT, (RUN, "--metric", "topsimm", "--out", FIG), 2,
          "--metric 'topsimm': no run records a number under it", run_with()),
    Fault("plot: --metric recorded only as null", PLOT, (RUN, "--metric", "holdout", "--out", FIG), 2,
          "--metric 'holdout'", run_with(lines=(record(0, holdout=None), record(1, holdout=float("nan"))))),
    Fault("report: --metric that no run records", REPORT, (RUN, "--metric", "topsim", "--metric", "acc"), 2,
          "--metric 'acc'", run_with()),
    Fault("compare: --metric that no run records", COMPARE, (RUN, "--metric", "posdis"), 2,
          "--metric 'posdis'", run_with()),
    Fault("compare: --since over an --x no run records", COMPARE, (RUN, "--since", "5", "--x", "epoch"), 2,
          "--x 'epoch'", run_with()),
    Fault("report: --until before every record", REPORT, (RUN, "--until", "-1"), 2,
          "--until -1: no run has a record with iteration <= -1", run_with()),
    Fault("report: --since nan", REPORT, (RUN, "--since", "nan"), 2, "--since nan: must be a finite number",
          run_with()),
    Fault("plot: --confidence out of range", PLOT, (RUN, "--confidence", "1.5", "--out", FIG), 2,
          "--confidence 1.5: allowed range is (0, 1)", run_with()),
    Fault("report: an unknown flag", REPORT, (RUN, "--metrc", "topsim"), 2, "unrecognized arguments: --metrc",
          run_with()),
    Fault("language_scores: an unknown convention", SCORES, (RUN, "--convention", "mine"), 2,
          "argument --convention: invalid choice: 'mine'", run_with()),
    # comparisons
    Fault("compare: no run of the baseline", COMPARE, ("{tmp}", "--baseline", "no_reset"), 2,
          "--baseline: no run of strategy 'no_reset'; found ['pbf']", seeds_of(("pbf", 0))),
    Fault("compare: two runs of one experiment with one seed", COMPARE, ("{tmp}",), 2,
          "two pbf runs with seed 0", seeds_of(("no_reset", 0), ("pbf", 0), ("pbf", 0))),
    # language.json
    Fault("language_scores: no language.json", SCORES, (RUN,), 2, "holds no language.json", run_with(language=None)),
    Fault("language_scores: language.json not JSON", SCORES, (RUN,), 2,
          "language.json is not valid JSON", run_with(language=b'{"objects": [')),
    Fault("language_scores: language.json without messages", SCORES, (RUN,), 2,
          "language.json: 'messages' is missing, not a list", run_with(language={"objects": OBJECTS})),
    Fault("language_scores: ragged objects", SCORES, (RUN,), 2,
          "language.json: setting an array element",
          run_with(language={**LANGUAGE, "objects": [[0, 1], [1]] + OBJECTS[2:]})),
    Fault("language_scores: fewer messages than objects", SCORES, (RUN,), 2,
          "language.json: meanings and messages must have the same number of rows",
          run_with(language={**LANGUAGE, "messages": LANGUAGE["messages"][:-1]})),
    # probes
    Fault("probe_plot: probe.json holds a list", PROBE, ("{tmp}/probe",), 2,
          "probe.json holds a list, not a JSON object", lambda tmp: probe(tmp, [1, 2])),
    Fault("probe_plot: a measurement without its groups", PROBE, ("{tmp}/probe",), 2,
          "measurement 1 has no 'after' object for both groups (a, b)",
          lambda tmp: probe(tmp, {"groups": ["a", "b"],
                                  "measurements": [{"step": 1, "before": {"a": MEASURE, "b": MEASURE}}]})),
    Fault("plot: a probe metric that is a string", PLOT, ("{tmp}/probe", "--out", FIG), 2,
          "before b 'accuracy' is \"high\", not a number",
          lambda tmp: probe(tmp, {"groups": ["a", "b"], "measurements": [
              {"step": 1, "before": {"a": MEASURE, "b": {**MEASURE, "accuracy": "high"}},
               "after": {"a": MEASURE, "b": MEASURE}}]})),
    Fault("probe_plot: probe.json not UTF-8", PROBE, ("{tmp}/probe",), 2,
          "probe.json is not UTF-8 text", lambda tmp: probe(tmp, b"\xff\xfe{}")),
    # faults while working
    Fault("plot: the disk fills while writing the figure", PLOT, (RUN, "--out", FIG), 1, "fig.png: the disk is full",
          with_figure(run_with()), patches=((matplotlib.figure.Figure, "savefig", disk_full),)),
    Fault("report: Ctrl-C while reading runs", REPORT, (RUN,), 130, "", run_with(),
          patches=((analysis.report, "load_runs", interrupted),)),
]


@pytest.mark.parametrize("fault", CASES, ids=str)
def test_analysis_fault(fault: Fault, tmp_path: pathlib.Path, monkeypatch) -> None:
    run_fault(fault, tmp_path / "case", monkeypatch)


def test_a_failed_figure_write_leaves_no_temporary_file(tmp_path: pathlib.Path, monkeypatch) -> None:
    """The figure is written beside its target and renamed; a failure removes the partial file."""
    fault = next(case for case in CASES if case.name.startswith("plot: the disk fills"))
    run_fault(fault, tmp_path / "case", monkeypatch)
    assert sorted(p.name for p in (tmp_path / "case").iterdir()) == ["fig.png", "run"]
    assert (tmp_path / "case" / "fig.png").read_bytes() == b"an older figure"
