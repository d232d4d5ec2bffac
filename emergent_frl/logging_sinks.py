"""Scalars of a run's records, written to TensorBoard and/or Weights & Biases as they happen.

The run directory's JSON lines stay the record of truth; a sink only mirrors them so that a
researcher can watch forgetting and relearning live in the tools they already use. Both backends
are optional (`pip install -e ".[log]"`): a missing one is a one-line ValueError from
`check_available`, which a script calls with its flags before any work starts.

    sinks = open_sinks("runs/tb", wandb=False, run_name="referential-pbf", config=values,
                       runs=["seed0", "seed1"])          # one TensorBoard folder per run: runs/tb/seed0, ...
    sinks.evaluation(0, {"iteration": 1000, "generation": 0, "accuracy": 0.6, "topsim": 0.4})
    sinks.generation(0, {"iteration": 3000, "generation": 0, "topsim_after_forgetting": 0.3})
    sinks.close()

Tags: `eval/KEY` for an evaluation record's scalars, `generation/KEY` for a generation record's,
and `generation` (the generation index) from both; the step is the record's `iteration` (the
language games; `open_sinks(..., step="epoch")` for the image track's records). None, nan, inf,
booleans and non-numbers are skipped; the step key and `seed` (the run's name says it) are not
written as scalars.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
import os
import pathlib
from typing import Any, Mapping, Protocol, Sequence

INSTALL_HINT = 'pip install -e ".[log]"'
NOT_SCALARS = frozenset({"seed"})  # a constant the run's name carries (the step key is left out too)
DEFAULT_PROJECT = "emergent-frl"


class _Backend(Protocol):
    def write(self, run: int, tags: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_available(tensorboard: str | os.PathLike | None, wandb: bool) -> None:
    """ValueError (one line, naming the flag and the extra to install) when a requested backend is
    not installed, or --tensorboard names no usable folder. Reads only; call it before any work."""
    if tensorboard is not None:
        if str(tensorboard).strip() == "":
            raise ValueError("--tensorboard '': give a directory for the event files")
        path = pathlib.Path(tensorboard)
        if path.exists() and not path.is_dir():
            raise ValueError(f"--tensorboard {path}: exists and is not a directory")
        if not _installed("tensorboard"):
            raise ValueError(f"--tensorboard: the tensorboard package is not installed; {INSTALL_HINT}")
    if wandb and not _installed("wandb"):
        raise ValueError(f"--wandb: the wandb package is not installed; {INSTALL_HINT}")


def scalars(record: Mapping[str, Any], step: str = "iteration") -> dict[str, float]:
    """The finite numeric values of a record but its step and seed, as floats (booleans and strings
    are no metrics)."""
    out = {}
    for key, value in record.items():
        if key == step or key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if math.isfinite(value):
            out[key] = value
    return out


def _tags(prefix: str, record: Mapping[str, Any], step_key: str) -> tuple[dict[str, float], int]:
    """(tag -> value, step) of one record; ValueError when it has no integer step."""
    step = record.get(step_key)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ValueError(f"a {prefix} record needs an integer {step_key!r} (the step); got {step!r}")
    tags = {("generation" if key == "generation" else f"{prefix}/{key}"): value
            for key, value in scalars(record, step_key).items()}
    return tags, int(step)


class _TensorBoard:
    """One SummaryWriter per run: DIR itself for a single run, DIR/NAME for each run of a batch."""

    def __init__(self, directory: str | os.PathLike, names: Sequence[str] | None):
        from torch.utils.tensorboard import SummaryWriter

        root = pathlib.Path(directory)
        folders = [root] if names is None else [root / name for name in names]
        self.writers = [SummaryWriter(log_dir=str(folder)) for folder in folders]

    def write(self, run: int, tags: Mapping[str, float], step: int) -> None:
        writer = self.writers[run]
        for tag, value in tags.items():
            writer.add_scalar(tag, value, global_step=step)
        writer.flush()  # a live view, and nothing lost if the run is killed

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class _Wandb:
    """One wandb run per run of the batch, grouped under the batch's name; the step key is each
    metric's x-axis (so evaluation and generation records may interleave at equal steps)."""

    def __init__(self, run_name: str, names: Sequence[str] | None, configs: list[dict[str, Any]],
                 project: str | None, directory: str | os.PathLike | None, step_key: str):
        self.step_key = step_key
        import wandb

        project = project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT
        if directory is not None:
            pathlib.Path(directory).mkdir(parents=True, exist_ok=True)
        self.runs = []
        try:
            for i, config in enumerate(configs):
                name = run_name if names is None else f"{run_name}/{names[i]}"
                run = wandb.init(project=project, name=name, group=None if names is None else run_name,
                                 config=config, dir=None if directory is None else str(directory),
                                 reinit="create_new")
                self.runs.append(run)
                run.define_metric(step_key)
                run.define_metric("*", step_metric=step_key)
        except BaseException:
            self.close()
            raise

    def write(self, run: int, tags: Mapping[str, float], step: int) -> None:
        self.runs[run].log({self.step_key: step, **tags})

    def close(self) -> None:
        for run in self.runs:
            run.finish()


