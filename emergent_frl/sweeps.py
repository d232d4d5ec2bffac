"""Sweeps: many language runs, on this machine (a process pool) or on a Ray cluster.

A sweep is a list of `SweepRun`s, each a validated flat config (see `relearn.split_config`) and a
directory name under the sweep's output folder. `run_sweep` runs them on an existing engine,
never a home-made scheduler:

    runs = [SweepRun("pbf/seed0", config0), SweepRun("pbf/seed1", config1)]
    summary = run_sweep(runs, "sweeps/demo", backend="local", workers=2)    # ProcessPoolExecutor
    summary = run_sweep(runs, "sweeps/demo", backend="ray", address="auto")  # Ray tasks
    print(summary.report())

- Every run writes an ordinary run directory (`OUT/<name>/config.json, generations.jsonl, ...`),
  so the analysis commands read the whole tree: `python -m analysis.plot OUT --x iteration`.
- Re-launching skips finished runs (records reach `generations`) and resumes unfinished ones from
  their checkpoint; a directory holding a run with other settings stops the sweep before any work.
- On the batched engine (the default, as in the game scripts) the runs that share a game shape
  (`batch_key`) are trained together, up to `batch` runs per worker task, split so that every
  worker gets work; runs started on the reference engine go on alone, on that engine.
- A failed run is reported with its error. Crashes (a killed worker, an OSError, any unexpected
  exception) are retried up to `retries` times, each retry resuming from the last checkpoint; bad
  input (ValueError) and diverged runs (NonFiniteError) are deterministic and are not retried.
- A sweep never leaves workers behind: Ctrl-C or SIGTERM (a scheduler's time limit) ends the
  local workers at once, and a worker whose sweep process died (SIGKILL) ends itself, so a relaunch
  never trains a run beside an orphan. A relaunch also refuses, before any work, a run directory
  that another live process still holds (its lock, see `emergent_frl.runs.RunLock`).

The grid file format (product of lists, presets, per-strategy variants) lives in `games/sweep.py`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import json
import math
import multiprocessing
import os
import pathlib
import reprlib
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

from tqdm.auto import tqdm

from emergent_frl.batched import ENGINES, DivergedRuns, batch_key, recorded_engine, run_language_batched
from emergent_frl.compiling import compile_mode
from emergent_frl.relearn import NonFiniteError, run_language, split_config
from emergent_frl.runs import (
    CHECKPOINT_FILE, CONFIG_FILE, RECORDS_FILE, atomic_write_text, describe_os_error, lock_holder, to_jsonable,
)
from emergent_frl.settings_history import saved_game_settings
from emergent_frl.training import ConfigError

BACKENDS = ("local", "ray")
# A finished task's results: one per run, or one failure for the whole task (its worker died).
TaskResult = list[dict[str, Any]] | dict[str, Any]
DEFAULT_BATCH = 16  # runs per batch: where a CPU core's batched runs come closest to its matmul peak
SWEEP_FILE = "sweep.json"
DIST_HINT = 'pip install -e ".[dist]"'
# Keys that may differ between a run directory's config.json and the sweep's config of that run:
# generations (a longer sweep extends finished runs) and the device (resuming elsewhere is fine).
_MAY_DIFFER = ("generations", "device")
SHOWN = 80  # characters of a value quoted in an error message: a huge one is cut, never echoed whole
PARENT_POLL = 0.2  # seconds between a worker's checks that its sweep process is still alive
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class SweepError(ValueError):
    """Bad sweep input found before any work: the message names the grid key or run at fault."""


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlist, _REPR.maxdict = SHOWN, SHOWN, SHOWN, 8, 6


def shorten(value: Any, limit: int = SHOWN) -> str:
    """repr(value) in at most `limit` characters: reprlib bounds the work too, so quoting a value of
    a million elements costs nothing."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its directory under the sweep's output and its flat config."""

    name: str
    config: dict[str, Any]

    def validated(self) -> "SweepRun":
        game, relearn = split_config(self.config)
        game.validate()
        relearn.validate()
        return SweepRun(self.name, {**game.to_dict(), **relearn.to_dict()})


