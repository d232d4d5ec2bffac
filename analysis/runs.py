"""Load run directories written by emergent_frl (config.json + generations.jsonl) without torch.

A path given to these helpers is either one run directory or a tree that holds run directories
(a sweep's output), so `python -m analysis.plot sweeps/paper` works as well as a list of runs.

Every file is checked as it is read: a line that is not JSON, a record that is not an object or a
value that is not a number where a number is needed is a ValueError that names the file and the
line, so a command reports it in one line instead of a traceback from deep inside a plot.

Runs are grouped (plots, reports, comparisons) by experiment, never by strategy alone: runs pool as
seeds of one experiment only when their strategies agree and their configurations agree on every
field but those that are per-run by nature (seed, device, command line, paths, engine;
PER_RUN_FIELDS). A group's label is its strategy plus the fields that tell groups apart: the game
whenever the runs span games, and every field that differs between runs of one strategy, e.g.
"pbf (game=reconstruction)", "pbf (hidden_size=64)". A setting that differs only from strategy to
strategy (a sweep's per-strategy variant, such as reset_receiver's longer generations) is part of
what the strategy name stands for there and is left out of the label.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from dataclasses import dataclass
from typing import Any, Iterable

from emergent_frl.settings_history import saved_game_settings

from .cli import one_line

RECORDS_FILE = "generations.jsonl"
EVALUATIONS_FILE = "evaluations.jsonl"
CONFIG_FILE = "config.json"

# Config fields that say how or where a run was launched, not which experiment it belongs to.
PER_RUN_FIELDS = frozenset({"seed", "device", "argv", "out", "resume", "engine", "compile", "sweep_run", "preset",
                            "threads", "progress", "plot", "data_root", "workers", "versions",
                            "difficulty_probes", "wider_metrics"})
UNSET = "(unset)"  # a field one run's config lacks while another's has it
_PLAIN = re.compile(r"[\w.+\-/:]+")  # values shown without JSON quotes in a label


# -- reading files ---------------------------------------------------------------------------------
def describe(value: Any) -> str:
    """A value as JSON writes it, cut short: an error line names a bad value, never echoes it whole."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def json_type(value: Any) -> str:
    """'a list', 'a string', ... : what a JSON value is, for an error that expected something else."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (dict, "an object"), (list, "a list"), (str, "a string"),
                       ((int, float), "a number")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _parse(text: str, where: str) -> Any:
    """json.loads, with any failure (a syntax error, a 5,000-digit integer, nesting too deep) a
    ValueError that starts with `where`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"line {error.lineno} column {error.colno}" if "\n" in text.strip() else f"column {error.colno}"
        raise ValueError(f"{where} is not valid JSON ({error.msg} at {at})") from None
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{where} is not valid JSON ({one_line(error)})") from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value a whole file holds; a ValueError naming the file when it is empty, not UTF-8
    text or not JSON (OSErrors, such as a permission denied, pass through: a fault, not bad input)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise ValueError(f"{path} is empty")
    return _parse(text, str(path))


