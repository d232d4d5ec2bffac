"""The image track's fault catalog (`games.image_classification`, `games.targeted_forgetting`):
bad flags (non-finite floats, seeds past 32 bits, devices this machine lacks, sizes that would not
fit in memory), unusable --out paths, a run another process writes, broken files of a run to
resume: each one stderr line, exit 2, nothing created or changed. Disk full while writing: exit 1,
the file named, what was written before intact. Ctrl-C: exit 130 and where to continue; the last
test interrupts a real process and checks that resuming it gives the uninterrupted run's records."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any, Callable

import pytest
import torch

import emergent_frl.vision.footprint
from emergent_frl.runs import LOCK_FILE, RunDirectory
from emergent_frl.vision.checks import flag_of
from emergent_frl.vision.experiment import ImageRunConfig, run_image_classification
from emergent_frl.vision.probe import TargetedForgettingProbe
from emergent_frl.vision.trainer import GenerationTrainer
from fault_catalog import Fault, run_fault
from games import image_classification

IMAGE, PROBE = "games.image_classification", "games.targeted_forgetting"
ROOT = pathlib.Path(__file__).resolve().parents[1]
# The smallest image run: 20 digits, a 4-wide CNN, one epoch per generation (~0.1 s a generation).
TINY = {"train_per_class": 2, "width": 4, "epochs": 1, "batch_size": 10, "val_fraction": 0.05}


def flags(values: dict[str, Any]) -> tuple[str, ...]:
    """The command line of a settings dict: {"split_rate": 0.5} -> ("--split-rate", "0.5")."""
    return tuple(arg for key, value in values.items() for arg in (flag_of(key), str(value)))


TINY_ARGS = (*flags(TINY), "--no-progress")
RUN = "{tmp}/run"
# The smallest probe: 100 digits, a 20-wide MLP, two measurements.
PROBE_ARGS = ("--steps", "20", "--measure-every", "10", "--train-per-class", "10", "--width", "20", "--no-progress")
HELD_LOCKS: list[int] = []  # descriptors of locks a case's setup holds; closed after each case
Setup = Callable[[pathlib.Path], None]  # prepares a case's folder


# ------------------------------------------------------------------------------------- setups
def image(*argv: str) -> tuple[str, ...]:
    """A new tiny image run into {tmp}/run with `argv` added."""
    return (*TINY_ARGS, "--out", RUN, *argv)


def finished_run(generations: int = 1, **changes: Any) -> Setup:
    """Setup: a finished tiny run of `generations` in tmp/run (`changes`: other flags)."""
    def setup(tmp: pathlib.Path) -> None:
        argv = [*TINY_ARGS, "--generations", str(generations), *flags(changes), "--out", str(tmp / "run")]
        assert image_classification.main(argv) == 0
    return setup


def interrupted_run(tmp: pathlib.Path) -> None:
    """Setup: a tiny run of 2 generations stopped (Ctrl-C) after the first was saved."""
    config = ImageRunConfig.from_flat({**image_classification.DEFAULTS, **TINY, "generations": 2})

    def stop(record: dict) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_image_classification(config, str(tmp / "run"), on_record=stop)


def then(setup: Setup, change: Setup) -> Setup:
    """`setup`, then `change` applied to tmp/run (a file of the run broken by hand)."""
    def both(tmp: pathlib.Path) -> None:
        setup(tmp)
        change(tmp / "run")
    return both


def edit_config(**fields: Any) -> Setup:
    def change(run: pathlib.Path) -> None:
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, **fields}))
    return change


def write(name: str, data: bytes) -> Setup:
    return lambda run: (run / name).write_bytes(data) and None


def cut_checkpoint(run: pathlib.Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def checkpoint_of_mlp(tmp: pathlib.Path) -> None:
    """Setup: tmp/run (small CNN) holding the checkpoint of an MLP run."""
    finished_run()(tmp)
    finished_run(arch="mlp")(tmp / "other")
    (tmp / "run" / "checkpoint.pt").write_bytes((tmp / "other" / "run" / "checkpoint.pt").read_bytes())
    for path in sorted((tmp / "other").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp / "other").rmdir()


def hold_lock(folder: str) -> Setup:
    """Setup: another writer (PID 4242 as it wrote itself) holds the lock of tmp/`folder`. A second
    open file description in this process conflicts with `flock` as another process's would."""
    def setup(tmp: pathlib.Path) -> None:
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp / folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, b"4242\n")
        HELD_LOCKS.append(fd)
    return setup