@dataclass
class Outcome:
    name: str
    status: str  # "finished" (ran now), "skipped" (was finished), "failed"
    attempts: int = 0
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None


@dataclass
class SweepSummary:
    out: pathlib.Path
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def report(self) -> str:
        lines = [f"sweep {self.out}: {self.count('finished')} finished, {self.count('skipped')} skipped, "
                 f"{self.count('failed')} failed"]
        lines += [f"  failed {o.name} after {o.attempts} attempt(s): {o.error}" for o in self.failed]
        lines.append(f"plot: python -m analysis.plot {self.out} --x iteration")
        return "\n".join(lines)


# -- the state of one run directory ---------------------------------------------------------------
def _count_records(path: pathlib.Path) -> int:
    records = path / RECORDS_FILE
    if not records.is_file():
        return 0
    return sum(1 for line in records.read_text().splitlines() if line.strip())


def run_state(path: str | os.PathLike, config: dict[str, Any]) -> str:
    """'new', 'partial' (resume it) or 'finished' (skip it) for the run `config` at `path`.

    Raises SweepError when `path` exists but is no directory, is being written by another live
    process (an earlier sweep's worker, say), or holds a run with other settings.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise SweepError(f"{path}: exists and is not a directory")
    holder = lock_holder(path)
    if holder is not None:
        raise SweepError(f"{path}: another process (PID {holder}) is writing this run; "
                         "wait for it to finish or stop it, then run the sweep again")
    started = any((path / name).exists() for name in (CONFIG_FILE, RECORDS_FILE, CHECKPOINT_FILE))
    if not started:
        return "new"
    try:
        saved = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
    except (OSError, ValueError) as error:
        raise SweepError(f"{path}: unreadable {CONFIG_FILE} ({error})") from None
    if not isinstance(saved, dict):
        raise SweepError(f"{path}: {CONFIG_FILE} holds no mapping of settings")
    saved = saved_game_settings(saved)
    differing = sorted(k for k, v in config.items()
                       if k in saved and k not in _MAY_DIFFER and saved[k] != to_jsonable(v))
    if differing:
        details = ", ".join(f"{k}={shorten(saved[k])} there, {shorten(config[k])} here" for k in differing[:4])
        raise SweepError(f"{path}: holds a run with other settings ({details}); "
                         "choose another --out or remove that directory")
    return "finished" if _count_records(path) >= config["generations"] else "partial"


# -- one run, in a worker process -----------------------------------------------------------------
def _failure(error: BaseException, *, retry: bool, tb: str | None = None) -> dict[str, Any]:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return {"ok": False, "retry": retry, "error": f"{type(error).__name__}: {message}".rstrip(": "),
            "traceback": tb}


def _done(path: str, *, skipped: bool, started: float) -> dict[str, Any]:
    """A run's result when it finished now or was finished already (`skipped`)."""
    return {"ok": True, "skipped": skipped, "generations": _count_records(pathlib.Path(path)),
            "seconds": time.perf_counter() - started}


def run_one(name: str, config: dict[str, Any], path: str, threads: int = 1) -> dict[str, Any]:
    """Run (or resume, or skip) one run directory; never raises: returns {'ok': ...} as plain data,
    so results cross process and Ray boundaries whatever the exception type."""
    started = time.perf_counter()
    try:
        import torch

        torch.set_num_threads(threads)
        state = run_state(path, config)
        if state != "finished":
            run_language(config, path, resume=state == "partial", progress=False,
                         launch={"sweep_run": name, "engine": "reference"})
        return _done(path, skipped=state == "finished", started=started)
    except (ValueError, NonFiniteError) as error:  # bad input or divergence: the same every time
        return _failure(error, retry=False, tb=traceback.format_exc())
    except Exception as error:  # noqa: BLE001 - a crash: reported, and retried from the checkpoint
        return _failure(error, retry=True, tb=traceback.format_exc())


