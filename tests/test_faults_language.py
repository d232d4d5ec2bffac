"""The language scripts' fault catalog: sizes that cannot fit in memory, outputs that cannot be
written, broken resume inputs, non-finite numbers, devices and seeds out of range, a full disk, a
run another process is writing. Each is one stderr line naming the flag or file, with exit 2 for
bad input (nothing created, nothing changed) or 1 for a fault while working (earlier files
unchanged)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator

import pytest

import emergent_frl.runs
from fault_catalog import Fault, run_fault
from games import referential

ROOT = pathlib.Path(__file__).resolve().parents[1]
REF, REC = "games.referential", "games.reconstruction"
TINY = ("--n-values", "2", "3", "--vocab-size", "6", "--n-candidates", "3", "--hidden-size", "16",
        "--batch-size", "8", "--generations", "3", "--iterations-per-generation", "20", "--eval-every", "10",
        "--no-plot", "--no-progress", "--no-compile")
OUT = ("--out", "{tmp}/run")
_MADE: dict[str, pathlib.Path] = {}


def finished_run(base: pathlib.Path) -> pathlib.Path:
    """One tiny finished run (3 generations, batched engine), made once per test session and copied."""
    if "run" not in _MADE:
        target = base / "finished"
        assert referential.main([*TINY, "--out", str(target)]) == 0
        _MADE["run"] = target
    return _MADE["run"]


@pytest.fixture(scope="module", autouse=True)
def _made_run(tmp_path_factory):
    _MADE.clear()
    finished_run(tmp_path_factory.mktemp("made"))
    yield


def copy_run(edit: Callable[[pathlib.Path], None] | None = None) -> Callable[[pathlib.Path], None]:
    """A setup: the finished run copied to `tmp`/run (its lock file left out), then `edit`ed."""
    def setup(tmp: pathlib.Path) -> None:
        shutil.copytree(_MADE["run"], tmp / "run", ignore=shutil.ignore_patterns(".emergent-frl.lock"))
        if edit is not None:
            edit(tmp / "run")
    return setup


def write(name: str, content: bytes | str) -> Callable[[pathlib.Path], None]:
    def edit(run: pathlib.Path) -> None:
        (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return edit


def cut_checkpoint(run: pathlib.Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def edit_config(**changes) -> Callable[[pathlib.Path], None]:
    def edit(run: pathlib.Path) -> None:
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, **changes}))
    return edit


def remove(name: str) -> Callable[[pathlib.Path], None]:
    return lambda run: (run / name).unlink()


def files(**contents: str) -> Callable[[pathlib.Path], None]:
    def setup(tmp: pathlib.Path) -> None:
        for name, text in contents.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return setup


RESUME = ("--resume", "{tmp}/run")
CASES = [
    # sizes that pass the ranges but not the memory: refused with the estimate, before any work
    Fault("vocab 1e9", REF, ("--vocab-size", "1000000000", *OUT), 2, "--vocab-size 1000000000: the run would need"),
    Fault("hidden 1e8", REF, ("--hidden-size", "100000000", *OUT), 2, "--hidden-size 100000000: the run would need"),
    Fault("batch 1e9", REF, ("--batch-size", "1000000000", *OUT), 2, "--batch-size 1000000000: the run would need"),
    Fault("max_len 1e6", REF, ("--max-len", "1000000", *OUT), 2, "--max-len 1000000: the run would need"),
    Fault("reconstruction 1000x1000", REC, ("--n-values", "1000", "1000", *OUT), 2, "is available"),
    Fault("64 seeds of a large model", REF, ("--hidden-size", "20000", "--seeds", "0-63", *OUT), 2,
          "for 64 runs"),
    Fault("object space beyond the bound", REF, ("--n-values", "100000", "100000", *OUT), 2, "--n-values"),
    # output paths
    Fault("--out under a regular file", REF, (*TINY, "--out", "{tmp}/file/run"), 2, "cannot create the directory",
          setup=files(file="x")),
    Fault("--out is a regular file", REF, (*TINY, "--out", "{tmp}/file"), 2, "exists and is not a directory",
          setup=files(file="x")),
    Fault("--out under /proc", REF, (*TINY, "--out", "/proc/emergent-frl-run"), 2, "cannot create the directory"),
    Fault("--out empty", REF, (*TINY, "--out", ""), 2, "--out '': give a directory name"),
    Fault("--out holds the user's config.json", REF, (*TINY, "--out", "{tmp}/mine"), 2,
          "holds files this package did not write (config.json)", setup=files(**{"mine/config.json": '{"a": 1}'})),
    Fault("--seeds parent holds the user's files", REF, (*TINY, "--seeds", "0-1", "--out", "{tmp}/mine"), 2,
          "holds files this package did not write (notes.txt)", setup=files(**{"mine/notes.txt": "mine"})),
    Fault("--out holds a finished run", REF, (*TINY, *OUT), 2, "already holds a run; pass --resume",
          setup=copy_run()),
    # broken resume inputs
    Fault("checkpoint cut short", REF, RESUME, 2, "checkpoint.pt: cannot be read as a checkpoint",
          setup=copy_run(cut_checkpoint)),
    Fault("checkpoint empty", REF, RESUME, 2, "checkpoint.pt: cannot be read as a checkpoint",
          setup=copy_run(write("checkpoint.pt", b""))),
    Fault("checkpoint garbage", REF, RESUME, 2, "checkpoint.pt: cannot be read as a checkpoint",
          setup=copy_run(write("checkpoint.pt", b"\x00garbage" * 100))),
    Fault("checkpoint of another shape (config edited)", REF, (*RESUME, "--generations", "4"), 2,
          "checkpoint.pt: does not fit this run's settings (size mismatch", setup=copy_run(edit_config(hidden_size=17))),
    Fault("config.json a list", REF, RESUME, 2, "config.json: holds a list, not a mapping",
          setup=copy_run(write("config.json", "[1, 2]"))),
    Fault("config.json not JSON", REF, RESUME, 2, "config.json is not valid JSON",
          setup=copy_run(write("config.json", '{"seed": '))),
    Fault("config.json with an unknown engine", REF, (*RESUME, "--generations", "4"), 2,
          "engine 'warp' is not one of", setup=copy_run(edit_config(engine="warp"))),
    Fault("config.json with a bad field value", REF, (*RESUME, "--generations", "4"), 2, "--vocab-size 1: must be >= 2",
          setup=copy_run(edit_config(vocab_size=1))),
    Fault("generations.jsonl missing", REF, (*RESUME, "--generations", "4"), 2,
          "generations.jsonl: holds 0 records, but checkpoint.pt covers 3", setup=copy_run(remove("generations.jsonl"))),
    Fault("generations.jsonl corrupt line", REF, (*RESUME, "--generations", "4"), 2,
          "generations.jsonl: line 2 is not valid JSON",
          setup=copy_run(write("generations.jsonl", '{"generation": 0}\n{"gener\n{"generation": 2}\n'))),
    Fault("resume with fewer generations", REF, (*RESUME, "--generations", "2"), 2,
          "--generations 2: {tmp}/run already holds 3 generations", setup=copy_run()),
    Fault("resume on another engine", REF, (*RESUME, "--engine", "reference"), 2,
          "--engine reference: {tmp}/run was trained on the batched engine", setup=copy_run()),
    Fault("resume of a folder that is no run", REF, ("--resume", "{tmp}"), 2, "holds no config.json"),
    Fault("resume of a missing folder", REF, ("--resume", "{tmp}/nothing"), 2, "--resume"),
    Fault("resume of a --seeds launch's folder", REF, ("--resume", "{tmp}"), 2,
          "holds no config.json but the runs of 2 seeds (seed0, seed3); resume each with --resume {tmp}/seedS",
          setup=files(**{"seed0/config.json": "{}", "seed3/config.json": "{}"})),
    Fault("resume and another --out", REF, (*RESUME, "--out", "{tmp}/other"), 2, "differs from --resume",
          setup=copy_run()),
    Fault("resume and --preset", REF, (*RESUME, "--preset", "paper"), 2, "--preset: cannot be combined",
          setup=copy_run()),
    Fault("resume and --seeds", REF, (*RESUME, "--seeds", "0-1"), 2, "--seeds: cannot be combined",
          setup=copy_run()),
    # non-finite numbers, devices, seeds
    Fault("temperature inf", REF, ("--temperature", "inf", *OUT), 2, "--temperature inf: must be a finite number"),
    Fault("lr nan", REF, ("--lr", "nan", *OUT), 2, "nan: must be a finite number"),
    Fault("entropy coefficient inf", REF, ("--sender-entropy-coeff", "inf", *OUT), 2,
          "--sender-entropy-coeff inf: must be a finite number"),
    Fault("keep fraction nan", REF, ("--receiver-keep-fraction", "nan", *OUT), 2,
          "--receiver-keep-fraction nan: must be a number in [0, 1]"),
    Fault("holdout fraction inf", REF, ("--holdout", "random", "--holdout-fraction", "inf", *OUT), 2,
          "--holdout-fraction inf"),
    Fault("device cpu:5", REF, ("--device", "cpu:5", *OUT), 2, "--device cpu:5: this machine has 1 cpu device; allowed on this machine: cpu"),
    Fault("device gpu", REF, ("--device", "gpu", *OUT), 2, "--device gpu: not a device; allowed on this machine"),
    Fault("device cuda:9", REF, ("--device", "cuda:9", *OUT), 2, "--device cuda:9"),
    Fault("seed 2e13", REF, ("--seed", "20000000000000", *OUT), 2, "--seed 20000000000000: must be in [0, 4294967295]"),
    Fault("seed -1", REF, ("--seed", "-1", *OUT), 2, "--seed -1: must be in [0, 4294967295]"),
    Fault("--seeds past the seed range", REF, (*TINY, "--seeds", "4294967295-4294967296", *OUT), 2,
          "--seed 4294967296: must be in [0, 4294967295]"),
    Fault("--seeds huge range", REF, ("--seeds", "0-100000000000", *OUT), 2, "--seeds 0-100000000000: at most"),
    Fault("iterations 1e30", REF, ("--iterations", "1000000000000000000000000000000", *OUT), 2, "--iterations"),
    # a fault while working: the disk fills up after the first generation's files
    Fault("disk full", REF, (*TINY, *OUT), 1, "the disk is full", may_create=True),
    Fault("disk full from the start of a resume", REF, (*RESUME, "--generations", "5"), 1, "the disk is full",
          setup=copy_run(), may_create=True),
]


class FillsUp:
    """os.fsync that fails with ENOSPC from the `after`-th call on, as a disk that fills up."""

    def __init__(self, after: int):
        self.after, self.calls = after, 0
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.calls > self.after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(fd)


@pytest.mark.parametrize("fault", CASES, ids=str)
def test_language_fault(fault: Fault, tmp_path: pathlib.Path, monkeypatch) -> None:
    if fault.name.startswith("disk full"):
        fault = Fault(fault.name, fault.command, fault.argv, fault.code, fault.says, fault.setup, True,
                      # a generation writes 5 files (2 evaluations, record, language, checkpoint) after
                      # config.json: the disk fills up inside the second generation, or at once on resume
                      ((emergent_frl.runs.os, "fsync", FillsUp(after=8 if fault.name == "disk full" else 0)),))
    line = run_fault(fault, tmp_path, monkeypatch)
    if fault.name == "disk full":  # the first generation's record stays whole
        records = (tmp_path / "run" / "generations.jsonl").read_text().splitlines()
        assert [json.loads(r)["generation"] for r in records] == [0], line
    assert "Traceback" not in line


def test_the_catalog_is_at_least_forty_cases() -> None:
    assert len({fault.name for fault in CASES}) == len(CASES) >= 40


# -- real processes ---------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _wait_for_records(path: pathlib.Path, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or len(path.read_text().splitlines()) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no record in time"
        time.sleep(0.02)


LONG = [*TINY, "--generations", "6", "--iterations-per-generation", "300", "--eval-every", "100"]


def test_a_second_writer_is_refused_naming_the_first_and_the_first_finishes_intact(tmp_path):
    run = tmp_path / "run"
    # long enough (about 12 s) that both later launches meet it running, even on a loaded machine
    flags = [*LONG, "--iterations-per-generation", "1000", "--eval-every", "500"]
    first = subprocess.Popen([sys.executable, "-m", REF, *flags, "--out", str(run)], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_records(run / "evaluations.jsonl", 1, first)
        seconds = [subprocess.Popen([sys.executable, "-m", REF, *argv], cwd=ROOT, env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                   for argv in (["--out", str(run), *flags], ["--resume", str(run)])]
        for second in seconds:
            _, err = second.communicate(timeout=120)
            lines = err.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, err
            assert f"another process (PID {first.pid}) is writing this run" in lines[0]
        assert first.poll() is None, "the first run ended before the second writers came: nothing was tested"
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
        first.stderr.close()
    records = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in records] == list(range(6))
    assert {r["seed"] for r in records} == {0}
    assert json.loads((run / "config.json").read_text())["generations"] == 6


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_ctrl_c_is_one_line_exit_130_and_a_resume_equals_an_uninterrupted_run(tmp_path, engine):
    flags = [*LONG, "--engine", engine] if engine == "batched" else [
        *(f for f in LONG if f != "--no-compile"), "--engine", engine]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", REF, *flags, "--out", str(run)], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_records(run / "generations.jsonl", 2, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m games.referential: interrupted at generation ")
    assert lines[0].endswith(f"; continue with --resume {run}")
    generation = int(lines[0].split("generation ")[1].split(",")[0])
    assert 2 <= generation < 6, lines[0]  # stopped inside a generation that had not been written

    assert referential.main(["--resume", str(run)]) == 0
    assert referential.main([*flags, "--out", str(tmp_path / "whole")]) == 0

    def records(path):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (path / "generations.jsonl").read_text().splitlines()]

    assert records(run) == records(tmp_path / "whole")
    assert (run / "evaluations.jsonl").read_text() == (tmp_path / "whole" / "evaluations.jsonl").read_text()


@contextlib.contextmanager
def tmpfs(mount: pathlib.Path, options: str) -> Iterator[pathlib.Path]:
    """A small tmpfs at `mount` for the block (root only: the test is skipped where mounting is
    not allowed), unmounted after."""
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_disk_keeps_earlier_records_and_names_the_file(tmp_path):
    """On a 160 KiB tmpfs (root only; skipped where mounting is not allowed) the run fills the disk."""
    with tmpfs(tmp_path / "small", "size=160k") as mount:
        result = subprocess.run([sys.executable, "-m", REF, *TINY, "--hidden-size", "200", "--generations", "20",
                                 "--iterations-per-generation", "2", "--eval-every", "0", "--out", str(mount / "run")],
                                cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert "the disk is full" in lines[0] and str(mount / "run") in lines[0], lines[0]
        records = (mount / "run" / "generations.jsonl").read_text().splitlines()
        assert [json.loads(r)["generation"] for r in records] == list(range(len(records)))
        assert 0 < len(records) < 20


@pytest.mark.parametrize("command", ["games.referential", "games.sweep", "games.image_classification"])
def test_an_output_on_a_read_only_filesystem_is_one_line_and_exit_2(tmp_path, command):
    """A real read-only mount (root only; skipped where mounting is not allowed)."""
    with tmpfs(tmp_path / "readonly", "ro,size=64k") as mount:
        grid = tmp_path / "grid.yaml"
        grid.write_text("base: {n_values: 3, hidden_size: 16, generations: 1, iterations_per_generation: 2}\n"
                        "grid: {seed: [0]}\n")
        args = {"games.referential": [*TINY],
                "games.sweep": [str(grid)],
                "games.image_classification": ["--epochs", "1", "--quiet"]}[command]
        result = subprocess.run([sys.executable, "-m", command, *args, "--out", str(mount / "run")], cwd=ROOT,
                                env=_env(), capture_output=True, text=True, timeout=300)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert ("Read-only file system" in lines[0] or "read-only" in lines[0]) and str(mount / "run") in lines[0], lines[0]
        assert "Traceback" not in result.stderr
        assert list(mount.iterdir()) == []


@pytest.mark.parametrize("command", ["games.referential", "games.sweep", "games.image_classification",
                                     "games.targeted_forgetting"])
def test_ctrl_c_while_a_script_still_imports_torch_is_one_line_and_exit_130(command):
    proc = subprocess.Popen([sys.executable, "-m", command, "--help"], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)  # Python is up (its SIGINT handler installed); torch takes seconds more to import
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the imports finished within 0.4 s on this machine: nothing to interrupt")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["interrupted while starting; nothing was written"], err
