"""The game scripts: help, presets, bad-input handling (one line, exit 2), run directory output."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from games import reconstruction, referential
from emergent_frl.training import LanguageGameConfig
from games.cli import build_parser, values_from_args
from games.presets import available_presets, load_preset

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_script(module, *args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("script", [referential, reconstruction])
def test_help_lists_the_flags(script, capsys):
    with pytest.raises(SystemExit) as info:
        script.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--preset", "--n-attributes", "--n-values", "--vocab-size", "--max-len", "--hidden-size",
                 "--cell", "--iterations", "--batch-size", "--seed", "--device", "--out"):
        assert flag in text
    assert ("--n-candidates" in text) == (script is referential)


@pytest.mark.parametrize(
    "args, flag",
    [(["--vocab-size", "1"], "--vocab-size 1: must be >= 2"),
     (["--max-len", "0"], "--max-len 0: must be >= 1"),
     (["--n-candidates", "40"], "--n-candidates 40: must be in [2, 32]"),
     (["--cell", "transformer"], "argument --cell: invalid choice: 'transformer'"),
     (["--n-values", "8", "4", "2"], "--n-values 8 4 2:"),
     (["--iterations", "0"], "--iterations 0: must be an integer >= 1"),
     (["--iterations", "1000", "--generations", "3"], "--iterations 1000: must be a multiple of --generations (3)"),
     (["--generations", "0"], "--generations 0: must be an integer >= 1"),
     (["--strategy", "forget_everything"], "argument --strategy: invalid choice"),
     (["--strategy", "partial", "--receiver-keep-fraction", "1.5"], "--receiver-keep-fraction 1.5: must be a number in [0, 1]"),
     (["--resume", "/nonexistent/run"], "--resume: /nonexistent/run holds no config.json"),
     (["--preset", "ren"], "--preset ren: is a reconstruction preset"),
     (["--holdout", "random"], "--holdout-fraction 0.0: must be in (0, 1) with a holdout"),
     (["--device", "gpu0"], "--device gpu0: not a device; allowed on this machine")],
)
def test_nonsense_arguments_exit_2_with_one_line(tmp_path, capsys, args, flag):
    with pytest.raises(SystemExit) as info:
        referential.main([*args, "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0]
    assert not (tmp_path / "run" / "config.json").exists()


def test_script_error_as_a_subprocess_has_no_traceback(tmp_path):
    result = run_script("games.referential", "--vocab-size", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr == "python -m games.referential: error: --vocab-size 1: must be >= 2\n"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        referential.main(["--device", "cuda", "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m games.referential: error: --device cuda: this machine has no cuda device; allowed on this machine: cpu\n"
    )


TINY = ["--n-values", "2", "3", "--vocab-size", "6", "--n-candidates", "3", "--hidden-size", "16",
        "--batch-size", "8", "--eval-every", "10", "--seed", "3", "--threads", "1"]


def records_of(out):
    return [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]


def timeless_records(out):
    """The run's records without their wall times (what a seed fixes)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records_of(out)]


def test_single_generation_run_writes_config_record_language_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TINY, "--iterations", "20", "--generations", "1", "--out", str(out)]
    assert referential.main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["n_values"] == [2, 3] and config["vocab_size"] == 6 and config["seed"] == 3
    assert config["iterations"] == 20 and config["generations"] == 1 and config["argv"] == argv
    assert config["game"] == "referential" and config["strategy"] == "pbf"
    (record,) = records_of(out)
    assert record["generation"] == 0 and record["iteration"] == 20 and record["seed"] == 3
    assert 0.0 <= record["accuracy"] <= 1.0
    # topsim is undefined (null) for a language of one message, and in [-1, 1] otherwise
    assert (record["topsim"] is None) == (record["distinct_messages"] == 1)
    assert record["topsim"] is None or -1.0 <= record["topsim"] <= 1.0
    assert record["topsim_after_forgetting"] is None  # nothing is forgotten after the last generation
    evaluations = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in evaluations] == [10, 20]
    language = json.loads((out / "language.json").read_text())
    assert len(language["messages"]) == 6 and all(len(m) == 2 for m in language["messages"])
    assert (out / "topsim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second run into the same directory is refused rather than overwriting it.
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        referential.main(["--iterations", "5", "--generations", "1", "--out", str(out)])
    assert info.value.code == 2 and "already holds a run" in capsys.readouterr().err
    assert records_of(out) == [record]


def test_generations_run_forgets_between_generations_and_prints_one_line_each(tmp_path, capsys):
    out = tmp_path / "run"
    assert referential.main([*TINY, "--strategy", "reset_receiver", "--iterations", "30",
                             "--iterations-per-generation", "10", "--no-plot", "--out", str(out)]) == 0
    records = records_of(out)
    assert [r["generation"] for r in records] == [0, 1, 2]
    assert [r["iteration"] for r in records] == [10, 20, 30]
    assert all(r["strategy"] == "reset_receiver" for r in records)
    assert [r["receiver_forgotten_fraction"] for r in records[:2]] == [1.0, 1.0]
    assert records[-1]["topsim_after_forgetting"] is None
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p["generation"] for p in printed] == [0, 1, 2]
    assert not (out / "topsim.png").exists()