def run_batch(names: list[str], configs: list[dict[str, Any]], paths: list[str], threads: int = 1,
              compile: bool | str = "auto") -> list[dict[str, Any]]:
    """Run (or resume, or skip) runs of one shape as one batch on the batched engine; never raises:
    returns one `run_one`-style result per run. Runs interrupted earlier resume together, new runs
    start together; a run that diverges fails alone, the others finish."""
    started = time.perf_counter()
    results: list[dict[str, Any] | None] = [None] * len(names)
    try:
        import torch

        torch.set_num_threads(threads)
        states = [run_state(path, config) for path, config in zip(paths, configs)]
        for i, state in enumerate(states):
            if state == "finished":
                results[i] = _done(paths[i], skipped=True, started=started)
        for state in ("partial", "new"):
            members = [i for i, s in enumerate(states) if s == state]
            if not members:
                continue
            launches = [{"sweep_run": names[i], "engine": "batched", "compile": compile} for i in members]
            try:
                run_language_batched([configs[i] for i in members], [paths[i] for i in members],
                                     resume=state == "partial", progress=False, launch=launches, compile=compile)
                diverged: dict[int, NonFiniteError] = {}
            except DivergedRuns as error:
                diverged = error.errors
            except NonFiniteError as error:  # a batch of one
                diverged = {0: error}
            for j, i in enumerate(members):
                error = diverged.get(j)
                results[i] = (_failure(error, retry=False, tb="".join(traceback.format_exception(error)))
                              if error is not None else _done(paths[i], skipped=False, started=started))
        return results  # type: ignore[return-value]
    except Exception as error:  # noqa: BLE001 - every run not done yet fails with it
        failure = _failure(error, retry=not isinstance(error, ValueError), tb=traceback.format_exc())
        return [result or failure for result in results]


def run_task(engine: str, names: list[str], configs: list[dict[str, Any]], paths: list[str],
             threads: int = 1, compile: bool | str = "auto") -> list[dict[str, Any]]:
    """One worker task: a single run on the reference engine, or a batch on the batched engine."""
    if engine == "reference":
        return [run_one(name, config, path, threads) for name, config, path in zip(names, configs, paths)]
    return run_batch(names, configs, paths, threads, compile)


# -- worker processes that never outlive their sweep ----------------------------------------------
def _die_with_parent() -> None:
    """Linux: the kernel SIGKILLs this worker when the thread that started it ends. Workers are
    started by the sweep's own thread (which waits in `run_sweep` until the pool is closed) or by
    the pool's manager thread (which ends only after it has joined or terminated every worker),
    so this fires only when the sweep process itself is gone. Best effort: the watchdog thread
    (`_watch_parent`) is the guard on every platform."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _watch_parent(parent: int) -> None:
    """End this worker at once when its sweep process is gone (it was SIGKILLed or crashed): the
    worker is then re-parented, so its parent PID changes. A relaunch resumes the run from its
    checkpoint; an orphan training beside it would write the same records twice."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def _thread_lock_for_bars() -> None:
    """tqdm gives every process a multiprocessing lock for its bars, a named semaphore; a worker
    ended by Ctrl-C or SIGTERM cannot remove it, and the resource tracker then warns about it on
    the sweep's stderr. A worker's bars are off and its own: a thread lock serves."""
    try:
        from tqdm.std import tqdm
    except ImportError:
        return
    tqdm.set_lock(threading.RLock())


