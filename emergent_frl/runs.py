"""Run directories: config, per-generation records, checkpoints, resume.

Every run, language or image, writes the same layout so the analysis commands read any of them:

    RUN_DIR/config.json        the full, validated configuration
    RUN_DIR/generations.jsonl  one JSON object per generation (appended as generations finish)
    RUN_DIR/checkpoint.pt      everything needed to continue after the last finished generation
    RUN_DIR/*.json             other artefacts (language.json, probe.json, ...)

Every write goes to a temporary file in the same folder and is renamed over the target, so a crash
(even SIGKILL) leaves either the old file or the new one, never half a line or a truncated checkpoint.

One writer per run: `RunDirectory` holds an exclusive lock (`flock` on RUN_DIR/.emergent-frl.lock)
while it is open. The OS drops the lock when the process dies, however it dies, so a crashed run
can be resumed at once, while a second process that opens the same run is refused with the PID of
the one writing it. The lock file also marks the folder as this package's: a new run refuses a
folder that holds files the package did not write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import pathlib
import pickle
import re
import secrets
import zipfile
from typing import Any, Iterator

import torch

from analysis.cli import sigint_held
from analysis.runs import json_type, read_json, read_records

CONFIG_FILE = "config.json"
RECORDS_FILE = "generations.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".emergent-frl.lock"


class RunInUse(ValueError):
    """Another live process holds the run directory's lock (`pid`: the holder, as it wrote it)."""

    def __init__(self, path: pathlib.Path, pid: str, flag: str = "--out"):
        self.path, self.pid = path, pid
        super().__init__(f"{flag} {path}: another process (PID {pid}) is writing this run; "
                         "wait for it to finish or stop it")


def to_jsonable(obj: Any) -> Any:
    """Plain-Python copy of `obj` for JSON: numpy/torch scalars become numbers, nan/inf become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return obj


TEMP_SUFFIX = ".tmp"


class WriteError(OSError):
    """Writing a run's file failed (disk full, read-only, quota): the message names the file; the
    file itself still holds what it held before."""

    def __init__(self, code: int | None, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def describe_os_error(error: OSError) -> str:
    """'the disk is full' for ENOSPC/EDQUOT, else the OS's own words."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    return error.strerror or str(error)


def _atomic_write(path: pathlib.Path, write) -> None:
    try:
        _replace_atomically(path, write)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(error.errno, f"cannot write {path}: {describe_os_error(error)}; "
                                      "it still holds what it held before") from error


def _replace_atomically(path: pathlib.Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    # os.open with 0o666 lets the umask decide the mode, as for any other file the user writes
    # (mkstemp would make every record 0600, unreadable to collaborators on a shared cluster).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace `path` with `text` in one rename: readers see the old or the new content, never a mix."""
    _atomic_write(pathlib.Path(path), lambda handle: handle.write(text.encode("utf-8")))


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), allow_nan=False, sort_keys=False)


def lock_holder(path: pathlib.Path) -> str | None:
    """The PID another process wrote into `path`'s run lock while it holds it, else None.

    Probes with a shared `flock`, which conflicts with a writer's exclusive one, and drops it at
    once: the file is only read (a finished run on read-only storage can still be checked). A lock
    held by this very process counts as held too: a worker could not open the run either."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise ValueError(f"{path}: cannot read its {LOCK_FILE} ({describe_os_error(error)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def seed_folder(seed: int) -> str:
    """The name of one seed's run folder inside a `--seeds` or sweep output folder: one spelling,
    since resume, sweeps and the analysis find a seed's run by it."""
    return f"seed{seed}"


def check_new_folder(path: str | os.PathLike, flag: str = "--out") -> pathlib.Path:
    """`path` as a folder a new run may write: not empty text, not a file, and (when it exists)
    made by this package (it holds LOCK_FILE) or holding nothing but run folders of this package."""
    if str(path).strip() == "":
        raise ValueError(f"{flag} '': give a directory name (an empty one would write into the current directory)")
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path}: exists and is not a directory")
    if path.is_dir():
        holder = lock_holder(path)
        if holder is not None:
            raise RunInUse(path, holder, flag)
        try:
            entries = sorted(entry.name for entry in path.iterdir())
        except OSError as error:
            raise ValueError(f"{flag} {path}: cannot be read ({describe_os_error(error)})") from None
        if RECORDS_FILE in entries or CHECKPOINT_FILE in entries:
            raise ValueError(f"{flag}: {path} already holds a run; pass --resume {path} to continue it "
                             "or choose another directory")
        foreign = [name for name in entries if not (path / name / LOCK_FILE).is_file()]
        if foreign and LOCK_FILE not in entries:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ValueError(f"{flag} {path}: holds files this package did not write ({shown}); "
                             "choose a new or empty directory")
    return path


