"""Sweeps: grid files, run directories, skip/resume on re-launch, retries, the local and Ray backends."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

import emergent_frl.sweeps as sweeps
from analysis.runs import find_runs
from emergent_frl.runs import lock_holder
from emergent_frl.relearn import run_language
from emergent_frl.batched import run_language_batched
from emergent_frl.sweeps import SweepError, Task, plan_tasks, run_state, run_sweep, run_task
from games import sweep
from games.presets import available_sweeps

ROOT = pathlib.Path(__file__).resolve().parents[1]

TINY = {"n_values": [2, 3], "vocab_size": 6, "n_candidates": 3, "hidden_size": 16, "batch_size": 8,
        "eval_every": 0}


def tiny_spec(**grid):
    return {"base": {**TINY, "iterations": 60, "iterations_per_generation": 20},
            "grid": grid or {"strategy": ["no_reset", "pbf"], "seed": [0]},
            "variants": {"pbf": {"iterations_per_generation": 30}}}


def write_grid(tmp_path, spec, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def disk_records(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (pathlib.Path(path) / "generations.jsonl").read_text().splitlines()]


# -- grid files ------------------------------------------------------------------------------------
def test_paper_language_sweep_is_the_papers_study():
    assert "paper_language" in available_sweeps()
    spec, runs = sweep.load_grid("paper_language")
    assert len(runs) == 20
    by_name = {run.name: run.config for run in runs}
    for strategy, generations, period in [("no_reset", 100, 3000), ("reset_receiver", 50, 6000),
                                          ("pbf", 100, 3000), ("iterated_learning", 100, 3000)]:
        for seed in range(5):
            config = by_name[f"{strategy}/seed{seed}"]
            assert (config["strategy"], config["seed"]) == (strategy, seed)
            assert (config["generations"], config["iterations_per_generation"]) == (generations, period)
            assert config["generations"] * config["iterations_per_generation"] == 300_000
            assert (config["n_values"], config["vocab_size"], config["max_len"], config["n_candidates"],
                    config["hidden_size"], config["batch_size"], config["lr_sender"]) == ([8, 4], 8, 2, 5, 100,
                                                                                           100, 0.001)


def test_grid_precedence_preset_base_grid_variant():
    runs = sweep.expand_grid({"base": {"preset": "ren", "hidden_size": 32, "iterations": 600},
                              "grid": {"strategy": ["no_reset", "reset_receiver"], "lr_sender": [0.01, 0.001]},
                              "variants": {"reset_receiver": {"hidden_size": 16, "iterations_per_generation": 200}}})
    by_name = {run.name: run.config for run in runs}
    assert sorted(by_name) == ["lr_sender=0.001/no_reset/seed0", "lr_sender=0.001/reset_receiver/seed0",
                               "lr_sender=0.01/no_reset/seed0", "lr_sender=0.01/reset_receiver/seed0"]
    plain, variant = by_name["lr_sender=0.01/no_reset/seed0"], by_name["lr_sender=0.01/reset_receiver/seed0"]
    assert plain["game"] == "reconstruction" and plain["channel"] == "gumbel"  # from the preset
    assert (plain["hidden_size"], plain["lr_sender"], plain["generations"]) == (32, 0.01, 1)
    assert (variant["hidden_size"], variant["generations"], variant["iterations_per_generation"]) == (16, 3, 200)


@pytest.mark.parametrize("spec, needle", [
    ({"grid": {"seed": [0, -1]}}, "grid.seed: -1: must be in [0, 4294967295]"),
    ({"grid": {"seed": 3}}, "grid.seed: must be a non-empty list"),
    ({"grid": {"sed": [1]}}, "grid.sed: unknown setting"),
    ({"base": {"hidden_size": "big"}}, "base.hidden_size: 'big': must be an integer"),
    ({"base": {"preset": "papr"}}, "base.preset: 'papr': unknown preset"),
    ({"base": {"preset": "paper"}, "grid": {"strategy": ["pbf"]},
      "variants": {"pbf": {"receiver_keep_fraction": 2}}}, "variants.pbf.receiver_keep_fraction: 2:"),
    ({"grid": {"strategy": ["pbf"]}, "variants": {"reset_receivr": {"seed": 1}}},
     "variants.reset_receivr: no run of the grid has this strategy"),
    ({"grid": {"strategy": ["pbf"]}, "variants": {"pbf": {"strategy": "no_reset"}}},
     "variants.pbf.strategy: cannot be set in a variant"),
    ({"base": {"iterations": 1000, "iterations_per_generation": 300}}, "base.iterations: 1000: must be a multiple"),
    ({"grid": {"seed": [1, 1]}}, "several runs get the directory pbf/seed1"),
    ({"grids": {}}, "grids: unknown section"),
    ([1, 2], "grid file: must be a mapping"),
])
def test_grid_errors_name_the_key(spec, needle):
    with pytest.raises(SweepError) as info:
        sweep.expand_grid(spec)
    assert needle in str(info.value)


@pytest.mark.parametrize("argv, needle", [
    (["missing.yaml", "--out", "o"], "missing.yaml: no such grid file"),
    (["{grid}", "--out", "o", "--workers", "0"], "--workers 0: must be an integer >= 1"),
    (["{grid}", "--out", "o", "--batch", "0"], "--batch 0: must be an integer >= 1"),
    (["{grid}", "--out", "o", "--engine", "fast"], "invalid choice: 'fast'"),
    (["{grid}", "--out", "o", "--address", "auto"], "--address: only used with --backend ray"),
    (["{bad_yaml}", "--out", "o"], "not valid YAML"),
    (["{grid}"], "the following arguments are required: --out"),
    (["{grid}", "--out", "o", "--backend", "slurm"], "invalid choice: 'slurm'"),
])
def test_sweep_command_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, needle):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, tiny_spec())
    (tmp_path / "bad.yaml").write_text("grid: {seed: [0, 1}\n")
    argv = [a.format(grid=grid, bad_yaml=str(tmp_path / "bad.yaml")) for a in argv]
    with pytest.raises(SystemExit) as info:
        sweep.main(argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SystemExit) as info:
        sweep.main([write_grid(tmp_path, tiny_spec()), "--out", str(tmp_path / "o"), "--backend", "ray"])
    assert info.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and 'pip install -e ".[dist]"' in line


def test_dry_run_lists_runs_and_states_without_running(tmp_path, capsys):
    grid = write_grid(tmp_path, tiny_spec())
    assert sweep.main([grid, "--out", str(tmp_path / "o"), "--dry-run", "--workers", "3"]) == 0
    out = capsys.readouterr().out
    assert "new  no_reset/seed0  (3 x 20 iterations)  batched" in out and "new  pbf/seed0  (2 x 30 iterations)  batched" in out
    assert "2 runs, 0 finished; 2 tasks for 3 workers: batches of 1, 1 runs" in out
    assert not (tmp_path / "o").exists()


# -- run states and the local backend ----------------------------------------------------------------
def test_run_state_new_partial_finished_and_conflict(tmp_path):
    (run,) = sweep.expand_grid(tiny_spec(strategy=["pbf"]))
    path = tmp_path / run.name
    assert run_state(path, run.config) == "new"
    run_language(run.config, str(path), progress=False, until=1)
    assert run_state(path, run.config) == "partial"
    run_language(run.config, str(path), progress=False, resume=True)
    assert run_state(path, run.config) == "finished"
    assert run_state(path, {**run.config, "generations": 5}) == "partial"  # a longer sweep extends it
    with pytest.raises(SweepError, match=r"holds a run with other settings \(lr_sender=0.001 there, 0.5 here\)"):
        run_state(path, {**run.config, "lr_sender": 0.5})


def test_local_sweep_runs_resumes_then_skips_everything(tmp_path, capsys):
    grid = write_grid(tmp_path, tiny_spec(strategy=["no_reset", "pbf"], seed=[0]))
    out = tmp_path / "sweep"
    _, runs = sweep.load_grid(grid)
    pbf = next(run for run in runs if run.name == "pbf/seed0")
    run_language(pbf.config, str(out / "pbf/seed0"), progress=False, until=1)  # an interrupted run
    reference = tmp_path / "reference"
    run_language(pbf.config, str(reference), progress=False)

    assert sweep.main([grid, "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 runs, 0 already finished, 1 to resume, backend local" in text
    assert "sweep " + str(out) + ": 2 finished, 0 skipped, 0 failed" in text
    assert f"plot: python -m analysis.plot {out} --x iteration" in text
    assert disk_records(out / "pbf/seed0") == disk_records(reference)  # resumed = uninterrupted
    assert len(disk_records(out / "no_reset/seed0")) == 3
    engines = {name: json.loads((out / name / "config.json").read_text())["engine"]
               for name in ("no_reset/seed0", "pbf/seed0")}
    assert engines == {"no_reset/seed0": "batched", "pbf/seed0": "reference"}  # a started run keeps its own
    assert find_runs([out]) == [out / "no_reset/seed0", out / "pbf/seed0"]  # analysis reads the tree
    saved = json.loads((out / "sweep.json").read_text())
    assert [(r["name"], r["state_at_launch"], r["status"]) for r in saved["runs"]] == [
        ("no_reset/seed0", "new", "finished"), ("pbf/seed0", "partial", "finished")]

    before = {p: p.stat().st_mtime_ns for p in out.rglob("generations.jsonl")}
    started = time.perf_counter()
    assert sweep.main([grid, "--out", str(out), "--workers", "2"]) == 0
    assert time.perf_counter() - started < 5  # no worker process is even started
    assert "0 finished, 2 skipped, 0 failed" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("generations.jsonl")}


def test_a_directory_with_other_settings_stops_the_sweep_before_any_work(tmp_path, capsys):
    out = tmp_path / "sweep"
    spec = tiny_spec(strategy=["no_reset", "pbf"])
    runs = sweep.expand_grid(spec)
    run_language({**runs[1].config, "hidden_size": 8}, str(out / runs[1].name), progress=False, until=1)
    with pytest.raises(SystemExit) as info:
        sweep.main([write_grid(tmp_path, spec), "--out", str(out)])
    assert info.value.code == 2
    assert "pbf/seed0: holds a run with other settings (hidden_size=8 there, 16 here)" in capsys.readouterr().err
    assert not (out / "no_reset").exists()


# -- failures and retries (an in-process backend: the retry logic, not the pool) ---------------------
class InlineBackend:
    """Runs `work(*task)` in this process, one result per wait()."""

    slots = 1

    def __init__(self, work):
        self.work, self.queue = work, []

    def submit(self, *args):
        handle = object()
        self.queue.append((handle, args))
        return handle

    def wait(self, handles):
        handle, args = self.queue.pop(0)
        return [(handle, self.work(*args))]

    def close(self):
        pass


def test_crashed_runs_are_retried_from_their_checkpoint_and_failures_reported(tmp_path, monkeypatch, capsys):
    spec = tiny_spec(strategy=["no_reset", "pbf", "reset_receiver"], seed=[0])
    spec["variants"]["reset_receiver"] = {"lr_sender": 1e30, "lr_receiver": 1e30}  # diverges: deterministic, not retried
    runs = sweep.expand_grid(spec)
    attempts = {}
    real_run_language = sweeps.run_language

    def flaky_run_language(values, out, **kwargs):
        name = kwargs["launch"]["sweep_run"]
        attempts[name] = attempts.get(name, 0) + 1
        if name == "pbf/seed0" and attempts[name] == 1:  # crash after one generation, then recover
            real_run_language(values, out, **kwargs, until=1)
            raise OSError("disk hiccup")
        if name == "no_reset/seed0":
            raise RuntimeError("always broken")
        return real_run_language(values, out, **kwargs)

    monkeypatch.setattr(sweeps, "run_language", flaky_run_language)
    monkeypatch.setattr(sweeps, "make_backend", lambda *a, **k: InlineBackend(run_task))
    summary = run_sweep(runs, tmp_path / "sweep", retries=2, engine="reference")
    by_name = {o.name: o for o in summary.outcomes}
    assert (by_name["pbf/seed0"].status, by_name["pbf/seed0"].attempts) == ("finished", 2)
    assert (by_name["no_reset/seed0"].status, by_name["no_reset/seed0"].attempts) == ("failed", 3)
    assert by_name["no_reset/seed0"].error == "RuntimeError: always broken"
    diverged = by_name["reset_receiver/seed0"]
    assert (diverged.status, diverged.attempts) == ("failed", 1)
    assert diverged.error.startswith("NonFiniteError: non-finite values in generation 0 by iteration 20")
    reference = tmp_path / "reference"
    run_language(runs[1].config, str(reference), progress=False)
    assert disk_records(tmp_path / "sweep" / "pbf/seed0") == disk_records(reference)
    report = summary.report()
    assert "1 finished, 0 skipped, 2 failed" in report
    assert "failed no_reset/seed0 after 3 attempt(s): RuntimeError: always broken" in report
    saved = {r["name"]: r for r in json.loads((tmp_path / "sweep" / "sweep.json").read_text())["runs"]}
    assert "Traceback" in saved["no_reset/seed0"]["traceback"] and saved["pbf/seed0"]["status"] == "finished"


def test_a_batch_that_crashes_resumes_together_and_a_diverging_run_fails_alone(tmp_path, monkeypatch):
    spec = tiny_spec(strategy=["no_reset", "pbf", "reset_receiver"], seed=[0, 1])
    spec["variants"]["reset_receiver"] = {"lr_sender": 1e30, "lr_receiver": 1e30}  # diverges: not retried
    runs = sweep.expand_grid(spec)
    calls = []
    real = sweeps.run_language_batched

    def flaky(values_list, outs, **kwargs):
        names = [launch["sweep_run"] for launch in kwargs["launch"]]
        calls.append((names, kwargs["resume"]))
        if "pbf/seed0" in names and len(calls) <= 2:  # the pbf batch crashes after one generation
            real(values_list, outs, **kwargs, until=1)
            raise OSError("disk hiccup")
        return real(values_list, outs, **kwargs)

    monkeypatch.setattr(sweeps, "run_language_batched", flaky)
    monkeypatch.setattr(sweeps, "make_backend", lambda *a, **k: InlineBackend(run_task))
    summary = run_sweep(runs, tmp_path / "sweep", retries=2, compile=False, log=None)
    # no_reset and reset_receiver share a shape (20 iterations a generation): one batch; pbf (30): another
    assert sorted(calls) == sorted([(["no_reset/seed0", "no_reset/seed1", "reset_receiver/seed0",
                                      "reset_receiver/seed1"], False),
                                    (["pbf/seed0", "pbf/seed1"], False), (["pbf/seed0", "pbf/seed1"], True)])
    by_name = {o.name: (o.status, o.attempts) for o in summary.outcomes}
    assert by_name == {"no_reset/seed0": ("finished", 1), "no_reset/seed1": ("finished", 1),
                       "pbf/seed0": ("finished", 2), "pbf/seed1": ("finished", 2),
                       "reset_receiver/seed0": ("failed", 1), "reset_receiver/seed1": ("failed", 1)}
    diverged = next(o for o in summary.outcomes if o.name == "reset_receiver/seed1")
    assert diverged.error.startswith("NonFiniteError: non-finite values in generation 0")
    reference = [str(tmp_path / "reference" / f"seed{seed}") for seed in (0, 1)]
    real([run.config for run in runs if run.name.startswith("pbf/")], reference, progress=False, compile=False)
    for seed in (0, 1):  # crashed, resumed from the checkpoints = uninterrupted
        assert disk_records(tmp_path / "sweep" / f"pbf/seed{seed}") == disk_records(reference[seed])
        saved = json.loads((tmp_path / "sweep" / f"pbf/seed{seed}" / "config.json").read_text())
        assert (saved["engine"], saved["compile"], saved["sweep_run"]) == ("batched", False, f"pbf/seed{seed}")
    assert len(disk_records(tmp_path / "sweep" / "no_reset/seed1")) == 3


def test_plan_tasks_batches_by_shape_fills_the_workers_and_keeps_started_runs_engines(tmp_path):
    # no_reset and pbf share a shape; reset_receiver (6,000 iterations a generation) and iterated
    # learning (its listener-only warm-up) have shapes of their own
    _, runs = sweep.load_grid("paper_language")
    states = {run.name: "new" for run in runs}

    def shapes(tasks):
        return [(task.engine, len(task.runs)) for task in tasks]

    assert shapes(plan_tasks(runs, tmp_path, states, "batched", 16, slots=2)) == [
        ("batched", 10), ("batched", 5), ("batched", 5)]
    assert shapes(plan_tasks(runs, tmp_path, states, "batched", 4, slots=2)) == [
        ("batched", 4), ("batched", 3), ("batched", 3), ("batched", 3), ("batched", 2), ("batched", 3), ("batched", 2)]
    assert shapes(plan_tasks(runs, tmp_path, states, "batched", 16, slots=8)) == [  # 8 / 3 groups: 3 parts each
        ("batched", 4), ("batched", 3), ("batched", 3), ("batched", 2), ("batched", 2), ("batched", 1),
        ("batched", 2), ("batched", 2), ("batched", 1)]
    assert shapes(plan_tasks(runs, tmp_path, states, "reference", 16, slots=2)) == [("reference", 1)] * 20
    tasks = plan_tasks(runs, tmp_path, states, "batched", 16, slots=1)
    assert [run.name for run in tasks[0].runs] == [f"{s}/seed{i}" for s in ("no_reset", "pbf") for i in range(5)]
    # started runs keep their engine; one that records none was started before sweeps batched
    (tmp_path / "pbf/seed0").mkdir(parents=True)
    (tmp_path / "pbf/seed0/config.json").write_text("{}")
    (tmp_path / "pbf/seed1").mkdir(parents=True)
    (tmp_path / "pbf/seed1/config.json").write_text('{"engine": "batched"}')
    (tmp_path / "pbf/seed2").mkdir(parents=True)
    (tmp_path / "pbf/seed2/config.json").write_text('{"engine": "batched", "compile": false}')
    states.update({"pbf/seed0": "partial", "pbf/seed1": "partial", "pbf/seed2": "partial"})
    tasks = plan_tasks(runs, tmp_path, states, "batched", 16, slots=1)
    assert tasks[-1] == Task("reference", (runs[10],)) and runs[10].name == "pbf/seed0"
    # ... and their compile setting: a run begun eager goes on eager, in a batch of its own
    assert [(task.engine, len(task.runs), task.compile) for task in tasks] == [
        ("batched", 8, "auto"), ("batched", 5, "auto"), ("batched", 1, False), ("batched", 5, "auto"),
        ("reference", 1, "auto")]
    assert tasks[2].runs[0].name == "pbf/seed2"


def test_a_dead_worker_process_is_a_retried_crash(monkeypatch):
    class Dead:
        def result(self):
            raise sweeps.BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(sweeps.concurrent.futures, "wait", lambda handles, return_when: ({handles[0]}, set()))
    [(_, result)] = sweeps.LocalBackend(1).wait([Dead()])
    assert result["ok"] is False and result["retry"] is True
    assert result["error"] == "BrokenProcessPool: a child process terminated abruptly"


# -- the Ray backend, for real -----------------------------------------------------------------------
def test_ray_backend_on_a_local_two_cpu_ray_instance(tmp_path, capsys):
    ray = pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[dist]")')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        grid = write_grid(tmp_path, tiny_spec(strategy=["no_reset", "pbf"], seed=[0, 1]))
        out = tmp_path / "sweep"
        assert sweep.main([grid, "--out", str(out), "--backend", "ray", "--no-compile"]) == 0
        text = capsys.readouterr().out
        assert "4 finished, 0 skipped, 0 failed" in text and "batches of 2, 2 runs" in text
        assert ray.is_initialized()  # a session the caller started is left running
    finally:
        ray.shutdown()
    assert len(find_runs([out])) == 4
    _, runs = sweep.load_grid(grid)
    pbf = [run for run in runs if run.name.startswith("pbf/")]
    reference = [str(tmp_path / "reference" / run.name) for run in pbf]
    batch = ("import json, sys; from emergent_frl.batched import run_language_batched; "
             "run_language_batched(json.loads(sys.argv[1]), json.loads(sys.argv[2]), progress=False, compile=False)")
    subprocess.run([sys.executable, "-c", batch, json.dumps([run.config for run in pbf]), json.dumps(reference)],
                   check=True, cwd=ROOT, timeout=300)
    for run, path in zip(pbf, reference):  # same records as the same batch in a fresh process
        assert disk_records(out / run.name) == disk_records(path)
    assert sweep.main([grid, "--out", str(out), "--backend", "ray", "--no-compile"]) == 0  # all done: no Ray
    assert "0 finished, 4 skipped, 0 failed" in capsys.readouterr().out


def closed_port() -> int:
    with socket.socket() as probe:  # a port that was just free: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, needle", [
    ("127.0.0.1:{port}", "cannot reach a Ray cluster there"),
    ("ray://127.0.0.1:{port}", "cannot reach a Ray cluster there"),
    ("localhost", "expected 'auto', 'local', HOST:PORT or ray://HOST:PORT"),
    ("127.0.0.1:99999", "expected 'auto', 'local', HOST:PORT or ray://HOST:PORT (port 1..65535)"),
])
def test_ray_address_that_answers_nothing_fails_in_seconds(tmp_path, capsys, address, needle):
    pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[dist]")')
    address = address.format(port=closed_port())
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        sweep.main([write_grid(tmp_path, tiny_spec()), "--out", str(tmp_path / "o"), "--backend", "ray",
                    "--address", address])
    assert info.value.code == 2 and time.monotonic() - started < 30  # ray.init alone would wait ~100 s
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and f"--address {address}" in line and needle in line
    assert not (tmp_path / "o").exists()


# -- YAML that safe_load would take silently or pay dearly for ---------------------------------------
def test_yaml_refuses_repeated_keys_but_merge_keys_may_override():
    from games.presets import YamlError, load_yaml

    with pytest.raises(YamlError, match=r"^G: line 3: key 'seed' given twice in one mapping \(first on line 2\)"):
        load_yaml("grid:\n  seed: [0]\n  seed: [1]\n", "G")
    with pytest.raises(YamlError, match=r"line 2: key 1.0 given twice"):  # equal as dict keys
        load_yaml("1: a\n1.0: b\n", "G")
    merged = load_yaml("base: &b {hidden_size: 16, lr_sender: 0.1}\nmine: {<<: *b, hidden_size: 32}\n", "G")
    assert merged["mine"] == {"hidden_size": 32, "lr_sender": 0.1}


def test_yaml_alias_bomb_and_recursion_are_refused_before_any_value_is_built():
    from games.presets import MAX_YAML_NODES, YamlError, load_yaml

    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.perf_counter()
    with pytest.raises(YamlError, match=f"too large: its aliases expand to more than {MAX_YAML_NODES:,} values"):
        load_yaml("\n".join(levels), "G")
    assert time.perf_counter() - started < 1
    assert len(load_yaml("\n".join(levels[:3]), "G")["a2"]) == 10  # 1,000 values with aliases: fine
    with pytest.raises(YamlError, match="an alias refers to a value that holds it"):
        load_yaml("a: &a [1, *a]\n", "G")
    with pytest.raises(YamlError, match=r"not valid YAML \(nested too deeply\)"):
        load_yaml("[" * 1500, "G")


def test_shorten_cuts_huge_values():
    assert sweeps.shorten(0.001) == "0.001" and sweeps.shorten("big") == "'big'"
    for value in (list(range(10**6)), "x" * 10**6, {i: i for i in range(10**5)}, 10**5000):
        assert len(sweeps.shorten(value)) <= sweeps.SHOWN


# -- runs and directories the sweep refuses before any work -------------------------------------------
def test_one_run_in_two_directories_is_refused_naming_both(tmp_path):
    runs = sweep.expand_grid(tiny_spec(strategy=["pbf"], temperature=[1, 1.0, 2]))
    assert [run.name for run in runs] == ["temperature=1/pbf/seed0", "temperature=1.0/pbf/seed0",
                                          "temperature=2/pbf/seed0"]
    with pytest.raises(SweepError, match="runs temperature=1/pbf/seed0 and temperature=1.0/pbf/seed0 have the same"):
        sweeps.check_sweep(runs, tmp_path / "o")
    sweeps.check_sweep([runs[0], runs[2]], tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("out, needle", [
    ("", "--out '': give a directory name"),
    ("{tmp}/file", "exists and is not a directory"),
    ("{tmp}/file/a/b", "is under {tmp}/file, which exists and is not a directory"),
])
def test_out_must_be_a_folder_or_makeable(tmp_path, out, needle):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SweepError) as info:
        sweeps.check_out(out.format(tmp=tmp_path))
    assert needle.format(tmp=tmp_path) in str(info.value)


def test_run_state_refuses_a_run_whose_lock_is_held(tmp_path):
    from emergent_frl.runs import RunDirectory

    (run,) = sweep.expand_grid(tiny_spec(strategy=["pbf"]))
    path = tmp_path / run.name
    holder = RunDirectory(path)  # a second open description of the lock: held, as by another process
    try:
        assert lock_holder(path) == str(os.getpid())
        with pytest.raises(SweepError, match=rf"pbf/seed0: another process \(PID {os.getpid()}\) is writing this run"):
            run_state(path, run.config)
    finally:
        holder.close()
    assert lock_holder(path) is None and run_state(path, run.config) == "new"
    assert lock_holder(tmp_path / "nothing") is None


# -- signals and worker processes ------------------------------------------------------------------
def test_sigterm_interrupts_only_within_the_block_and_leaves_other_handlers_alone():
    original = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh process (Ray installs its own)
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            with sweeps.sigterm_interrupts():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises at once
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        calls = []
        signal.signal(signal.SIGTERM, lambda *_: calls.append(1))
        with sweeps.sigterm_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        assert calls == [1]
    finally:
        signal.signal(signal.SIGTERM, original)


WORKER = """
import sys, time
import emergent_frl.sweeps as sweeps
if sys.argv[1] == "watchdog":
    sweeps._die_with_parent = lambda: None
