"""emergent_frl.logging_sinks: the records' scalars reach TensorBoard and wandb (offline), read back
from the files those tools write."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import struct

import numpy as np
import pytest

from emergent_frl import logging_sinks
from emergent_frl.logging_sinks import check_available, open_sinks, scalars

needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason='tensorboard is not installed (pip install -e ".[log]")')
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                                 reason='wandb is not installed (pip install -e ".[log]")')

EVALS = [{"generation": 0, "iteration": 100, "accuracy": 0.5, "topsim": 0.25, "train_loss": -0.4,
          "probe_easy": 1.0, "holdout_accuracy": None, "posdis": float("nan"), "strategy": "pbf"},
         {"generation": 0, "iteration": 200, "accuracy": 0.75, "topsim": 0.5, "train_loss": -0.6,
          "probe_easy": 0.5, "holdout_accuracy": None, "posdis": 0.125, "strategy": "pbf"}]
GENERATION = {"generation": 0, "iteration": 200, "seed": 3, "strategy": "pbf", "topsim": 0.5,
              "topsim_after_forgetting": 0.125, "accuracy": 0.75, "accuracy_after_forgetting": 0.25}


def test_scalars_keep_finite_numbers_only():
    record = {"iteration": 5, "seed": 2, "a": 1, "b": np.float32(0.5), "c": None, "d": float("nan"),
              "e": float("inf"), "f": True, "g": "text", "h": [1.0], "i": np.int64(7)}
    assert scalars(record) == {"a": 1.0, "b": 0.5, "i": 7.0}


def read_tensorboard(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


@needs_tensorboard
def test_tensorboard_single_run_writes_every_scalar_at_its_iteration(tmp_path):
    with open_sinks(tmp_path / "tb", False, run_name="demo", config={}) as sinks:
        for record in EVALS:
            sinks.evaluation(0, record)
        sinks.generation(0, GENERATION)
    written = read_tensorboard(tmp_path / "tb")
    assert set(written) == {"eval/accuracy", "eval/topsim", "eval/train_loss", "eval/probe_easy", "eval/posdis",
                            "generation", "generation/topsim", "generation/topsim_after_forgetting",
                            "generation/accuracy", "generation/accuracy_after_forgetting"}
    assert written["eval/accuracy"] == [(100, 0.5), (200, 0.75)]
    assert written["eval/train_loss"] == [(100, pytest.approx(-0.4)), (200, pytest.approx(-0.6))]
    assert written["eval/posdis"] == [(200, 0.125)]  # the nan at 100 skipped
    assert written["generation/topsim_after_forgetting"] == [(200, 0.125)]
    assert written["generation"] == [(100, 0.0), (200, 0.0), (200, 0.0)]


@needs_tensorboard
def test_tensorboard_batch_writes_one_folder_per_run(tmp_path):
    sinks = open_sinks(tmp_path, False, run_name="demo", config={}, runs=["seed0", "seed3"])
    sinks.evaluation(0, EVALS[0])
    sinks.evaluation(1, EVALS[1])
    sinks.generation(1, {**GENERATION, "generation": 1, "iteration": 400})
    sinks.close()
    sinks.close()  # twice is harmless
    first, second = read_tensorboard(tmp_path / "seed0"), read_tensorboard(tmp_path / "seed3")
    assert first["eval/accuracy"] == [(100, 0.5)] and "generation/topsim" not in first
    assert second["eval/accuracy"] == [(200, 0.75)]
    assert second["generation/topsim"] == [(400, 0.5)] and second["generation"] == [(200, 0.0), (400, 1.0)]


def test_no_backend_is_a_silent_no_op(tmp_path):
    sinks = open_sinks(None, False, run_name="demo", config={})
    sinks.evaluation(0, EVALS[0])
    sinks.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing, flags, flag", [("tensorboard", ("tb", False), "--tensorboard"),
                                                  ("wandb", (None, True), "--wandb")])
def test_a_missing_package_is_one_line_naming_the_extra_before_any_folder(tmp_path, monkeypatch, missing, flags,
                                                                          flag):
    monkeypatch.setattr(logging_sinks, "_installed", lambda package: package != missing)
    tensorboard = None if flags[0] is None else tmp_path / flags[0]
    with pytest.raises(ValueError) as error:
        open_sinks(tensorboard, flags[1], run_name="demo", config={})
    message = str(error.value)
    assert "\n" not in message and message.startswith(flag) and missing in message
    assert 'pip install -e ".[log]"' in message
    assert list(tmp_path.iterdir()) == []


def test_bad_tensorboard_folder_and_bad_arguments_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--tensorboard .*not a directory"):
        check_available(tmp_path / "file", False)
    with pytest.raises(ValueError, match="--tensorboard ''"):
        check_available("", False)
    with pytest.raises(ValueError, match="runs"):
        open_sinks(None, False, run_name="demo", config={}, runs=["seed0", "seed0"])
    with pytest.raises(ValueError, match="config: 1 mappings for 2 runs"):
        open_sinks(None, False, run_name="demo", config=[{}], runs=["a", "b"])


@needs_tensorboard
def test_the_image_track_steps_by_epoch(tmp_path):
    record = {"generation": 1, "epoch": 20, "seed": 0, "strategy": "llf", "test_accuracy": 0.5, "val_accuracy": None}
    with open_sinks(tmp_path, False, run_name="digits", config={}, step="epoch") as sinks:
        sinks.generation(0, record)
    assert read_tensorboard(tmp_path) == {"generation": [(20, 1.0)], "generation/test_accuracy": [(20, 0.5)]}


@needs_tensorboard
def test_bad_run_index_and_record_without_iteration_are_refused(tmp_path):
    with open_sinks(tmp_path, False, run_name="demo", config={}, runs=["a", "b"]) as sinks:
        with pytest.raises(ValueError, match=r"run 2: allowed range is 0..1"):
            sinks.evaluation(2, EVALS[0])
        with pytest.raises(ValueError, match="iteration"):
            sinks.generation(0, {"generation": 0, "topsim": 0.5})


# -- wandb, offline -------------------------------------------------------------------------------
def wandb_records(path: str) -> list:
    """The protobuf records of an offline run file (.wandb: a LevelDB-style log of 32 KiB blocks,
    after a 7-byte ':W&B' header; each chunk: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    position, buffer, records = 7, b"", []
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if left < 7 or (kind == 0 and length == 0):  # block padding
            position += left
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        buffer = chunk if kind in (1, 2) else buffer + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buffer)
            records.append(record)
    return records


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield tmp_path / "wandb-runs"
    import wandb

    wandb.teardown()  # stop the service process this test started


