"""Runs that survive crashes and bad input: SIGKILL + resume, atomic writes, divergence, fuzzed input."""

import contextlib
import io
import json
import math
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emergent_frl.relearn as relearn
import emergent_frl.trainers as trainers
import games.cli
from emergent_frl.relearn import NonFiniteError, run_language, split_config
from emergent_frl.runs import LOCK_FILE, RunDirectory, atomic_write_text
from emergent_frl.sweeps import SweepError, SweepSummary
from games import reconstruction, referential, sweep
from games.cli import build_parser
from tiny_configs import TINY

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_ARGS = ["--n-values", "2", "3", "--vocab-size", "6", "--n-candidates", "3", "--hidden-size", "16",
             "--batch-size", "8", "--strategy", "pbf", "--generations", "8", "--iterations-per-generation",
             "40", "--eval-every", "20", "--threads", "1", "--no-plot", "--no-progress"]


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def read_jsonl(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def count_lines(path):
    try:
        return len(path.read_bytes().splitlines())
    except FileNotFoundError:
        return 0


# -- SIGKILL at a random point, then --resume ------------------------------------------------------
@pytest.mark.parametrize("engine", ["batched", "reference", "own agents"])
def test_sigkill_at_a_random_point_then_resume_equals_an_uninterrupted_run(tmp_path, engine):
    rng = random.Random()
    # Killed at a random point inside generation target + 1 (of 8): after `target` records, a random
    # fraction of the shortest generation seen so far. Not a fixed delay and not the last generation's
    # duration: the first generations include compiling (over 1 s on the batched engine, then ~0.1 s
    # each), so either could outlast the remaining generations and land after the run ended.
    target, fraction = rng.randint(3, 5), rng.uniform(0.0, 0.8)  # two whole generations stay after
    run = tmp_path / "run"
    # tests/ on the path too: the own-agents case names tests/myagents.py as --agents myagents:build
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    # 200 iterations make every generation ~0.1 s on either engine, a window a loaded machine can hit
    how = ["--agents", "myagents:build"] if engine == "own agents" else ["--engine", engine]
    tiny_args = [*TINY_ARGS, "--iterations-per-generation", "200", "--eval-every", "100", *how]
    command = [sys.executable, "-m", "games.referential", *tiny_args]
    proc = subprocess.Popen([*command, "--out", str(run)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # the resuming process imports torch meanwhile, then waits for its go on stdin
    waiting = ("import sys, games.referential as script; sys.stdin.readline(); "
               "sys.exit(script.main(sys.argv[1:]))")
    resumed = subprocess.Popen([sys.executable, "-c", waiting, *tiny_args, "--resume", str(run)], cwd=ROOT,
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 90
        seen, written_at = 0, []  # when each new record count was first seen
        while seen < target or len(written_at) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the run wrote no generation in time"
            now = count_lines(run / "generations.jsonl")
            if now > seen:
                seen, written_at = now, [*written_at, time.monotonic()]
            time.sleep(0.002)
        shortest = min(later - earlier for earlier, later in zip(written_at, written_at[1:]))
        delay = fraction * shortest
        where = f"killed after {target} generation(s) + {delay:.3f} s"
        time.sleep(delay)
        assert proc.poll() is None, f"the run finished before the kill ({where}); nothing was tested"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except BaseException:
        resumed.kill()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    written = count_lines(run / "generations.jsonl")
    assert 0 < written < 8, where
    for line in (run / "generations.jsonl").read_text().splitlines():  # whole lines only
        json.loads(line)

    resumed.stdin.write("go\n")
    resumed.stdin.flush()
    # meanwhile, the same run uninterrupted, in a fresh process as the others are (same config, CPU,
    # one thread): a user's runs are processes, and a test process that ran hundreds of tests
    # before is not a fresh one (see docs/RESULTS.md, "Determinism")
    subprocess.run([*command, "--out", str(tmp_path / "reference")], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    reference = read_jsonl(tmp_path / "reference" / "generations.jsonl")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert without_seconds(read_jsonl(run / "generations.jsonl")) == without_seconds(reference), where
    assert read_jsonl(run / "evaluations.jsonl") == read_jsonl(tmp_path / "reference" / "evaluations.jsonl")
    assert (json.loads((run / "language.json").read_text())
            == json.loads((tmp_path / "reference" / "language.json").read_text()))


# -- atomic writes -----------------------------------------------------------------------------------
class Crash(Exception):
    pass


def half_then_crash(handle, payload: bytes):
    handle.write(payload[: len(payload) // 2])
    handle.flush()
    raise Crash("simulated crash mid-write")


def test_a_crash_while_appending_a_record_leaves_the_old_file(tmp_path, monkeypatch):
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.append_record({"generation": 0, "topsim": 0.5})
    before = (tmp_path / "run" / "generations.jsonl").read_bytes()

    def crashing_replace(src, dst):
        raise Crash("killed before the rename")

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(Crash):
        run_dir.append_record({"generation": 1, "topsim": 0.6})
    monkeypatch.undo()
    assert (tmp_path / "run" / "generations.jsonl").read_bytes() == before
    assert run_dir.records() == [{"generation": 0, "topsim": 0.5}]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_FILE, "generations.jsonl"]  # no temp file


def test_a_crash_inside_the_checkpoint_writer_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.save_checkpoint({"generation": 1, "weights": torch.arange(1000.0)})
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def crashing_save(obj, handle):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        half_then_crash(handle, buffer.getvalue())

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(Crash):
        run_dir.save_checkpoint({"generation": 2, "weights": torch.zeros(1000)})
    monkeypatch.undo()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert run_dir.load_checkpoint()["generation"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [LOCK_FILE, "checkpoint.pt"]


def test_a_crash_inside_a_text_writer_leaves_the_old_text(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_text(target, '{"seed": 0}\n')

    def crashing_fsync(fd):
        raise Crash("power cut")

    monkeypatch.setattr(os, "fsync", crashing_fsync)
    with pytest.raises(Crash):
        atomic_write_text(target, '{"seed": 1}\n')
    monkeypatch.undo()
    assert target.read_text() == '{"seed": 0}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_records_get_the_mode_the_umask_gives_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        RunDirectory(tmp_path / "run").append_record({"generation": 0})
    finally:
        os.umask(old)
    assert (tmp_path / "run" / "generations.jsonl").stat().st_mode & 0o777 == 0o644


def test_resume_removes_temporaries_left_by_a_killed_write(tmp_path):
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.append_record({"generation": 0})
    stale = tmp_path / "run" / ".checkpoint.pt.0123456789ab.tmp"
    stale.write_bytes(b"half a checkpoint")
    RunDirectory(tmp_path / "run", resume=True)
    assert not stale.exists() and (tmp_path / "run" / "generations.jsonl").exists()


def test_a_new_run_removes_a_temporary_left_by_a_run_killed_before_its_first_record(tmp_path):
    # A sweep terminated while a run wrote its first config.json: the folder holds the lock file and
    # the half-written temporary, no records, so the relaunch starts that run afresh (not --resume).
    RunDirectory(tmp_path / "run").close()
    stale = tmp_path / "run" / ".config.json.0123456789ab.tmp"
    stale.write_text('{"see')
    with RunDirectory(tmp_path / "run") as run_dir:
        run_dir.write_config({"seed": 0})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".emergent-frl.lock", "config.json"]


def test_the_per_generation_summary_line_is_valid_json_when_a_metric_is_nan():
    from games.cli import _summary

    line = _summary({"generation": 0, "iteration": 5, "accuracy": 0.2, "topsim": float("nan")})
    assert json.loads(line)["topsim"] is None


# -- checkpoints: the safe loader, explicitly ---------------------------------------------------------
@pytest.mark.parametrize("strategy", ["pbf", "iterated_learning"])
def test_checkpoints_load_with_weights_only_passed_explicitly(tmp_path, monkeypatch, strategy):
    values = {**TINY, "strategy": strategy, "generations": 2, "iterations_per_generation": 4,
              "imitation_iterations": 3, "listener_only_iterations": 2}
    run_language(values, str(tmp_path / "run"), progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["n_records"] == 2

    def plain(obj):  # what every torch version's safe loader reads (2.11 .. 2.14 and before)
        if isinstance(obj, dict):
            return all(isinstance(k, (str, int)) and plain(v) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return all(plain(v) for v in obj)
        return obj is None or type(obj) in (bool, int, float, str, torch.Tensor)

    assert plain(state)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert RunDirectory(tmp_path / "run", resume=True).load_checkpoint()["n_records"] == 2
    assert calls and all(call.get("weights_only") is True for call in calls)


# -- divergence -------------------------------------------------------------------------------------
def test_non_finite_loss_stops_the_run_naming_generation_and_iteration(tmp_path, monkeypatch):
    real_train = trainers.train_iterations
    calls = []

    def diverging(*args, **kwargs):
        out = real_train(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second generation's training
            out = {**out, "train_loss": math.nan}
        return out

    monkeypatch.setattr(trainers, "train_iterations", diverging)
    with pytest.raises(NonFiniteError, match=r"generation 1 by iteration 20\b") as info:
        run_language({**TINY, "generations": 4, "iterations_per_generation": 10}, str(tmp_path / "run"),
                     progress=False)
    assert "train_loss=nan" in str(info.value)
    run_dir = RunDirectory(tmp_path / "run", resume=True)
    assert [r["generation"] for r in run_dir.records()] == [0]
    assert run_dir.load_checkpoint()["n_records"] == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["generations"] == 4


def test_a_diverging_cli_run_exits_1_with_one_line_naming_generation_and_iteration(tmp_path, capsys):
    args = [a for a in TINY_ARGS if a != "--no-plot"]
    code = referential.main([*args, "--lr", "1e30", "--out", str(tmp_path / "run")])
    assert code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    # found at the first evaluation (--eval-every 20), not at the generation's end (iteration 40)
    assert "stopped: non-finite values in generation 0 by iteration 20" in lines[0]
    assert (tmp_path / "run" / "config.json").exists()
    assert not (tmp_path / "run" / "topsim.png").exists()


# -- fuzzed input: clean errors only ----------------------------------------------------------------
JUNK = st.one_of(
    st.text(max_size=12),
    st.integers(-10, 60).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1e-400", "0", "-0", "none", "None", "true", "0x10",
                     "1_000", "", " ", "--", "-", "cpu", "cuda", "cuda:0", "cpu:-1", "gpu", "random",
                     "systematic", "pbf", "lstm", "gumbel", "/nonexistent", ".", "paper", "ren"]),
)


def _flags(script: str) -> list[str]:
    parser = sweep.build_parser() if script == "sweep" else build_parser(script)
    return [o for action in parser._actions for o in action.option_strings if o not in ("-h", "--help")]


# Object spaces are kept small here: LanguageGameConfig.validate does not bound the number of
# objects yet (see test_huge_object_space_is_a_clean_error), and a huge space exhausts memory.
SIZE_FLAGS = {"--n-attributes", "--n-values"}


@st.composite
def argv_lists(draw):
    script = draw(st.sampled_from(["referential", "reconstruction", "sweep"]))
    flags = _flags(script)
    argv = [draw(st.sampled_from(["paper_language", "nope.yaml"]))] if script == "sweep" else []
    for _ in range(draw(st.integers(0, 8))):
        flag = draw(st.sampled_from(flags))
        argv.append(flag)
        small = st.integers(-2, 6).map(str) if flag in SIZE_FLAGS else JUNK
        argv += draw(st.lists(small, max_size=3))
    if draw(st.booleans()):
        argv.insert(draw(st.integers(0, len(argv))), draw(JUNK))
    return script, argv


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=argv_lists())
@pytest.mark.slow
def test_fuzzed_command_lines_give_clean_errors_or_validated_values(case):
    script, argv = case
    module = {"referential": referential, "reconstruction": reconstruction, "sweep": sweep}[script]
    seen = []
    err, out = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(games.cli, "run_from_args", lambda args, values, argv=None: seen.append(values))
        patch.setattr(sweep, "run_sweep", lambda runs, out, **kw: seen.append(runs[0].config)
                      or SweepSummary(pathlib.Path(out)))
        patch.setattr(sweep, "check_sweep", lambda runs, out: (runs, {r.name: "new" for r in runs}))
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = module.main(argv)
            except SystemExit as exit_:
                code = exit_.code
    if code == 0:
        if seen:  # validated: the values make a config that validates again
            game, relearn_config = split_config(seen[0])
            game.validate()
            relearn_config.validate()
        else:  # -h / --help hidden in the junk, or a sweep's --dry-run
            assert "usage:" in out.getvalue() or "20 runs, 0 finished" in out.getvalue()
    else:
        assert code == 2, (argv, code, err.getvalue())
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"python -m games.{script}: error:"), (argv, lines)
        assert "Traceback" not in err.getvalue()


FIELDS = sorted(f for f in games.cli._known_fields())
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 40), st.integers(-(2**65), 2**65).filter(lambda v: abs(v) > 10**7),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["cpu", "cuda", "pbf", "lstm", "gru", "reinforce", "gumbel", "random", "none", "magnitude"]),
    st.lists(st.integers(-2, 6), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# n_values / n_attributes: small valid sizes, ill-typed ones, and sizes far beyond the bound
SIZE_VALUES = st.one_of(st.integers(-2, 6), st.lists(st.integers(-2, 6), max_size=3), st.text(max_size=3),
                        st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(10**6, 2**65),
                        st.lists(st.integers(10**3, 10**9), min_size=2, max_size=3))


@st.composite
def config_dicts(draw):
    values = {}
    for key in draw(st.lists(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), max_size=8)):
        size = key in ("n_values", "n_attributes")
        values[key] = draw(SIZE_VALUES if size else VALUES)
    return values


def _names_a_field(message: str) -> bool:
    return "unknown config keys" in message or any(f in message for f in FIELDS)


@settings(max_examples=1000, deadline=None)
@given(values=config_dicts())
@pytest.mark.slow
def test_fuzzed_config_dicts_validate_or_raise_value_error_naming_a_field(values):
    try:
        game, relearn_config = split_config(values)
        game.validate()
        relearn_config.validate()
    except ValueError as error:
        assert _names_a_field(str(error)), str(error)


GRID_KEYS = st.one_of(st.sampled_from([*FIELDS, "preset", "iterations"]), st.text(max_size=5))


@st.composite
def grid_specs(draw):
    settings_ = st.dictionaries(GRID_KEYS, VALUES, max_size=4).map(
        lambda d: {k: v for k, v in d.items() if k not in ("n_values", "n_attributes")})
    spec = {}
    if draw(st.booleans()):
        spec["base"] = draw(st.one_of(settings_, st.fixed_dictionaries(
            {"preset": st.sampled_from(["paper", "ren", "nope", 3])}), VALUES))
    if draw(st.booleans()):
        spec["grid"] = draw(st.one_of(
            st.dictionaries(GRID_KEYS.filter(lambda k: k not in ("n_values", "n_attributes")),
                            st.one_of(st.lists(VALUES, max_size=3), VALUES), max_size=3),
            VALUES))
    if draw(st.booleans()):
        spec["variants"] = draw(st.one_of(
            st.dictionaries(st.sampled_from(["pbf", "no_reset", "reset_receiver", "junk"]), settings_, max_size=2),
            VALUES))
    if draw(st.booleans()):
        spec[draw(st.sampled_from(["description", "runs", "grid "]))] = draw(VALUES)
    return draw(st.one_of(st.just(spec), VALUES))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=grid_specs())
@pytest.mark.slow
def test_fuzzed_grid_files_expand_or_raise_a_sweep_error(spec):
    try:
        runs = sweep.expand_grid(spec)
    except SweepError as error:
        assert str(error) and "\n" not in str(error).strip()
        return
    for run in runs:
        assert run.validated().config == run.config


# -- object spaces and devices that cannot be built are clean config errors ----------------------
def test_huge_object_space_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        referential.main(["--n-values", "100000", "100000", "--out", str(tmp_path / "run")])
    assert info.value.code == 2


@pytest.mark.parametrize("n_values", [None, 2.5, True])
def test_non_iterable_n_values_in_a_config_dict_is_a_config_error(n_values):
    game, _ = split_config({"n_values": n_values})
    with pytest.raises(ValueError, match="n_values"):
        game.validate()