def _make_folder(path: pathlib.Path, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot create the directory ({describe_os_error(error)})") from None


# Locks this process holds, by real path: {path: [descriptor, holders]}. Lock ownership is a
# property of the process, as the OS sees it, so this one table is process-wide: a second
# `RunDirectory` on a run this process already writes shares its lock instead of being refused
# with its own PID, and the lock is dropped only when the last of them closes.
_HELD: dict[str, list[int]] = {}


class RunLock:
    """An exclusive `flock` on PATH/LOCK_FILE, which holds the holder's PID. Released by `release()`
    (when no other holder in this process remains) or by the OS when the process ends (crash and
    SIGKILL included)."""

    def __init__(self, folder: pathlib.Path, flag: str = "--out"):
        self.key: str | None = os.path.realpath(folder / LOCK_FILE)
        held = _HELD.get(self.key)
        if held is not None:
            held[1] += 1
            return
        try:
            fd = os.open(self.key, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            self.key = None
            raise ValueError(f"{flag} {folder}: cannot write there ({describe_os_error(error)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            self.key = None
            raise RunInUse(folder, holder, flag) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[self.key] = [fd, 1]

    def release(self) -> None:
        key, self.key = self.key, None
        held = _HELD.get(key) if key is not None else None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del _HELD[key]
            os.close(held[0])  # closing the descriptor drops the flock

    def __del__(self) -> None:
        self.release()


def software_versions() -> dict[str, str | None]:
    """What made a run: this package's, torch's and numpy's versions, and the git commit of the
    package's checkout when it is one (with "+dirty" for uncommitted changes); for config.json."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import torch

    try:
        package = version("emergent-frl")
    except PackageNotFoundError:
        package = None
    root = pathlib.Path(__file__).resolve().parents[1]
    commit = None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            commit = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"emergent_frl": package, "torch": torch.__version__, "numpy": numpy.__version__, "git_commit": commit}


class RunDirectory:
    """One run's folder, locked against other writers while this object is open (`close()`, or
    `with RunDirectory(...)`, releases it; so does the end of the process). Refuses to overwrite an
    existing run unless asked to resume it, and refuses a folder of other files."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, flag: str | None = None):
        flag = flag or ("--resume" if resume else "--out")
        if resume:
            if str(path).strip() == "" or not pathlib.Path(path).is_dir():
                raise ValueError(f"--resume {path}: is not a run directory")
            self.path = pathlib.Path(path)
        else:
            self.path = check_new_folder(path, flag)
        _make_folder(self.path, flag)
        self.lock = RunLock(self.path, flag)
        has_records = (self.path / RECORDS_FILE).exists() or (self.path / CHECKPOINT_FILE).exists()
        if has_records and not resume:
            self.close()
            raise ValueError(
                f"--out: {self.path} already holds a run; pass --resume {self.path} to continue it "
                "or choose another directory"
            )
        # A run killed mid-write (even before its first record, while writing config.json) leaves
        # a temporary behind; whoever takes the lock next drops it, starting afresh or resuming.
        self._remove_stale_temporaries()

    def close(self) -> None:
        """Release the lock: another process may now write this run."""
        self.lock.release()

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _remove_stale_temporaries(self) -> None:
        """Temporary files left by a write that was killed before its rename: never read, so drop them."""
        for stale in self.path.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)

    # config -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write_text(self.path / CONFIG_FILE, json.dumps(to_jsonable(config), indent=2) + "\n")

    def read_config(self) -> dict | None:
        target = self.path / CONFIG_FILE
        return read_settings(target) if target.exists() else None

    # records ----------------------------------------------------------------------------------
    def append_record(self, record: dict, name: str = RECORDS_FILE) -> None:
        """Add one line to generations.jsonl (or another .jsonl) by rewriting the file atomically."""
        target = self.path / name
        old = target.read_bytes() if target.exists() else b""
        line = (dumps(record) + "\n").encode("utf-8")

        def write(handle):
            handle.write(old)
            handle.write(line)

        _atomic_write(target, write)

    def records(self, name: str = RECORDS_FILE) -> list[dict]:
        """The records of a .jsonl file ([] when there is none); ValueError naming the file and
        line of one that is no JSON object (the analysis package's reader: one rule for both)."""
        target = self.path / name
        return [record for _, record in read_records(target)] if target.exists() else []

    def truncate_records(self, n: int, name: str = RECORDS_FILE, *, fewer_ok: bool = False) -> None:
        """Keep the first `n` records: on resume, records written after the last checkpoint are redone.
        A file holding fewer is an incomplete run directory (a ValueError), unless `fewer_ok`."""
        records = self.records(name)
        if len(records) < n and fewer_ok:
            return
        if len(records) < n:
            raise ValueError(f"{self.path / name}: holds {len(records)} records, but {CHECKPOINT_FILE} covers {n}; "
                             "the run directory is incomplete (restore the file, or start the run anew)")
        atomic_write_text(self.path / name, "".join(dumps(r) + "\n" for r in records[:n]))

    # other artefacts --------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(to_jsonable(obj), indent=1) + "\n")

    def read_json(self, name: str) -> Any:
        """A JSON artefact (None when there is none); ValueError naming the file when it is no JSON."""
        target = self.path / name
        return read_json(target) if target.exists() else None

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        with ctrl_c_deferred():
            _atomic_write(self.path / CHECKPOINT_FILE, lambda handle: _torch_save(state, handle))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict | None:
        """Our checkpoints hold tensors and plain Python only, so the safe loader reads them; a
        file that is empty, cut short or no checkpoint of ours is a ValueError naming it."""
        target = self.path / CHECKPOINT_FILE
        if not target.exists():
            return None
        try:
            state = torch.load(target, map_location=map_location, weights_only=True)
        except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
                AttributeError, KeyError, IndexError, TypeError) as error:
            raise ValueError(f"{target}: cannot be read as a checkpoint (empty, cut short, or not one of this "
                             f"package: {type(error).__name__}); restore it, or remove it and its records to "
                             "start the run anew") from None
        if not isinstance(state, dict):
            raise ValueError(f"{target}: holds {type(state).__name__}, not a checkpoint of this package")
        return state


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """A run's config.json: a ValueError naming the file when it is no JSON or no mapping."""
    settings = read_json(path)
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: holds {json_type(settings)}, not a mapping of settings")
    return settings