def start_worker(parent: int) -> None:
    """Pool initializer of every local worker: it dies with `parent` (the sweep process), and
    leaves Ctrl-C to the sweep, which ends its workers itself (`LocalBackend.abort`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # `abort` ends workers with SIGTERM, whatever was inherited
    _thread_lock_for_bars()
    _die_with_parent()
    if os.getppid() != parent:  # the sweep died while this worker started
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="sweep-parent-watch", daemon=True).start()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM (a batch scheduler's time limit, `kill`) raises KeyboardInterrupt
    in the main thread, as Ctrl-C does, so the sweep ends its workers and says how to resume
    instead of dying silently beside them. A handler someone else installed is left alone; the
    previous one comes back after the block."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM do nothing for a moment (main thread only): a second Ctrl-C must not cut
    short the ending of the workers that the first one asked for. A Python handler, not SIG_IGN,
    which a worker started meanwhile would inherit and then ignore SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- backends: submit a task, wait for any to finish ----------------------------------------------
class LocalBackend:
    """A `concurrent.futures.ProcessPoolExecutor` (spawn) with `workers` processes on this machine;
    each worker dies with this process (`start_worker`)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        # children this process had before: not ours to end in `abort`
        self.others = {child.pid for child in multiprocessing.active_children()}

    @property
    def slots(self) -> int:
        """How many tasks run at once."""
        return self.workers

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")
        options = dict(mp_context=context, initializer=start_worker, initargs=(os.getpid(),))
        try:  # a fresh process per run (Python >= 3.11): no state leaks from one run to the next
            return concurrent.futures.ProcessPoolExecutor(self.workers, max_tasks_per_child=1, **options)
        except TypeError:
            return concurrent.futures.ProcessPoolExecutor(self.workers, **options)

    def submit(self, *args) -> concurrent.futures.Future:
        for _ in range(2):
            if self.pool is None:
                self.pool = self._new_pool()
            try:
                return self.pool.submit(run_task, *args)
            except BrokenProcessPool:  # a worker died: start a new pool
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = None
        raise RuntimeError("could not start a process pool")

    def wait(self, handles: list) -> list[tuple[Any, TaskResult]]:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)
        out = []
        for future in done:
            try:
                out.append((future, future.result()))
            except Exception as error:  # noqa: BLE001 - the worker process died (BrokenProcessPool)
                out.append((future, _failure(error, retry=True)))
        return out

    def close(self) -> None:
        """Every task is done: end the idle workers now. With `max_tasks_per_child` the pool starts
        a replacement after every task, the last one too, and `shutdown(wait=True)` alone would
        wait seconds for each to import torch only to be told to stop."""
        self.abort()

    def abort(self, grace: float = 2.0, patience: float = 30.0) -> None:
        """Stop now (Ctrl-C, SIGTERM): end every worker, SIGTERM first, SIGKILL after `grace`
        seconds, while the pool closes (its thread sees its workers gone and drops the queued
        tasks). Runs cut short resume from their checkpoints next time.

        `shutdown(wait=True)` alone would wait for every running task, and for any replacement
        worker the pool's thread starts meanwhile to import torch; so it runs beside, and workers
        are ended as they appear until it returns (at most `patience` seconds). (`shutdown(wait=
        False)` is no way out: it races the pool's thread when that thread replaces a worker.)"""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        with _signals_deferred():
            self._end_workers(grace)
            closing = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                                       name="sweep-pool-close", daemon=True)
            closing.start()
            deadline = time.monotonic() + patience
            while closing.is_alive() and time.monotonic() < deadline:
                self._end_workers(grace)
                closing.join(0.05)

    def _end_workers(self, grace: float) -> None:
        workers = [child for child in multiprocessing.active_children() if child.pid not in self.others]
        for worker in workers:
            worker.terminate()
        deadline = time.monotonic() + grace
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join(1.0)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when a `host:port` Ray address answers nothing: `ray.init` itself keeps
    retrying for about 100 s before it gives up. 'auto' (the cluster running on this machine) and
    'local' (a new one) are left to Ray."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(f"--address {address}: expected 'auto', 'local', HOST:PORT or ray://HOST:PORT "
                         f"(port 1..65535)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise SweepError(f"--address {address}: cannot reach a Ray cluster there "
                         f"({error.strerror or error}); is `ray start --head` running?") from None