def test_resume_with_more_generations_equals_the_longer_run(tmp_path):
    """Extending a finished run applies the boundary its last generation skipped, so the records
    equal those of a run launched with the larger --generations (CPU, same seed)."""
    common = [*TINY, "--strategy", "pbf", "--iterations-per-generation", "15", "--no-plot"]
    short, full = tmp_path / "short", tmp_path / "full"
    assert referential.main([*common, "--generations", "2", "--out", str(short)]) == 0
    assert referential.main(["--resume", str(short), "--generations", "3", "--no-plot"]) == 0
    assert referential.main([*common, "--generations", "3", "--out", str(full)]) == 0
    assert timeless_records(short) == timeless_records(full)
    assert json.loads((short / "config.json").read_text())["generations"] == 3


def test_a_single_run_trains_on_the_batched_engine_like_a_one_seed_list(tmp_path):
    """--seed S and --seeds S are one engine: the same records; config.json says which engine (and
    that a run this short trains eager: compiling would not pay for its warm-up)."""
    common = [*TINY, "--strategy", "pbf", "--generations", "2", "--iterations-per-generation", "15", "--no-plot"]
    assert referential.main([*common, "--out", str(tmp_path / "single")]) == 0
    at = common.index("--seed")
    listed = [*common[:at], *common[at + 2:], "--seeds", common[at + 1], "--out", str(tmp_path / "list")]
    assert referential.main(listed) == 0
    single = json.loads((tmp_path / "single" / "config.json").read_text())
    assert single["engine"] == "batched" and single["compile"] is False  # too short for compiling to pay
    assert timeless_records(tmp_path / "single") == timeless_records(tmp_path / "list" / "seed3")


def test_a_resumed_run_keeps_its_compile_setting(tmp_path):
    """A run made with --no-compile resumes eager: its records equal the uninterrupted run's."""
    common = [*TINY, "--strategy", "pbf", "--iterations-per-generation", "15", "--no-plot", "--no-compile"]
    short, full = tmp_path / "short", tmp_path / "full"
    assert referential.main([*common, "--generations", "2", "--out", str(short)]) == 0
    assert json.loads((short / "config.json").read_text())["compile"] is False
    assert referential.main(["--resume", str(short), "--generations", "3", "--no-plot"]) == 0
    assert referential.main([*common, "--generations", "3", "--out", str(full)]) == 0
    assert timeless_records(short) == timeless_records(full)
    assert json.loads((short / "config.json").read_text())["compile"] is False


