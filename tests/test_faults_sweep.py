"""The sweep's fault catalog: bad grid files and flags are one stderr line and exit 2 before any
file is written; a killed or terminated sweep leaves no worker behind, and its relaunch finishes
every run with exactly its records."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import yaml

from emergent_frl.runs import LOCK_FILE, lock_holder
from fault_catalog import Fault, run_fault
from tiny_configs import TINY

SWEEP = "games.sweep"
REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = {**TINY, "generations": 2, "iterations_per_generation": 10}
OUT = "{tmp}/out"


def grid_file(text: str, name: str = "grid.yaml"):
    """A case's setup that writes `text` as its grid file."""
    return lambda tmp: (tmp / name).write_text(text)


def grid_of(**grid) -> str:
    return yaml.safe_dump({"base": BASE, "grid": grid})


def bomb(levels: int = 9) -> str:
    """A 'billion laughs' grid: each level lists the one before nine times; ~400 bytes, 9**9 values."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\ngrid: {{seed: *l{levels - 1}}}\n"


# -- lock holders: another live process writing a run directory ------------------------------------
_HOLDERS: list[subprocess.Popen] = []
HOLD = ("import sys, time\nfrom emergent_frl.runs import RunDirectory\nrun = RunDirectory(sys.argv[1])\n"
        "print('ready', flush=True)\ntime.sleep(120)\n")


def hold_run(path: pathlib.Path) -> subprocess.Popen:
    """Start a process that opens `path` as a RunDirectory (taking its lock) and sleeps."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    _HOLDERS.append(holder)
    assert holder.stdout.readline().strip() == "ready"
    return holder


@pytest.fixture(autouse=True)
def end_holders():
    yield
    while _HOLDERS:
        holder = _HOLDERS.pop()
        holder.kill()
        holder.wait()


def locked_run(tmp: pathlib.Path) -> None:
    (tmp / "grid.yaml").write_text(grid_of(strategy=["no_reset", "pbf"]))
    hold_run(tmp / "out" / "pbf" / "seed0")


def big_file(tmp: pathlib.Path) -> None:
    (tmp / "grid.yaml").write_text("description: " + "x" * 300_000 + "\n")