class RayBackend:
    """Ray tasks (`num_cpus=threads` each) on the cluster at `address` ('auto': the running one),
    or on a local Ray instance with `workers` CPUs when no address is given. Joins an already
    initialised Ray session (e.g. one a test or notebook started) and leaves it running."""

    def __init__(self, address: str | None, workers: int | None, threads: int):
        try:
            import ray
        except ImportError:
            raise SweepError(f"--backend ray: Ray is not installed; {DIST_HINT}") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            if address is not None:
                check_reachable(address)
            try:
                if address is None:
                    ray.init(num_cpus=workers, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise SweepError(f"--address {address}: cannot reach a Ray cluster "
                                 f"({str(error).strip().splitlines()[0] if str(error).strip() else error!r})") from None
        self.task = ray.remote(num_cpus=threads, max_retries=0)(run_task)
        self.threads = threads

    @property
    def slots(self) -> int:
        """How many tasks the cluster runs at once (its CPUs / threads per task)."""
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)) // self.threads)

    def submit(self, *args):
        return self.task.remote(*args)

    def wait(self, handles: list) -> list[tuple[Any, TaskResult]]:
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        out = []
        for ref in ready:
            try:
                out.append((ref, self.ray.get(ref)))
            except self.ray.exceptions.RayError as error:  # worker or node died, task cancelled
                out.append((ref, _failure(error, retry=True)))
        return out

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def default_workers(threads: int) -> int:
    """Local workers when --workers is not given: one per `threads` CPU cores."""
    return max(1, (os.cpu_count() or 1) // threads)


def make_backend(backend: str, *, workers: int | None = None, address: str | None = None,
                 threads: int = 1):
    if backend == "local":
        if address is not None:
            raise SweepError("--address: only used with --backend ray")
        return LocalBackend(workers or default_workers(threads))
    if backend == "ray":
        return RayBackend(address, workers, threads)
    raise SweepError(f"--backend {backend!r}: must be one of {list(BACKENDS)}")


# -- the sweep -----------------------------------------------------------------------------------
def check_out(out: str | os.PathLike) -> None:
    """--out must be a folder, or one that can be made: not empty text, not a file, not under one."""
    if str(out).strip() == "":  # before pathlib, which reads '' as '.'
        raise SweepError("--out '': give a directory name (an empty one would write into the current directory)")
    out = pathlib.Path(out)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "exists" if folder == out else f"is under {folder}, which exists"
                raise SweepError(f"--out {out}: {where} and is not a directory")
            if not os.access(folder, os.W_OK | os.X_OK):  # EROFS too, for root as for anyone
                raise SweepError(f"--out {out}: cannot write in {folder} (read-only, or no permission)")
            return


def probe_out(out: pathlib.Path) -> None:
    """Make sure the sweep's folder can be created (a path under /proc, or on a full or read-only
    disk, is bad input named as such) without leaving it behind: the folders made for the probe
    are removed at once, so a sweep refused later (a Ray address that answers nothing) writes nothing."""
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SweepError(f"--out {out}: cannot create the directory ({describe_os_error(error)})") from None
    for folder in missing:  # deepest first
        folder.rmdir()


def _frozen(value: Any) -> Any:
    """A hashable copy of a config value for comparing configs (1 == 1.0 as in Python)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def check_distinct(runs: list[SweepRun]) -> None:
    """Two directories of one run (e.g. `temperature: [1, 1.0]`) would train it twice, and the
    analysis would count it as two: a SweepError naming both."""
    first: dict[Any, str] = {}
    for run in runs:
        key = _frozen(run.config)
        if key in first:
            raise SweepError(f"runs {first[key]} and {run.name} have the same settings (the grid lists one "
                             "value twice, e.g. 1 and 1.0); give each value once")
        first[key] = run.name


def _validated(run: SweepRun) -> SweepRun:
    try:
        return run.validated()
    except ConfigError as error:
        raise SweepError(f"run {run.name}: {error.field}={shorten(error.value)}: {error.allowed}") from None
    except ValueError as error:
        raise SweepError(f"run {run.name}: {error}") from None


def check_sweep(runs: list[SweepRun], out: str | os.PathLike) -> tuple[list[SweepRun], dict[str, str]]:
    """Validate every run and its directory before any work: (validated runs, {name: state}).
    Raises SweepError naming the run at fault."""
    check_out(out)
    out = pathlib.Path(out)
    if not runs:
        raise SweepError("the sweep holds no runs")
    names = collections.Counter(run.name for run in runs)
    duplicates = sorted(name for name, count in names.items() if count > 1)
    if duplicates:
        raise SweepError(f"runs {duplicates} share a directory name; make the grid's values distinct")
    validated = [_validated(run) for run in runs]
    check_distinct(validated)
    states = {run.name: run_state(out / run.name, run.config) for run in validated}
    return validated, states


@dataclass(frozen=True)
class Task:
    """What one worker trains: one run on the reference engine, or runs of one shape as a batch
    (`compile`: the batched engine's compile setting)."""

    engine: str
    runs: tuple[SweepRun, ...]
    compile: bool | str = "auto"


def run_engine(path: pathlib.Path, config: dict[str, Any], state: str, engine: str,
               compile: bool | str = "auto") -> tuple[str, bool | str]:
    """(engine, compile setting) `config`'s run trains with: the sweep's for a new run, its own
    for a started one, as config.json records them (so it continues as it began; runs started
    before sweeps had engines are reference runs)."""
    if state == "new":
        return engine, compile
    try:
        saved = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        saved = {}
    return recorded_engine(saved if isinstance(saved, dict) else {}, compile)


def plan_tasks(todo: list[SweepRun], out: pathlib.Path, states: dict[str, str], engine: str,
               batch: int, slots: int, compile: bool | str = "auto") -> list[Task]:
    """Batches first (runs of one `batch_key` and compile setting, split into near-equal parts of
    at most `batch` runs, and into enough parts that `slots` workers all get work), then the runs
    that train alone."""
    alone, groups = [], {}
    for run in todo:
        run_on, run_compile = run_engine(out / run.name, run.config, states[run.name], engine, compile)
        if run_on == "reference":
            alone.append(Task("reference", (run,), compile))
        else:
            groups.setdefault((batch_key(run.config), run_compile), []).append(run)
    tasks = []
    for (_, group_compile), members in groups.items():
        parts = min(len(members), max(math.ceil(len(members) / batch), math.ceil(slots / len(groups))))
        size, extra = divmod(len(members), parts)
        start = 0
        for k in range(parts):
            stop = start + size + (k < extra)
            tasks.append(Task("batched", tuple(members[start:stop]), group_compile))
            start = stop
    return tasks + alone


def describe_tasks(tasks: list[Task]) -> str:
    """What the workers get, e.g. 'batches of 10, 5 runs, 5 runs alone'."""
    batches = [str(len(task.runs)) for task in tasks if task.engine == "batched"]
    alone = sum(task.engine == "reference" for task in tasks)
    return ", ".join(([f"batches of {', '.join(batches)} runs"] if batches else [])
                     + ([f"{alone} runs alone"] if alone else []))


def run_sweep(runs: list[SweepRun], out: str | os.PathLike, *, backend: str = "local",
              workers: int | None = None, address: str | None = None, retries: int = 2,
              threads: int = 1, engine: str = "batched", batch: int = DEFAULT_BATCH,
              compile: bool | str = "auto", log: Callable[[str], None] | None = print,
              spec: dict[str, Any] | None = None) -> SweepSummary:
    """Run every run not yet finished; return who finished, was skipped, or failed (and why).

    `retries`: extra attempts of a run that crashed (each resumes from its checkpoint).
    `engine`: "batched" (runs of one shape train together, at most `batch` per task; `compile` as
    in the game scripts) or "reference" (every run alone, as `run_language`).
    `spec`: the grid the runs came from, stored in OUT/sweep.json with the outcome.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SweepError(f"--retries {retries}: must be an integer >= 0")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SweepError(f"--threads {threads}: must be an integer >= 1")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepError(f"--workers {workers}: must be an integer >= 1")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SweepError(f"--batch {batch}: must be an integer >= 1")
    if engine not in ENGINES:
        raise SweepError(f"--engine {engine!r}: must be one of {list(ENGINES)}")
    compile_mode(compile)
    if backend not in BACKENDS:
        raise SweepError(f"--backend {backend!r}: must be one of {list(BACKENDS)}")
    if backend == "local" and address is not None:
        raise SweepError("--address: only used with --backend ray")
    check_out(out)
    out = pathlib.Path(out).resolve()  # Ray workers run in their own working directory
    runs, states = check_sweep(runs, out)
    probe_out(out)
    say = log or (lambda line: None)
    summary = SweepSummary(out)
    todo = [run for run in runs if states[run.name] != "finished"]
    for run in runs:
        if states[run.name] == "finished":
            summary.outcomes.append(Outcome(run.name, "skipped"))
    with sigterm_interrupts():
        pool = make_backend(backend, workers=workers, address=address, threads=threads) if todo else None
        tasks = plan_tasks(todo, out, states, engine, batch, pool.slots, compile) if pool is not None else []
        _write_sweep_file(out, spec, runs, summary, states)
        say(f"sweep {out}: {len(runs)} runs, {len(runs) - len(todo)} already finished, "
            f"{sum(states[r.name] == 'partial' for r in todo)} to resume, backend {backend}"
            + (f"; {describe_tasks(tasks)}" if tasks else ""))
        if pool is not None:
            try:
                _drive(pool, tasks, out, retries, threads, summary, say)
                pool.close()
            except BaseException:  # Ctrl-C, SIGTERM (while closing too), a bug: no worker goes on
                getattr(pool, "abort", pool.close)()
                raise
    order = {run.name: i for i, run in enumerate(runs)}
    summary.outcomes.sort(key=lambda o: order[o.name])
    _write_sweep_file(out, spec, runs, summary, states)
    return summary


def _drive(pool, tasks: list[Task], out: pathlib.Path, retries: int, threads: int, summary: SweepSummary,
           say: Callable[[str], None]) -> None:
    """Submit every task, collect results as they come, resubmit the runs that crashed up to
    `retries` times (those of one batch again as one batch)."""
    attempts: collections.Counter[str] = collections.Counter()
    pending: dict[Any, Task] = {}
    total, done = sum(len(task.runs) for task in tasks), 0
    # One bar for the sweep (runs done / total, with an ETA) on a terminal; its lines go above it.
    bar = tqdm(total=total, unit="run", desc="sweep", disable=None, dynamic_ncols=True)
    if not bar.disable and say is print:
        say = bar.write

    def submit(task: Task) -> None:
        attempts.update(run.name for run in task.runs)
        handle = pool.submit(task.engine, [run.name for run in task.runs], [run.config for run in task.runs],
                             [str(out / run.name) for run in task.runs], threads, task.compile)
        pending[handle] = task

    for task in tasks:
        submit(task)
    while pending:
        for handle, result in pool.wait(list(pending)):
            task = pending.pop(handle)
            results = result if isinstance(result, list) else [result] * len(task.runs)
            again = []
            for run, outcome in zip(task.runs, results, strict=True):
                tries = attempts[run.name]
                if outcome.get("ok"):
                    done += 1
                    status = "skipped" if outcome.get("skipped") else "finished"
                    summary.outcomes.append(Outcome(run.name, status, tries, outcome.get("seconds", 0.0)))
                    say(f"[{done}/{total}] {status} {run.name} ({outcome.get('generations')} generations, "
                        f"{outcome.get('seconds', 0.0):.1f} s)")
                elif outcome.get("retry") and tries <= retries:
                    say(f"[{done}/{total}] crashed {run.name} (attempt {tries}/{retries + 1}): "
                        f"{outcome['error']}; retrying from its checkpoint")
                    again.append(run)
                else:
                    done += 1
                    summary.outcomes.append(Outcome(run.name, "failed", tries, error=outcome.get("error"),
                                                    traceback=outcome.get("traceback")))
                    say(f"[{done}/{total}] failed {run.name}: {outcome.get('error')}")
            if again:
                submit(Task(task.engine, tuple(again), task.compile))
            bar.n = done
            bar.refresh()
    bar.close()


def _write_sweep_file(out: pathlib.Path, spec, runs: list[SweepRun], summary: SweepSummary,
                      states: dict[str, str]) -> None:
    """OUT/sweep.json: the grid, every run's config, and the last outcome of each (atomic write)."""
    outcomes = {o.name: o for o in summary.outcomes}
    table = []
    for run in runs:
        outcome = outcomes.get(run.name)
        entry = {"name": run.name, "state_at_launch": states[run.name],
                 "status": outcome.status if outcome else "pending", "config": run.config}
        if outcome is not None and outcome.error:
            entry.update(error=outcome.error, traceback=outcome.traceback, attempts=outcome.attempts)
        table.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / SWEEP_FILE, json.dumps(to_jsonable({"grid": spec, "runs": table}), indent=1) + "\n")
