"""The game scripts: help, presets, bad-input handling (one line, exit 2), run directory output."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from games import reconstruction, referential
from games.cli import build_parser, config_from_args
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
     (["--preset", "ren"], "--preset ren: is a reconstruction preset"),
     (["--holdout", "random"], "--holdout-fraction 0.0: must be in (0, 1) with a holdout"),
     (["--device", "gpu0"], "--device gpu0: must be a torch device")],
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
        "python -m games.referential: error: --device cuda: CUDA is not available on this machine\n"
    )


def test_tiny_run_writes_config_and_generation_record(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--n-values", "2", "3", "--vocab-size", "6", "--n-candidates", "3", "--hidden-size", "16",
            "--iterations", "20", "--batch-size", "8", "--eval-every", "10", "--seed", "3", "--out", str(out)]
    assert referential.main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["n_values"] == [2, 3] and config["vocab_size"] == 6 and config["seed"] == 3
    assert config["iterations"] == 20 and config["game"] == "referential" and config["argv"] == argv
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["generation"] == 0 and record["iteration"] == 20
    assert 0.0 <= record["accuracy"] <= 1.0 and "topsim" in record
    evaluations = json.loads((out / "evaluations.json").read_text())
    assert [e["iteration"] for e in evaluations] == [10, 20]
    language = json.loads((out / "language.json").read_text())
    assert len(language["messages"]) == 6 and all(len(m) == 2 for m in language["messages"])
    # A second run into the same directory is refused rather than overwriting it.
    with pytest.raises(SystemExit) as info:
        referential.main(["--iterations", "5", "--out", str(out)])
    assert info.value.code == 2 and "already holds a run" in capsys.readouterr().err


def test_reconstruction_run_from_preset_with_overrides(tmp_path):
    out = tmp_path / "ren"
    assert reconstruction.main(["--preset", "ren", "--iterations", "5", "--hidden-size", "8",
                                "--eval-every", "0", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["game"] == "reconstruction" and config["n_values"] == 8 and config["hidden_size"] == 8
    assert config["batch_size"] == load_preset("ren")["batch_size"]
    record = json.loads((out / "generations.jsonl").read_text())
    assert record["iteration"] == 5 and {"accuracy", "topsim", "posdis", "bosdis"} <= record.keys()


def test_presets_hold_the_paper_settings():
    assert {"paper", "ren"} <= set(available_presets())
    parser = build_parser("referential")
    config = config_from_args(parser.parse_args(["--preset", "paper", "--out", "x"]), "referential")
    assert (config.n_attributes, config.n_values, config.vocab_size, config.max_len) == (2, [8, 4], 8, 2)
    assert (config.n_candidates, config.hidden_size, config.batch_size, config.cell) == (5, 100, 100, "lstm")
    assert config.lr_sender == config.lr_receiver == 1e-3
    assert config.sender_entropy_coeff == config.receiver_entropy_coeff == 0.1
    ren = config_from_args(build_parser("reconstruction").parse_args(["--preset", "ren", "--out", "x"]),
                           "reconstruction")
    assert (ren.n_attributes, ren.n_values, ren.vocab_size, ren.max_len, ren.hidden_size) == (2, 8, 8, 2, 128)


def test_parser_is_extensible_by_other_scripts():
    parser = build_parser("referential")
    group = parser.add_argument_group("generations")
    group.add_argument("--generations", type=int, default=1)
    args = parser.parse_args(["--generations", "4", "--lr", "0.01", "--seed", "2", "--out", "x"])
    config = config_from_args(args, "referential")
    assert args.generations == 4 and config.seed == 2
    assert config.lr_sender == config.lr_receiver == 0.01