else:
    sweeps._watch_parent = lambda parent: None
sweeps.start_worker(int(sys.argv[2]))
print("ready", flush=True)
time.sleep(60)
"""
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())])
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
@pytest.mark.parametrize("guard", ["watchdog", "pdeathsig"])
def test_a_worker_ends_when_its_sweep_process_is_killed(guard):
    """Each guard alone (the other one disabled) ends a worker whose parent got SIGKILL."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WORKER, guard], stdout=subprocess.PIPE, text=True,
                              cwd=pathlib.Path(__file__).resolve().parents[1])
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"  # the worker's guard is on
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 3
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"{guard}: the worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_sweep_has_one_progress_bar_over_its_runs(tmp_path, monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total, **kwargs):
            self.total, self.n, self.disable, self.lines = total, 0, False, []
            bars.append(self)

        def refresh(self):
            pass

        def write(self, line):
            self.lines.append(line)

        def close(self):
            pass

    monkeypatch.setattr(sweeps, "tqdm", Bar)
    grid = write_grid(tmp_path, tiny_spec(strategy=["no_reset", "pbf"], seed=[0, 1]))
    assert sweep.main([grid, "--out", str(tmp_path / "out"), "--workers", "1", "--no-compile"]) == 0
    (bar,) = bars
    assert bar.total == 4 and bar.n == 4  # runs done / total, with tqdm's ETA on a terminal
    assert len([line for line in bar.lines if "finished" in line]) == 4  # the run lines go above the bar