CASES = [
    Fault("alias bomb", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "too large: its aliases expand to more than 100,000 values", grid_file(bomb())),
    Fault("recursive alias", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "an alias refers to a value that holds it", grid_file("grid: &g {seed: [0], x: *g}\n")),
    Fault("nested too deeply", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "not valid YAML (nested too deeply)", grid_file("grid: " + "[" * 1500 + "\n")),
    Fault("grid file over 250 kB", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "too large (over 250,000 bytes)", big_file),
    Fault("duplicate section", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "line 3: key 'grid' given twice in one mapping (first on line 1)",
          grid_file("grid: {seed: [0]}\nbase: {hidden_size: 16}\ngrid: {seed: [1]}\n")),
    Fault("duplicate setting", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "line 1: key 'hidden_size' given twice", grid_file("base: {hidden_size: 16, hidden_size: 32}\n")),
    Fault("one run in two directories", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "runs temperature=1/pbf/seed0 and temperature=1.0/pbf/seed0 have the same settings",
          grid_file(grid_of(temperature=[1, 1.0]))),
    Fault("one run in two directories, dry run", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--dry-run"), 2,
          "runs temperature=1/pbf/seed0 and temperature=1.0/pbf/seed0 have the same settings",
          grid_file(grid_of(temperature=[1, 1.0]))),
    Fault("seed too large", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "grid.seed: 20000000000000: must be in [0, 4294967295]", grid_file(grid_of(seed=[0, 20000000000000]))),
    Fault("seed too large, dry run", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--dry-run"), 2,
          "grid.seed: 20000000000000: must be in [0, 4294967295]", grid_file(grid_of(seed=[0, 20000000000000]))),
    Fault("infinite learning rate", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "grid.lr_sender: inf: must be a finite number",
          grid_file("base: {hidden_size: 16}\ngrid: {lr_sender: [0.001, .inf]}\n")),
    Fault("run locked by another process", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "out/pbf/seed0: another process (PID ", locked_run),
    Fault("run locked by another process, dry run", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--dry-run"), 2,
          "out/pbf/seed0: another process (PID ", locked_run),
    Fault("--out under a file", SWEEP, ("{tmp}/grid.yaml", "--out", "{tmp}/file/out"), 2,
          "file/out: is under", lambda tmp: (grid_file(grid_of(seed=[0]))(tmp), (tmp / "file").write_text("x"))),
    Fault("--out is a file", SWEEP, ("{tmp}/grid.yaml", "--out", "{tmp}/file"), 2,
          "file: exists and is not a directory",
          lambda tmp: (grid_file(grid_of(seed=[0]))(tmp), (tmp / "file").write_text("x"))),
    Fault("--out empty", SWEEP, ("{tmp}/grid.yaml", "--out", ""), 2,
          "--out '': give a directory name", grid_file(grid_of(seed=[0]))),
    Fault("grid file not a mapping", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "grid file: must be a mapping", grid_file("- 1\n- 2\n")),
    Fault("grid file missing", SWEEP, ("{tmp}/nothing.yaml", "--out", OUT), 2, "nothing.yaml: no such grid file"),
    Fault("grid file is a folder", SWEEP, ("{tmp}", "--out", OUT), 2, "no such grid file"),
    Fault("grid file not text", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "cannot read (not UTF-8 text: byte 6)", lambda tmp: (tmp / "grid.yaml").write_bytes(b"grid: \xff\xfe\n")),
    Fault("huge value not echoed", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2,
          "grid.seed: must be a non-empty list of values, got 'xxx", grid_file(grid_of(seed="x" * 100_000))),
    Fault("--workers 0", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--workers", "0"), 2,
          "--workers 0: must be an integer >= 1", grid_file(grid_of(seed=[0]))),
    Fault("--workers negative", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--workers", "-3"), 2,
          "--workers -3: must be an integer >= 1", grid_file(grid_of(seed=[0]))),
    Fault("--workers not a number", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--workers", "two"), 2,
          "argument --workers: invalid int value: 'two'", grid_file(grid_of(seed=[0]))),
    Fault("--retries negative", SWEEP, ("{tmp}/grid.yaml", "--out", OUT, "--retries", "-1"), 2,
          "--retries -1: must be an integer >= 0", grid_file(grid_of(seed=[0]))),
]