@needs_wandb
def test_wandb_offline_one_grouped_run_per_seed_holds_the_logged_scalars(offline_wandb):
    import wandb

    configs = [{"seed": 0, "lr": 0.01}, {"seed": 3, "lr": 0.01}]
    with open_sinks(None, True, run_name="referential-pbf", config=configs, runs=["seed0", "seed3"],
                    wandb_dir=offline_wandb) as sinks:
        sinks.evaluation(1, EVALS[0])
        sinks.generation(1, GENERATION)
        sinks.evaluation(0, EVALS[1])
    wandb.teardown()  # the service has written and closed every run file
    files = sorted(glob.glob(str(offline_wandb / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2
    runs = {}
    for path in files:
        records = wandb_records(path)
        run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
        config = {item.key: json.loads(item.value_json) for item in run.config.update}
        history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        assert run.project == "emergent-frl" and run.run_group == "referential-pbf"
        runs[run.display_name] = (config, history)
    assert set(runs) == {"referential-pbf/seed0", "referential-pbf/seed3"}
    config, history = runs["referential-pbf/seed3"]
    assert config["seed"] == 3 and config["lr"] == 0.01
    assert len(history) == 2
    assert history[0]["iteration"] == 100 and history[0]["eval/accuracy"] == 0.5
    assert "eval/posdis" not in history[0] and "eval/holdout_accuracy" not in history[0]
    assert history[1]["iteration"] == 200 and history[1]["generation/topsim_after_forgetting"] == 0.125
    (_, only), = [runs["referential-pbf/seed0"]]
    assert len(only) == 1 and only[0]["eval/posdis"] == 0.125 and math.isclose(only[0]["eval/train_loss"], -0.6)


@needs_tensorboard
def test_the_game_script_writes_each_seeds_evaluations_and_generations(tmp_path):
    from games import referential

    flags = ["--n-values", "3", "--vocab-size", "6", "--n-candidates", "3", "--batch-size", "8", "--hidden-size", "8",
             "--generations", "2", "--iterations-per-generation", "20", "--eval-every", "10", "--seeds", "0-1",
             "--no-plot", "--no-progress", "--tensorboard", str(tmp_path / "events"), "--out", str(tmp_path / "run")]
    assert referential.main(flags) == 0
    for seed in (0, 1):
        scalars_written = read_tensorboard(tmp_path / "events" / f"seed{seed}")
        evaluations = [json.loads(line) for line in
                       (tmp_path / "run" / f"seed{seed}" / "evaluations.jsonl").read_text().splitlines()]
        assert [step for step, _ in scalars_written["eval/accuracy"]] == [10, 20, 30, 40]
        assert [value for _, value in scalars_written["eval/accuracy"]] == pytest.approx(
            [e["accuracy"] for e in evaluations])
        assert [step for step, _ in scalars_written["generation/accuracy"]] == [20, 40]  # topsim may be nan