def file_at(name: str) -> Setup:
    return lambda tmp: (tmp / name).write_text("not a folder") and None


def finished_probe(tmp: pathlib.Path, *argv: str) -> None:
    from games import targeted_forgetting

    assert targeted_forgetting.main([*PROBE_ARGS, "--out", str(tmp / "p"), *argv]) == 0


# ---------------------------------------------------------------------------------- patches
def fail_write_of(name: str) -> Callable[..., None]:
    """os.replace that fails with ENOSPC when it would put file `name` in place (the last step of
    every atomic write), and replaces anything else."""
    real = os.replace

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if pathlib.Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst, *args, **kwargs)
    return replace


def no_space(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def read_only(self: pathlib.Path, *args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EROFS, "Read-only file system", str(self))


def interrupt_generation(n: int) -> Callable[..., Any]:
    """GenerationTrainer.train_epoch that is interrupted (Ctrl-C) in generation `n`."""
    real = GenerationTrainer.train_epoch

    def train_epoch(self: GenerationTrainer, generation: int, epoch: int) -> tuple[float, float]:
        if generation == n:
            raise KeyboardInterrupt
        return real(self, generation, epoch)
    return train_epoch


def interrupt_measurement(n: int) -> Callable[..., Any]:
    """TargetedForgettingProbe.measure that is interrupted at measurement `n`."""
    real = TargetedForgettingProbe.measure

    def measure(self: TargetedForgettingProbe, step: int, index: int) -> dict:
        if index == n:
            raise KeyboardInterrupt
        return real(self, step, index)
    return measure


REAL_TORCH_SAVE = torch.save


def ctrl_c_inside_torch_save(obj: Any, handle: Any) -> None:
    """Ctrl-C (a real SIGINT to this process) while torch.save writes the checkpoint; the write goes on."""
    os.kill(os.getpid(), signal.SIGINT)
    REAL_TORCH_SAVE(obj, handle)


def out_of_memory(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 40000000000000 bytes")


MIB = 2**20
LITTLE_MEMORY = (emergent_frl.vision.footprint, "available_bytes", lambda device: 8 * MIB)
NO_SPACE = (os, "fsync", no_space)
READ_ONLY = (pathlib.Path, "mkdir", read_only)


# ------------------------------------------------------------------------------------ the cases
def non_finite(command: str, base: tuple[str, ...], flag: str, value: str, *extra: str) -> Fault:
    return Fault(f"{command.split('.')[-1]}: {flag} {value}", command, (*base, flag, value, *extra), 2,
                 f"{flag} {value}: not a finite number; allowed range is ")


def bad_device(command: str, base: tuple[str, ...], value: str) -> Fault:
    return Fault(f"{command.split('.')[-1]}: --device {value!r}", command, (*base, "--device", value), 2,
                 "allowed on this machine: auto, cpu")


PROBE_OUT = (*PROBE_ARGS, "--out", "{tmp}/p")

IMAGE_CASES = [
    # seeds and non-finite floats: refused by validation, before any data is loaded
    Fault("image: --seed past 32 bits", IMAGE, image("--seed", "20000000000000"), 2,
          "--seed 20000000000000: allowed range is 0..4294967295"),
    Fault("image: a negative --seed", IMAGE, image("--seed", "-1"), 2, "--seed -1: allowed range is 0..4294967295"),
    Fault("image: --split-seed past 32 bits", IMAGE, image("--split-seed", "4294967296"), 2,
          "--split-seed 4294967296: allowed range is 0..4294967295"),
    non_finite(IMAGE, image(), "--lr", "nan"),
    non_finite(IMAGE, image(), "--momentum", "inf"),
    non_finite(IMAGE, image(), "--weight-decay", "nan"),
    non_finite(IMAGE, image(), "--label-smoothing", "inf"),
    non_finite(IMAGE, image(), "--val-fraction", "nan"),
    non_finite(IMAGE, image(), "--split-rate", "nan", "--strategy", "ke"),
    non_finite(IMAGE, image(), "--prune-fraction", "inf", "--strategy", "imp"),
    Fault("image: a count that is no integer", IMAGE, image("--epochs", "ten"), 2,
          "error: argument --epochs: invalid int value: 'ten'"),
    # devices this machine does not have
    bad_device(IMAGE, image(), "mps"),
    bad_device(IMAGE, image(), "cpu:5"),
    bad_device(IMAGE, image(), "cuda:9"),
    bad_device(IMAGE, image(), "gpu"),
    bad_device(IMAGE, image(), ""),
    # sizes that would not fit in memory: the estimate and the memory available, the flag to reduce
    Fault("image: sizes past any machine's memory", IMAGE,
          image("--width", "4096", "--image-size", "1024", "--batch-size", "65536"), 2,
          "--image-size 1024: the run would need about"),
    Fault("image: more than the memory available", IMAGE, image("--batch-size", "4096"), 2,
          "--batch-size 4096: the run would need about", patches=(LITTLE_MEMORY,)),
    # --out that cannot be written
    Fault("image: --out under a regular file", IMAGE, (*TINY_ARGS, "--out", "{tmp}/file/run"), 2,
          "file/run: cannot create the directory (Not a directory)", file_at("file")),
    Fault("image: --out under /proc", IMAGE, (*TINY_ARGS, "--out", "/proc/emergent-frl/run"), 2,
          "--out /proc/emergent-frl/run: cannot create the directory"),
    Fault("image: --out on a read-only file system", IMAGE, image(), 2,
          "cannot create the directory (Read-only file system)", patches=(READ_ONLY,)),
    Fault("image: --out ''", IMAGE, (*TINY_ARGS, "--out", ""), 2, "--out '': give a directory name"),
    Fault("image: --out a folder of other files", IMAGE, image(), 2, "holds files this package did not write",
          lambda tmp: (tmp / "run").mkdir() or (tmp / "run" / "notes.txt").write_text("mine")),
    # a second launch on the same run
    Fault("image: --out that another process writes", IMAGE, image(), 2, "another process (PID 4242)",
          hold_lock("run")),
    Fault("image: --resume of a run another process writes", IMAGE, ("--resume", RUN), 2,
          "--resume {tmp}/run: another process (PID 4242)", then(finished_run(), lambda run: hold_lock(".")(run))),
    # broken files of a run to resume
    Fault("image: resume, checkpoint cut short", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "checkpoint.pt: cannot be read as a checkpoint", then(finished_run(), cut_checkpoint)),
    Fault("image: resume, checkpoint empty", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "checkpoint.pt: cannot be read as a checkpoint", then(finished_run(), write("checkpoint.pt", b""))),
    Fault("image: resume, checkpoint of garbage", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "checkpoint.pt: cannot be read as a checkpoint",
          then(finished_run(), write("checkpoint.pt", bytes(range(256)) * 40))),
    Fault("image: resume, checkpoint of another architecture", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "checkpoint.pt: does not fit this run's model (Missing key(s)", checkpoint_of_mlp),
    Fault("image: resume, config.json edited to another width", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "checkpoint.pt: does not fit this run's model (size mismatch for layer1.conv.weight",
          then(finished_run(), edit_config(width=8))),
    Fault("image: resume, config.json holds a list", IMAGE, ("--resume", RUN), 2,
          "config.json: holds a list, not a mapping of settings", then(finished_run(), write("config.json", b"[1, 2]"))),
    Fault("image: resume, config.json is not JSON", IMAGE, ("--resume", RUN), 2,
          "config.json is not valid JSON", then(finished_run(), write("config.json", b'{"arch": "small_cnn",'))),
    Fault("image: resume, config.json with a count as text", IMAGE, ("--resume", RUN), 2,
          "--epochs '1': expected an integer (settings of {tmp}/run/config.json",
          then(finished_run(), edit_config(epochs="1"))),
    Fault("image: resume, config.json with NaN", IMAGE, ("--resume", RUN), 2,
          "--lr nan: not a finite number", then(finished_run(), edit_config(lr=float("nan")))),
    Fault("image: resume, generations.jsonl missing", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "generations.jsonl: holds 0 records, but checkpoint.pt covers 1",
          then(finished_run(), lambda run: (run / "generations.jsonl").unlink())),
    Fault("image: resume, a record that is not JSON", IMAGE, ("--resume", RUN, "--generations", "2"), 2,
          "generations.jsonl: line 1 is not valid JSON", then(finished_run(), write("generations.jsonl", b"{gen\n"))),
    Fault("image: resume with fewer generations than recorded", IMAGE, ("--resume", RUN, "--generations", "1"), 2,
          "already holds 2 generations", finished_run(generations=2)),
    Fault("image: resume of a folder that holds no run", IMAGE, ("--resume", "{tmp}"), 2, "holds no config.json"),
    # faults while working: the disk fills up, Ctrl-C
    Fault("image: disk full at the first write", IMAGE, image(), 1,
          "config.json: the disk is full", patches=(NO_SPACE,), may_create=True),
    Fault("image: disk full while appending a record", IMAGE, ("--resume", RUN), 1,
          "cannot write {tmp}/run/generations.jsonl: the disk is full; it still holds what it held before",
          interrupted_run, patches=((os, "replace", fail_write_of("generations.jsonl")),), may_create=True),
    Fault("image: disk full while checkpointing", IMAGE, image(), 1,
          "cannot write {tmp}/run/checkpoint.pt: the disk is full",
          patches=((os, "replace", fail_write_of("checkpoint.pt")),), may_create=True),
    Fault("image: torch runs out of memory while training", IMAGE, image(), 1, "failed: out of memory",
          patches=((GenerationTrainer, "train_epoch", out_of_memory),), may_create=True),
    Fault("image: Ctrl-C in generation 1", IMAGE, image("--generations", "3"), 130,
          "interrupted at generation 1, epoch 1 of 1; generation 0 is saved; continue with --resume {tmp}/run",
          patches=((GenerationTrainer, "train_epoch", interrupt_generation(1)),), may_create=True),
    Fault("image: SIGINT during the checkpoint write waits for it", IMAGE, image("--generations", "3"), 130,
          "interrupted at generation 0, epoch 1 of 1; generation 0 is saved; continue with --resume",
          patches=((torch, "save", ctrl_c_inside_torch_save),), may_create=True),
    Fault("image: Ctrl-C in the first of two seeds", IMAGE, image("--seeds", "0-1"), 130,
          "interrupted at seed 0, generation 0, epoch 1 of 1; no generation is saved yet; continue with --resume "
          "{tmp}/run/seed0, then the seeds not started with --seeds 1 --out {tmp}/run",
          patches=((GenerationTrainer, "train_epoch", interrupt_generation(0)),), may_create=True),
    Fault("image: Ctrl-C in the first generation", IMAGE, image(), 130,
          "no generation is saved yet; continue with --resume",
          patches=((GenerationTrainer, "train_epoch", interrupt_generation(0)),), may_create=True),
]

PROBE_CASES = [
    Fault("probe: --seeds past 32 bits", PROBE, (*PROBE_OUT, "--seeds", "0,20000000000000"), 2,
          "--seeds 20000000000000: allowed range is 0..4294967295"),
    Fault("probe: a negative seed", PROBE, (*PROBE_OUT, "--seeds", "-1"), 2,
          "--seeds -1: expected integers, ranges like 0-15, or a comma list"),
    Fault("probe: --seeds in the old form (a list of words)", PROBE, (*PROBE_OUT, "--seeds", "0", "1"), 2,
          "unrecognized arguments: 1"),
    non_finite(PROBE, PROBE_OUT, "--lr", "nan"),
    non_finite(PROBE, PROBE_OUT, "--momentum", "inf"),
    non_finite(PROBE, PROBE_OUT, "--keep-fraction", "nan"),
    non_finite(PROBE, PROBE_OUT, "--noise-fraction", "inf"),
    non_finite(PROBE, PROBE_OUT, "--margin-fraction", "nan", "--grouping", "margin"),
    Fault("probe: a count that is no integer", PROBE, (*PROBE_OUT, "--steps", "ten"), 2,
          "error: argument --steps: invalid int value: 'ten'"),
    bad_device(PROBE, PROBE_OUT, "mps"),
    bad_device(PROBE, PROBE_OUT, "cuda:9"),
    bad_device(PROBE, PROBE_OUT, ""),
    Fault("probe: more than the memory available", PROBE, (*PROBE_OUT, "--width", "4096"), 2,
          "--width 4096: the run would need about", patches=(LITTLE_MEMORY,)),
    Fault("probe: --out under a regular file", PROBE, (*PROBE_ARGS, "--out", "{tmp}/file/p"), 2,
          "file/p/seed0: cannot create the directory (Not a directory)", file_at("file")),
    Fault("probe: --out a regular file", PROBE, (*PROBE_ARGS, "--out", "{tmp}/file"), 2,
          "--out {tmp}/file: exists and is not a directory", file_at("file")),
    Fault("probe: --out under /proc", PROBE, (*PROBE_ARGS, "--out", "/proc/emergent-frl"), 2,
          "cannot create the directory"),
    Fault("probe: --out on a read-only file system", PROBE, PROBE_OUT, 2,
          "cannot create the directory (Read-only file system)", patches=(READ_ONLY,)),
    Fault("probe: --out ''", PROBE, (*PROBE_ARGS, "--out", ""), 2, "--out '': give a directory name"),
    Fault("probe: a seed folder another process writes", PROBE, (*PROBE_OUT, "--seeds", "0-1"), 2,
          "seed1: another process (PID 4242)", hold_lock("p/seed1")),
    Fault("probe: one seed folder holds other settings, no other is made", PROBE, (*PROBE_OUT, "--seeds", "0-1"), 2,
          "already holds a probe with other settings (steps=30)",
          lambda tmp: finished_probe(tmp, "--seeds", "1", "--steps", "30")),
    Fault("probe: disk full at a second seed, the first kept", PROBE, (*PROBE_OUT, "--seeds", "0-1"), 1,
          "cannot write {tmp}/p/seed1/probe.json: the disk is full", lambda tmp: finished_probe(tmp, "--seeds", "0"),
          patches=((os, "replace", fail_write_of("probe.json")),), may_create=True),
    Fault("probe: torch runs out of memory while measuring", PROBE, PROBE_OUT, 1, "failed: out of memory",
          patches=((TargetedForgettingProbe, "measure", out_of_memory),), may_create=True),
    Fault("probe: Ctrl-C at the second measurement", PROBE, (*PROBE_OUT, "--seeds", "3"), 130,
          "interrupted at seed 3, step 20 of 20; run the same command again to continue",
          patches=((TargetedForgettingProbe, "measure", interrupt_measurement(1)),), may_create=True),
    Fault("probe: Ctrl-C in the second seed, the first kept", PROBE, (*PROBE_OUT, "--seeds", "0-1"), 130,
          "interrupted at seed 1, step 10 of 20; seed 0 is finished and kept; run the same command again",
          lambda tmp: finished_probe(tmp, "--seeds", "0"),
          patches=((TargetedForgettingProbe, "measure", interrupt_measurement(0)),), may_create=True),
]


@pytest.fixture
def release_held_locks():
    yield
    while HELD_LOCKS:
        os.close(HELD_LOCKS.pop())


@pytest.mark.parametrize("fault", IMAGE_CASES + PROBE_CASES, ids=str)
def test_fault(fault: Fault, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, release_held_locks) -> None:
    run_fault(fault, tmp_path, monkeypatch)


# ---------------------------------------------------------------------- a real Ctrl-C, resumed
def read_records(run: pathlib.Path) -> list[dict]:
    """The records without their wall-clock 'seconds'."""
    lines = (run / "generations.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path: pathlib.Path) -> None:
    """SIGINT to a real training process after its first record: exit 130, one stderr line saying
    where to continue; `--resume` then gives the records of a run that never stopped."""
    argv = ["--train-per-class", "30", "--width", "4", "--epochs", "2", "--batch-size", "16", "--generations", "6",
            "--threads", "1", "--no-progress"]
    part = tmp_path / "part"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", IMAGE, *argv, "--out", str(part)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((part / "generations.jsonl").exists() and (part / "generations.jsonl").read_text().strip()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no record within 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert process.returncode == 130, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("interrupted at generation ") and lines[0].endswith(f"continue with --resume {part}")
    saved = len(read_records(part))
    assert 1 <= saved < 6, "the run stopped partway"

    assert image_classification.main(["--resume", str(part), "--threads", "1", "--no-progress"]) == 0
    assert image_classification.main([*argv, "--out", str(tmp_path / "full")]) == 0
    assert read_records(part) == read_records(tmp_path / "full")