@pytest.mark.parametrize("fault", CASES, ids=str)
def test_sweep_fault(fault, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a case that wrongly runs must not write beside the tests
    started = time.monotonic()
    line = run_fault(fault, tmp_path, monkeypatch)
    assert time.monotonic() - started < 10, f"{fault}: took {time.monotonic() - started:.1f} s"
    assert len(line) < 400  # a huge value is cut, never echoed


def test_alias_bomb_is_refused_in_a_moment(tmp_path, monkeypatch):
    started = time.monotonic()
    run_fault(CASES[0], tmp_path, monkeypatch)
    assert time.monotonic() - started < 2


def test_a_locked_run_names_its_holders_pid(tmp_path, monkeypatch):
    holder = hold_run(tmp_path / "out" / "pbf" / "seed0")
    fault = Fault("locked", SWEEP, ("{tmp}/grid.yaml", "--out", OUT), 2, f"(PID {holder.pid})",
                  grid_file(grid_of(strategy=["no_reset", "pbf"])))
    line = run_fault(fault, tmp_path, monkeypatch)
    assert f"{tmp_path}/out/pbf/seed0: another process (PID {holder.pid}) is writing this run" in line
    holder.kill()
    holder.wait()
    assert lock_holder(tmp_path / "out" / "pbf" / "seed0") is None  # the OS dropped it with the holder


# -- a sweep killed or terminated mid-run: its workers end with it -----------------------------------
GENERATIONS, PERIOD, EVAL_EVERY = 3, 100, 50
needs_proc = pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _stat(pid: int) -> list[str] | None:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def workers_of(pid: int) -> list[int]:
    """The pool workers (multiprocessing spawn children) of process `pid`."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is None or int(stat[1]) != pid:
            continue
        try:
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def start_sweep(tmp_path: pathlib.Path, *flags: str) -> subprocess.Popen:
    base = {**TINY, "eval_every": EVAL_EVERY, "generations": GENERATIONS, "iterations_per_generation": PERIOD}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"base": base, "grid": {"strategy": ["no_reset", "pbf"]}}))
    return subprocess.Popen([sys.executable, "-m", SWEEP, str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "out"),
                             *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Ctrl-C as in a terminal, even where these tests run as a background job (which ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_a_record(sweep: subprocess.Popen, out: pathlib.Path, timeout: float = 60) -> list[int]:
    """Wait until some run has written a generation; return the sweep's workers then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()
        if any(path.read_text().strip() for path in out.glob("*/*/generations.jsonl")):
            workers = workers_of(sweep.pid)
            if workers:
                return workers
        time.sleep(0.05)
    raise AssertionError("no record within the timeout")


def assert_no_worker_left(workers: list[int], within: float = 5) -> None:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "workers outlived their sweep"


def relaunch_and_check(tmp_path: pathlib.Path, workers: int = 2) -> None:
    """Relaunch and check that every run holds exactly its generations and evaluations, none twice.
    With one worker, the second run's worker is started by the pool's own thread, which must not
    end it (PR_SET_PDEATHSIG ties a worker to the thread that started it)."""
    out = tmp_path / "out"
    for run in out.glob("*/*"):
        assert lock_holder(run) is None
    done = subprocess.run([sys.executable, "-m", SWEEP, str(tmp_path / "grid.yaml"), "--out", str(out),
                           "--workers", str(workers), "--no-compile"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "to resume" in done.stdout and "crashed" not in done.stdout, done.stdout
    for name in ("no_reset/seed0", "pbf/seed0"):
        records = [json.loads(line) for line in (out / name / "generations.jsonl").read_text().splitlines()]
        assert [record["generation"] for record in records] == list(range(GENERATIONS)), name
        evaluations = [json.loads(line) for line in (out / name / "evaluations.jsonl").read_text().splitlines()]
        per_generation = PERIOD // EVAL_EVERY
        assert [e["generation"] for e in evaluations] == [g for g in range(GENERATIONS) for _ in range(per_generation)]
        assert not list((out / name).glob(".*.tmp")) and (out / name / LOCK_FILE).is_file()


def stop(sweep: subprocess.Popen, workers: list[int]) -> str:
    """Whatever a test left running, ended (orphaned workers too: they hold the sweep's pipes);
    returns the sweep's stderr."""
    sweep.kill()
    for pid in workers:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    return sweep.communicate()[1]


@needs_proc
def test_workers_end_when_the_sweep_is_killed_and_the_relaunch_finishes_every_run_once(tmp_path):
    sweep, workers = start_sweep(tmp_path, "--workers", "2", "--engine", "reference"), []
    try:
        workers = wait_for_a_record(sweep, tmp_path / "out")
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=10)
        assert_no_worker_left(workers)
    finally:
        stop(sweep, workers)
    relaunch_and_check(tmp_path)


@needs_proc
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_terminated_sweep_ends_its_workers_exits_130_and_resumes(tmp_path, signum):
    sweep, workers = start_sweep(tmp_path, "--workers", "2", "--no-compile"), []
    try:
        workers = wait_for_a_record(sweep, tmp_path / "out")
        started = time.monotonic()
        sweep.send_signal(signum)
        sweep.wait(timeout=15)
        assert time.monotonic() - started < 10  # running tasks are not waited for
        assert not [pid for pid in workers if alive(pid)]  # ended before the sweep exited
    finally:
        err = stop(sweep, workers)
    assert sweep.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["python -m games.sweep: interrupted; run the same command again to resume"], err
    relaunch_and_check(tmp_path, workers=1 if signum == signal.SIGTERM else 2)