def read_object(path: str | os.PathLike) -> dict[str, Any]:
    """`read_json` of a file that must hold one JSON object (config.json, language.json, probe.json)."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds {json_type(value)}, not a JSON object")
    return value


def read_records(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-blank line of a JSON-lines file (generations.jsonl,
    evaluations.jsonl); a ValueError naming the file and line of the first bad one."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing or not a file")
    records = []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: line {number} is not UTF-8 text (byte {error.start})") from None
        if not line.strip():
            continue
        record = _parse(line, f"{path}: line {number}")
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is {json_type(record)}, not a JSON object")
        records.append((number, record))
    return records


def read_config(run_dir: pathlib.Path) -> dict[str, Any]:
    """A run's config.json, checked where analysis relies on it (strategy, game: strings; seed: an
    integer or a string). A run without one cannot be grouped safely, so it is an error."""
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise ValueError(f"{path} is missing: analysis groups runs by their configuration "
                         "(write {} there if it is unknown)")
    config = read_object(path)
    for key in ("strategy", "game"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ValueError(f"{path}: '{key}' is {describe(config[key])}, not a string")
    _check_seed(config.get("seed"), str(path))
    # A run older than a knob is filed under the value it trained with, beside identical new runs.
    return saved_game_settings(config)


def _check_seed(seed: Any, where: str) -> None:
    """Seeds pair runs in a comparison, so they must be integers (or names), never lists or numbers
    with fractions."""
    if seed is None or isinstance(seed, str) or (isinstance(seed, int) and not isinstance(seed, bool)):
        return
    raise ValueError(f"{where}: 'seed' is {describe(seed)}, not an integer")


# -- runs ----------------------------------------------------------------------------------------
def find_runs(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """Every run directory at or below the given paths, sorted, each once (a path may also be a
    run's generations.jsonl or config.json)."""
    found: set[pathlib.Path] = set()
    for raw in paths:
        path = pathlib.Path(raw)
        if not path.exists():
            raise ValueError(f"run directory {path} does not exist")
        if path.is_file():
            if path.name not in (RECORDS_FILE, CONFIG_FILE):
                raise ValueError(f"{path} is a file, not a run directory or a folder of runs")
            path = path.parent
        if (path / RECORDS_FILE).is_file():
            found.add(path)
            continue
        found.update(p.parent for p in path.rglob(RECORDS_FILE) if p.is_file())
    return sorted(found)


def require_runs(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
    """`find_runs`, or a ValueError naming the paths when they hold no run at all."""
    paths = list(paths)
    found = find_runs(paths)
    if not found:
        raise ValueError(f"runs: no {RECORDS_FILE} found under {' '.join(map(str, paths))}")
    return found


def load_run(path: str | os.PathLike) -> dict[str, Any]:
    """{'path', 'config', 'records', 'lines'} of one run: the parsed records in order and the line of
    generations.jsonl each came from (so an error about a record can say where it is)."""
    path = pathlib.Path(path)
    config = read_config(path)
    numbered = read_records(path / RECORDS_FILE)
    return {"path": path, "config": config, "records": [record for _, record in numbered],
            "lines": [line for line, _ in numbered]}


def load_runs(run_dirs: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    return [load_run(path) for path in run_dirs]


def load_evaluations(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A run's evaluations.jsonl (the greedy evaluations between generations), checked like its
    generations.jsonl; [] for a run that evaluated only at generation ends."""
    file = pathlib.Path(path) / EVALUATIONS_FILE
    return [record for _, record in read_records(file)] if file.exists() else []


def require_records(runs: list[dict[str, Any]]) -> None:
    """A ValueError when no run has recorded a generation yet (nothing to plot or report); runs of
    a sweep still in progress may be empty as long as one is not."""
    if runs and not any(run["records"] for run in runs):
        raise ValueError(f"runs: no generation recorded yet: {RECORDS_FILE} is empty in all {len(runs)} runs "
                         f"(e.g. {runs[0]['path']})")


# -- record values -----------------------------------------------------------------------------------
def where(run: dict[str, Any], index: int) -> str:
    """'RUN/generations.jsonl: line N' of the run's record `index` (the run's "file" when it names
    another, e.g. evaluations.jsonl)."""
    lines = run.get("lines")
    file = pathlib.Path(run["path"]) / run.get("file", RECORDS_FILE)  # evaluations name their own file
    if lines is not None and index < len(lines):
        return f"{file}: line {lines[index]}"
    return f"{file}: record {index + 1}"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(run: dict[str, Any], index: int, key: str) -> float | None:
    """Record `index`'s `key` as a float (nan and inf kept), None when absent or null (a metric that
    had no value, as nan is written); a ValueError naming the file and line for any other type."""
    value = run["records"][index].get(key)
    if value is None:
        return None
    if not is_number(value):
        raise ValueError(f"{where(run, index)}: '{key}' is {describe(value)}, not a number")
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float
        return math.inf if value > 0 else -math.inf


def position(run: dict[str, Any], index: int, x: str) -> float | None:
    """Record `index`'s place on the x axis: None when the record lacks `x`; null is an error (every
    record that has a generation or iteration has a number there)."""
    record = run["records"][index]
    if x in record and record[x] is None:
        raise ValueError(f"{where(run, index)}: '{x}' is null, not a number")
    at = number(run, index, x)
    if at is not None and not math.isfinite(at):
        raise ValueError(f"{where(run, index)}: '{x}' is {describe(record[x])}, not a finite number")
    return at


def points(run: dict[str, Any], metric: str, x: str | None = None) -> list[tuple[float | None, float]]:
    """(x, value) of every record with a number under `metric` (x None when not asked or absent)."""
    out = []
    for i in range(len(run["records"])):
        value = number(run, i, metric)
        if value is not None:
            out.append((position(run, i, x) if x is not None else None, value))
    return out


def numeric_keys(runs: list[dict[str, Any]]) -> list[str]:
    """The record keys that hold a number in some record, in the order records list them."""
    keys: dict[str, None] = {}
    for run in runs:
        for record in run["records"]:
            keys.update((k, None) for k, v in record.items() if is_number(v))
    return list(keys)


def require_key(runs: list[dict[str, Any]], key: str, flag: str, *, numeric: bool = True) -> None:
    """A ValueError naming `flag` and the keys that could be used when no run records a number under
    `key` (a typo would otherwise give an empty plot or a column of dashes). With `numeric=False`,
    a key recorded only as null passes (the library's lenient check; the commands are strict)."""
    recorded = numeric_keys(runs)
    if key in recorded or (not numeric and any(key in r for run in runs for r in run["records"])):
        return
    raise ValueError(f"{flag} {key!r}: no run records a number under it; recorded keys are "
                     f"{', '.join(recorded) or 'none'}")


def truncate_runs(runs: list[dict[str, Any]], until: float | None, x: str = "iteration") -> list[dict[str, Any]]:
    """The runs as they stood at `x` = `until`: each keeps its records with x <= until (all when
    `until` is None), so a long run can be compared with shorter ones at their length."""
    if until is None:
        return runs
    out = []
    for run in runs:
        keep = [i for i in range(len(run["records"])) if (at := position(run, i, x)) is not None and at <= until]
        lines = run.get("lines")
        out.append({**run, "records": [run["records"][i] for i in keep],
                    **({"lines": [lines[i] for i in keep]} if lines is not None else {})})
    if any(run["records"] for run in runs) and not any(run["records"] for run in out):
        raise ValueError(f"--until {until:g}: no run has a record with {x} <= {until:g}")
    return out


# -- grouping --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """The experiment a run belongs to: its strategy and the values, as text, of the config fields
    that tell the groups at hand apart (game first); `label` names it in tables and legends."""

    strategy: str
    fields: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        if not self.fields:
            return self.strategy
        return f"{self.strategy} ({', '.join(f'{k}={v}' for k, v in self.fields)})"


def _canonical(value: Any) -> Any:
    """`value` with whole floats as ints, nested too: a config written from YAML (1) and one from a
    flag (1.0) hold the same setting and must land in one group."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    """A config value as a label shows it: plain words bare, anything else as compact JSON, with the
    markdown table separator escaped."""
    plain = isinstance(value, str) and _PLAIN.fullmatch(value)
    text = value if plain else json.dumps(_canonical(value), sort_keys=True)
    return text.replace("|", "\\|")


def strategy_of(run: dict[str, Any]) -> str:
    """The run's strategy: its config's, else its first record's, else 'unknown'."""
    strategy = run["config"].get("strategy")
    if strategy is None and run["records"]:
        strategy = run["records"][0].get("strategy")
        if strategy is not None and not isinstance(strategy, str):
            raise ValueError(f"{where(run, 0)}: 'strategy' is {describe(strategy)}, not a string")
    return _text(strategy) if strategy else "unknown"


def experiment_fields(config: dict[str, Any]) -> dict[str, str]:
    """The config fields that define a run's experiment, as text: all but the per-run ones, the
    strategy (the label's head) and the total 'iterations' where generations x iterations per
    generation already say it."""
    fields = {k: _text(v) for k, v in config.items() if k not in PER_RUN_FIELDS and k != "strategy"}
    if "generations" in fields and "iterations_per_generation" in fields:
        fields.pop("iterations", None)
    return fields


def run_groups(runs: list[dict[str, Any]]) -> list[Group]:
    """The group of each run: runs share a group only when their strategies and every experiment
    field agree, so runs of another game, size or length never pool with the rest.

    Runs of one strategy that differ in a field are told apart by it, so that field is in every
    label; a field constant within each strategy only follows the strategy and stays out (but the
    game is always named when the runs span games: a cross-game comparison is never the point)."""
    per_run = [experiment_fields(run["config"]) for run in runs]
    strategies = [strategy_of(run) for run in runs]
    by_strategy: dict[str, list[dict[str, str]]] = {}
    for strategy, fields in zip(strategies, per_run):
        by_strategy.setdefault(strategy, []).append(fields)

    def varies(name: str, among: list[dict[str, str]]) -> bool:
        return len({fields.get(name, UNSET) for fields in among}) > 1

    names = {k for fields in per_run for k in fields}
    shown = sorted((k for k in names if (k == "game" and varies(k, per_run))
                    or any(varies(k, among) for among in by_strategy.values())), key=lambda k: (k != "game", k))
    return [Group(strategy, tuple((k, fields.get(k, UNSET)) for k in shown))
            for strategy, fields in zip(strategies, per_run)]


def run_labels(runs: list[dict[str, Any]]) -> list[str]:
    """The label of each run's group (see `run_groups`), computed over all `runs` together."""
    return [group.label for group in run_groups(runs)]


def differing_fields(runs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every experiment field (the strategy included) that takes more than one value among `runs`,
    with its values as labels show them, sorted: what a figure or report over these runs compares,
    including settings that only follow the strategy and so stay out of the labels."""
    per_run = [{"strategy": strategy_of(run), **experiment_fields(run["config"])} for run in runs]
    names = sorted({k for fields in per_run for k in fields}, key=lambda k: (k not in ("game", "strategy"), k))
    out = {}
    for name in names:
        values = sorted({fields.get(name, UNSET) for fields in per_run})
        if len(values) > 1:
            out[name] = values
    return out


def differences_note(runs: list[dict[str, Any]], *, limit: int = 160) -> str:
    """One line for under a figure: 'configs differ in: strategy (no_reset, pbf); hidden_size (16,
    64)', or 'one configuration (game=referential)' when the runs share all experiment fields."""
    differing = differing_fields(runs)
    if not differing:
        game = {run["config"].get("game") for run in runs} - {None}
        return f"one configuration{f' (game={game.pop()})' if len(game) == 1 else ''}, {len(runs)} run(s)"
    text = "configs differ in: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in differing.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_seed(run: dict[str, Any]) -> Any:
    """The run's seed: its config's, else its first record's (checked: an integer or a name)."""
    if "seed" in run["config"]:
        return run["config"]["seed"]
    seed = run["records"][0].get("seed") if run["records"] else None
    _check_seed(seed, where(run, 0))
    return seed


def load_table(paths: Iterable[str | os.PathLike], *, as_frame: bool | None = None):
    """One row per (run, generation) with the run's path, label and seed beside the record fields.

    Returns a pandas DataFrame when pandas is importable (or `as_frame=True`), else a list of dicts.
    """
    runs = load_runs(find_runs(paths))
    rows = []
    for run, label in zip(runs, run_labels(runs)):
        for record in run["records"]:
            row = {"run": str(run["path"]), "label": label, "seed": run["config"].get("seed")}
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