def _torch_save(state: dict, handle) -> None:
    """torch.save, with a failed write (a full disk) raised as the OSError it is: torch's zip writer
    otherwise replaces it, while closing, with a RuntimeError ("unexpected pos ...")."""
    try:
        torch.save(state, handle)
    except RuntimeError as error:
        cause = error.__context__
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is None:
            raise
        raise cause from None


def describe_load_error(error: BaseException) -> str:
    """The telling line of a `load_state_dict` error: torch opens with a generic header and lists
    every mismatch; the first specific one says enough (sizes shown as plain lists)."""
    if isinstance(error, KeyError):
        return f"no {error.args[0]!r} entry" if error.args else "an entry is missing"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    specific = [line for line in lines if not line.startswith("Error(s) in loading")]
    text = (specific or lines or [type(error).__name__])[0]
    return re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", text)[:200]


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """A Ctrl-C inside the block takes effect when the block ends, as KeyboardInterrupt. Around the
    checkpoint write: torch.save interrupted mid-record leaves its zip writer alive with a closed
    file, fails with a RuntimeError, and the process may later abort (SIGABRT) when the writer is
    destroyed; deferred, the checkpoint finishes (well under a second) and the generation is saved.
    Only where Python's own handler is installed (`analysis.cli.sigint_held`)."""
    with sigint_held() as pending:
        yield
    if pending:
        raise DeferredInterrupt("interrupted after the write finished")


class DeferredInterrupt(KeyboardInterrupt):
    """A Ctrl-C that arrived during a write `ctrl_c_deferred` protected, raised once the write had
    finished: what was being written is on disk."""
