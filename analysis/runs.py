"""Load run directories written by emergent_frl (config.json + generations.jsonl) without torch.

A path given to these helpers is either one run directory or a tree that holds run directories
(a sweep's output), so `python -m analysis.plot sweeps/paper` works as well as a list of runs.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Iterable

RECORDS_FILE = "generations.jsonl"
CONFIG_FILE = "config.json"


def find_runs(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Every run directory at or below the given paths, sorted, each once."""
    found: set[pathlib.Path] = set()
    for raw in paths:
        path = pathlib.Path(raw)
        if not path.exists():
            raise ValueError(f"run directory {path} does not exist")
        if (path / RECORDS_FILE).is_file():
            found.add(path)
            continue
        found.update(p.parent for p in path.rglob(RECORDS_FILE))
    return sorted(found)


def require_runs(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """`find_runs`, or a ValueError naming the paths when they hold no run at all."""
    found = find_runs(paths)
    if not found:
        raise ValueError(f"runs: no {RECORDS_FILE} found under {' '.join(map(str, paths))}")
    return found


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """{'path', 'config', 'records'} of one run; records are the parsed JSON lines in order."""
    path = pathlib.Path(path)
    config_file = path / CONFIG_FILE
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    records_file = path / RECORDS_FILE
    records = []
    if records_file.is_file():
        records = [json.loads(line) for line in records_file.read_text().splitlines() if line.strip()]
    return {"path": path, "config": config, "records": records}


def truncate_runs(runs: list[dict[str, Any]], until: float | None, x: str = "iteration") -> list[dict[str, Any]]:
    """The runs as they stood at `x` = `until`: each keeps its records with x <= until (all when
    `until` is None), so a long run can be compared with shorter ones at their length."""
    if until is None:
        return runs
    return [{**run, "records": [r for r in run["records"] if r.get(x) is not None and r[x] <= until]}
            for run in runs]


def run_label(run: dict[str, Any]) -> str:
    """The group a run belongs to in plots and reports: its strategy (plus game kind if mixed)."""
    config = run["config"]
    first = run["records"][0] if run["records"] else {}
    return str(first.get("strategy") or config.get("strategy") or "unknown")


def load_table(paths: Iterable[str | os.PathLike], *, as_frame: bool | None = None):
    """One row per (run, generation) with the run's path, label and seed beside the record fields.

    Returns a pandas DataFrame when pandas is importable (or `as_frame=True`), else a list of dicts.
    """
    rows = []
    for run_dir in find_runs(paths):
        run = load_run(run_dir)
        label = run_label(run)
        for record in run["records"]:
            row = {"run": str(run_dir), "label": label, "seed": run["config"].get("seed")}
            row.update(record)
            rows.append(row)
    if as_frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if as_frame:
            raise ValueError("as_frame=True needs pandas: pip install pandas") from None
        return rows
    return pd.DataFrame(rows)
