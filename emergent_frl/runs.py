"""Run directories: config, per-generation records, checkpoints, resume.

Every run, language or image, writes the same layout so the analysis commands read any of them:

    RUN_DIR/config.json        the full, validated configuration
    RUN_DIR/generations.jsonl  one JSON object per generation (appended as generations finish)
    RUN_DIR/checkpoint.pt      everything needed to continue after the last finished generation
    RUN_DIR/*.json             other artefacts (language.json, probe.json, ...)

Every write goes to a temporary file in the same folder and is renamed over the target, so a crash
(even SIGKILL) leaves either the old file or the new one, never half a line or a truncated checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import secrets
from typing import Any

import torch

CONFIG_FILE = "config.json"
RECORDS_FILE = "generations.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"


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


def _atomic_write(path: pathlib.Path, write) -> None:
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


class RunDirectory:
    """One run's folder. Refuses to overwrite an existing run unless asked to resume it."""

    def __init__(self, path: str | os.PathLike, *, resume: bool = False):
        self.path = pathlib.Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"--out: {self.path} exists and is not a directory")
        has_records = (self.path / RECORDS_FILE).exists() or (self.path / CHECKPOINT_FILE).exists()
        if has_records and not resume:
            raise ValueError(
                f"--out: {self.path} already holds a run; pass --resume {self.path} to continue it "
                "or choose another directory"
            )
        if resume and not self.path.is_dir():
            raise ValueError(f"--resume: {self.path} is not a run directory")
        self.path.mkdir(parents=True, exist_ok=True)
        if resume:
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Temporary files left by a write that was killed before its rename: never read, so drop them."""
        for stale in self.path.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)

    # config -----------------------------------------------------------------------------------
    def write_config(self, config: dict) -> None:
        atomic_write_text(self.path / CONFIG_FILE, json.dumps(to_jsonable(config), indent=2) + "\n")

    def read_config(self) -> dict | None:
        return self.read_json(CONFIG_FILE)

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
        target = self.path / name
        if not target.exists():
            return []
        return [json.loads(line) for line in target.read_text().splitlines() if line.strip()]

    def truncate_records(self, n: int, name: str = RECORDS_FILE) -> None:
        """Keep the first `n` records: on resume, records written after the last checkpoint are redone."""
        records = self.records(name)[:n]
        atomic_write_text(self.path / name, "".join(dumps(r) + "\n" for r in records))

    # other artefacts --------------------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_text(self.path / name, json.dumps(to_jsonable(obj), indent=1) + "\n")

    def read_json(self, name: str) -> Any:
        target = self.path / name
        return json.loads(target.read_text()) if target.exists() else None

    # checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        _atomic_write(self.path / CHECKPOINT_FILE, lambda handle: torch.save(state, handle))

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict | None:
        """Our checkpoints hold tensors and plain Python only, so the safe loader reads them."""
        target = self.path / CHECKPOINT_FILE
        if not target.exists():
            return None
        return torch.load(target, map_location=map_location, weights_only=True)