@pytest.mark.parametrize("engine", ["batched", "reference"])
def test_iterated_learning_trains_on_either_engine(tmp_path, engine):
    out = tmp_path / "run"
    assert referential.main([*TINY, "--strategy", "iterated_learning", "--generations", "2",
                             "--iterations-per-generation", "10", "--imitation-iterations", "5",
                             "--listener-only-iterations", "2", "--no-plot", "--engine", engine,
                             "--no-compile" if engine == "batched" else "--no-plot", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["engine"] == engine and ("compile" in config) == (engine == "batched")
    records = records_of(out)
    assert [r["generation"] for r in records] == [0, 1] and "imitation_accuracy" in records[0]


def test_a_run_without_an_engine_in_its_config_resumes_on_the_reference_engine(tmp_path):
    """Runs made before the engine choice were reference runs; --resume keeps them so, and an
    extended run equals a reference run launched at the full length."""
    common = [*TINY, "--strategy", "pbf", "--iterations-per-generation", "15", "--no-plot", "--engine", "reference"]
    old, full = tmp_path / "old", tmp_path / "full"
    assert referential.main([*common, "--generations", "2", "--out", str(old)]) == 0
    config = json.loads((old / "config.json").read_text())
    assert config.pop("engine") == "reference" and "compile" not in config
    (old / "config.json").write_text(json.dumps(config))  # as an older version wrote it
    assert referential.main(["--resume", str(old), "--generations", "3", "--no-plot"]) == 0
    assert referential.main([*common, "--generations", "3", "--out", str(full)]) == 0
    assert timeless_records(old) == timeless_records(full)


def test_a_run_older_than_the_listener_knobs_resumes_with_the_listener_it_had(tmp_path):
    """Before the knobs, the referential listener sampled its choice (now `reinforce`) and had a
    Linear layer on its message encoding (`receiver_head`); the defaults are now `cross_entropy`
    and no head. A config.json without the keys resumes as it was made: the extended run equals
    such a run launched at the full length."""
    common = [*TINY, "--strategy", "pbf", "--iterations-per-generation", "15", "--no-plot",
              "--receiver-training", "reinforce", "--receiver-head"]
    old, full = tmp_path / "old", tmp_path / "full"
    assert referential.main([*common, "--generations", "2", "--out", str(old)]) == 0
    config = json.loads((old / "config.json").read_text())
    assert config.pop("receiver_training") == "reinforce" and config.pop("receiver_head") is True
    (old / "config.json").write_text(json.dumps(config))  # as an older version wrote it
    assert referential.main(["--resume", str(old), "--generations", "3", "--no-plot"]) == 0
    resumed = json.loads((old / "config.json").read_text())
    assert (resumed["receiver_training"], resumed["receiver_head"]) == ("reinforce", True)
    assert referential.main([*common, "--generations", "3", "--out", str(full)]) == 0
    assert timeless_records(old) == timeless_records(full)


def test_saved_settings_fill_in_the_listener_a_run_had_before_the_knobs():
    from emergent_frl.settings_history import saved_game_settings

    def listener(saved):
        filled = saved_game_settings(saved)
        return filled["receiver_training"], filled["receiver_head"]

    assert listener({"game": "referential", "channel": "reinforce"}) == ("reinforce", True)
    assert listener({"game": "referential", "channel": "gumbel"}) == ("cross_entropy", True)
    assert listener({"game": "reconstruction"}) == ("cross_entropy", False)
    new = {"game": "referential", "receiver_training": "cross_entropy", "receiver_head": False}
    assert saved_game_settings(new) == new
    image = {"dataset": "digits", "model": "small_cnn"}
    assert saved_game_settings(image) == image  # the image track's runs are left as they are


def test_seeds_write_one_run_directory_per_seed_and_one_plot(tmp_path, capsys):
    out = tmp_path / "many"
    at = TINY.index("--seed")
    assert referential.main([*TINY[:at], *TINY[at + 2:], "--seeds", "0-1,4",
                             "--strategy", "pbf", "--generations", "2", "--iterations-per-generation", "10",
                             "--out", str(out)]) == 0
    for seed in (0, 1, 4):
        records = records_of(out / f"seed{seed}")
        assert [r["generation"] for r in records] == [0, 1] and {r["seed"] for r in records} == {seed}
        assert json.loads((out / f"seed{seed}" / "config.json").read_text())["seed"] == seed
    assert records_of(out / "seed0") != records_of(out / "seed1")
    assert (out / "topsim.png").is_file() and not (out / "generations.jsonl").exists()
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sorted((p["seed"], p["generation"]) for p in printed) == [(s, g) for s in (0, 1, 4) for g in (0, 1)]


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0-3", "--seed", "1"], "--seeds: give --seed or --seeds, not both"),
    (["--seeds", "3-1"], "--seeds 3-1: '3-1' is not a range of seeds >= 0"),
    (["--seeds", "0-99999999"], "--seeds 0-99999999: at most 4096 seeds in one process"),
    (["--engine", "reference", "--compile"], "--compile: applies to the batched engine; this run uses --engine reference"),
    (["--engine", "reference", "--no-compile"],
     "--no-compile: applies to the batched engine; this run uses --engine reference"),
    (["--engine", "reference", "--seeds", "0-1"], "--seeds: trains on the batched engine; drop --engine reference"),
    (["--engine", "fast"], "argument --engine: invalid choice: 'fast'"),
])
def test_bad_seed_lists_exit_2_before_any_work(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        referential.main([*args, "--out", str(tmp_path / "run")])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_resume_refuses_changed_settings(tmp_path, capsys):
    out = tmp_path / "run"
    assert referential.main([*TINY, "--iterations", "10", "--generations", "1", "--no-plot", "--out", str(out)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        referential.main(["--resume", str(out), "--hidden-size", "32"])
    assert info.value.code == 2 and "hidden_size=16" in capsys.readouterr().err


def test_reconstruction_run_from_preset_with_overrides(tmp_path):
    out = tmp_path / "ren"
    assert reconstruction.main(["--preset", "ren", "--iterations", "5", "--hidden-size", "8",
                                "--eval-every", "0", "--no-plot", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["game"] == "reconstruction" and config["n_values"] == 8 and config["hidden_size"] == 8
    assert config["batch_size"] == load_preset("ren")["batch_size"] and config["strategy"] == "no_reset"
    (record,) = records_of(out)
    assert record["iteration"] == 5 and {"accuracy", "topsim", "posdis", "bosdis"} <= record.keys()


@pytest.mark.parametrize("strategy", ["pbf", "reset_receiver", "iterated_learning"])
def test_iterations_alone_with_a_forgetting_strategy_is_refused_not_one_silent_generation(strategy, capsys):
    with pytest.raises(SystemExit) as info:
        referential.main(["--iterations", "600", "--strategy", strategy, "--out", "never-written"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1
    assert f"--iterations 600: alone makes one generation, so --strategy {strategy} would never forget" in err[0]
    assert not pathlib.Path("never-written").exists()


@pytest.mark.parametrize(
    "flags, generations, per_generation",
    [([], 4, 2500),
     (["--iterations", "600", "--strategy", "no_reset"], 1, 600),
     (["--iterations", "600", "--generations", "1"], 1, 600),
     (["--iterations", "600", "--generations", "3"], 3, 200),
     (["--iterations", "600", "--iterations-per-generation", "100"], 6, 100),
     (["--generations", "2"], 2, 2500),
     (["--preset", "paper"], 1, 30000),
     (["--preset", "paper", "--generations", "100", "--iterations-per-generation", "3000"], 100, 3000)],
)
def test_run_length_from_any_two_of_three_flags(flags, generations, per_generation):
    values = values_from_args(build_parser("referential").parse_args([*flags, "--out", "x"]), "referential")
    assert (values["generations"], values["iterations_per_generation"]) == (generations, per_generation)


def test_presets_hold_the_paper_settings():
    assert {"paper", "ren"} <= set(available_presets())

    def config(game, *flags):
        values = values_from_args(build_parser(game).parse_args([*flags, "--out", "x"]), game)
        return LanguageGameConfig.from_dict({k: v for k, v in values.items()
                                             if k in LanguageGameConfig.__dataclass_fields__})

    paper = config("referential", "--preset", "paper")
    assert (paper.n_attributes, paper.n_values, paper.vocab_size, paper.max_len) == (2, [8, 4], 8, 2)
    assert (paper.n_candidates, paper.hidden_size, paper.batch_size, paper.cell) == (5, 100, 100, "lstm")
    assert paper.lr_sender == paper.lr_receiver == 1e-3
    assert paper.sender_entropy_coeff == paper.receiver_entropy_coeff == 0.1
    # The paper's listener samples and learns by REINFORCE without a baseline, whatever the defaults.
    assert (paper.receiver_training, paper.baseline, paper.channel) == ("reinforce", False, "reinforce")
    assert paper.receiver_head  # the paper's listener: Linear(100 -> 100) on the message encoding
    ren = config("reconstruction", "--preset", "ren")
    assert (ren.n_attributes, ren.n_values, ren.vocab_size, ren.max_len, ren.hidden_size) == (2, 8, 8, 2, 128)
    tweaked = config("referential", "--preset", "paper", "--lr", "0.01", "--seed", "2")
    assert tweaked.lr_sender == tweaked.lr_receiver == 0.01 and tweaked.seed == 2


def test_every_script_takes_the_same_seed_progress_and_plot_flags():
    """One CLI convention: --seeds as ranges (emergent_frl.batched.parse_seeds), --no-progress, and
    --no-plot where a script draws its run directory's figure."""
    from emergent_frl.batched import parse_seeds
    from games import image_classification, targeted_forgetting

    parsers = {"referential": build_parser("referential"), "reconstruction": build_parser("reconstruction"),
               "image_classification": image_classification.build_parser(),
               "targeted_forgetting": targeted_forgetting.build_parser()}
    for name, parser in parsers.items():
        args = parser.parse_args(["--seeds", "0-1,4", "--no-progress"])
        assert parse_seeds(args.seeds) == [0, 1, 4] and args.progress is False, name
        if name != "targeted_forgetting":  # the probe prints its table; analysis.plot draws it
            assert parser.parse_args(["--no-plot"]).plot is False and parser.parse_args([]).plot is True, name


def test_the_readmes_python_example_runs_and_records_the_operator_by_its_name(tmp_path, monkeypatch, capsys):
    """The README's custom-operator example, as written (shorter generations, a tiny game)."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    block = "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
    assert len(block.strip().splitlines()) <= 15
    tiny = '{"generations": 3, "iterations_per_generation": 20, "n_values": 3, "vocab_size": 4, "hidden_size": 8}'
    code = block.replace('{"generations": 3, "iterations_per_generation": 1000}', tiny)
    assert code != block
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[-3:]] == [["0", "half_listener"], ["1", "half_listener"],
                                                        ["2", "half_listener"]]
    assert 0.4 < float(lines[-3].split()[-1]) < 0.6 and lines[-1].endswith("None")
    assert json.loads((tmp_path / "runs" / "half" / "config.json").read_text())["strategy"] == "half_listener"