@dataclasses.dataclass
class Sinks:
    """The open backends of one launch (one process, one or several runs). Run indices are
    positions in the `runs` list given to `open_sinks` (0 for a single run); with no backend every
    call does nothing, so a script can call it unconditionally."""

    backends: list[_Backend]
    n_runs: int
    step: str = "iteration"

    def evaluation(self, run: int, record: Mapping[str, Any]) -> None:
        """Mirror one evaluation record (evaluations.jsonl) of run `run`."""
        self._write("eval", run, record)

    def generation(self, run: int, record: Mapping[str, Any]) -> None:
        """Mirror one generation record (generations.jsonl) of run `run`."""
        self._write("generation", run, record)

    def _write(self, prefix: str, run: int, record: Mapping[str, Any]) -> None:
        if not self.backends:
            return
        if isinstance(run, bool) or not isinstance(run, int) or not 0 <= run < self.n_runs:
            raise ValueError(f"run {run!r}: allowed range is 0..{self.n_runs - 1}")
        tags, step = _tags(prefix, record, self.step)
        for backend in self.backends:
            backend.write(run, tags, step)

    def close(self) -> None:
        """Flush and close every backend (wandb: finish its runs); safe to call twice."""
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.close()

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_sinks(tensorboard: str | os.PathLike | None, wandb: bool, *, run_name: str,
               config: Mapping[str, Any] | Sequence[Mapping[str, Any]],
               runs: Sequence[str] | None = None, step: str = "iteration", wandb_project: str | None = None,
               wandb_dir: str | os.PathLike | None = None) -> Sinks:
    """Open the requested backends for one launch.

    tensorboard: event-file folder (None = off); wandb: log to Weights & Biases (WANDB_MODE=offline
    honoured). run_name: the launch's name (wandb run name, or group with several runs). config:
    the settings recorded with each wandb run, one mapping for all runs or one per run. runs: the
    names of the runs of a batch, e.g. ["seed0", "seed1"] (TensorBoard DIR/seed0, ...; wandb
    RUN_NAME/seed0, ... grouped as RUN_NAME); None = one run, written to DIR itself. step: the
    record key used as the step ("iteration" for the language games, "epoch" for the image track).
    wandb_project: default $WANDB_PROJECT, else "emergent-frl"; wandb_dir: where wandb keeps its
    files (default its own, ./wandb or $WANDB_DIR).
    """
    check_available(tensorboard, wandb)
    if runs is not None:
        runs = [str(name) for name in runs]
        if not runs or len(set(runs)) != len(runs) or any(not n or "/" in n or n in (".", "..") for n in runs):
            raise ValueError(f"runs {runs}: give distinct, non-empty folder names (no '/')")
    n_runs = 1 if runs is None else len(runs)
    if isinstance(config, Mapping):
        configs = [dict(config) for _ in range(n_runs)]
    else:
        configs = [dict(c) for c in config]
        if len(configs) != n_runs:
            raise ValueError(f"config: {len(configs)} mappings for {n_runs} runs; give one, or one per run")
    backends: list[_Backend] = []
    try:
        if tensorboard is not None:
            backends.append(_TensorBoard(tensorboard, runs))
        if wandb:
            backends.append(_Wandb(run_name, runs, configs, wandb_project, wandb_dir, step))
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    return Sinks(backends, n_runs, step)
