"""Targeted-forgetting probe: label noise, group metrics, the KE-/IMP-style operators, the script,
and the torch-free summary and plot in analysis.probe_plot."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from analysis.probe_plot import find_probes, load_probe, plot_probe, probe_summary, summary_table
from emergent_frl.vision.models import build_model
from emergent_frl.vision.probe import (ProbeConfig, TargetedForgettingProbe, classifier_name, corrupt_labels,
                                       group_metrics, probe_operators, softmax_margin)
from games import targeted_forgetting


def test_corrupt_labels_changes_exactly_the_flagged_fraction():
    labels = torch.arange(10).repeat(30)
    noisy, flags = corrupt_labels(labels, 0.2, 10, torch.Generator().manual_seed(0))
    assert int(flags.sum()) == 60
    assert torch.all(noisy[flags] != labels[flags]) and torch.equal(noisy[~flags], labels[~flags])
    assert noisy.min() >= 0 and noisy.max() <= 9
    again, _ = corrupt_labels(labels, 0.2, 10, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_group_metrics_values():
    logits = torch.tensor([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0], [10.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    groups = {"a": torch.tensor([True, True, False, False]), "b": torch.tensor([False, False, True, True])}
    metrics = group_metrics(logits, labels, groups)
    assert metrics["a"]["accuracy"] == 1.0 and metrics["a"]["n"] == 2
    assert metrics["b"]["accuracy"] == 0.0  # a tie goes to class 0
    assert metrics["b"]["entropy"] == pytest.approx((math.log(2) + metrics["a"]["entropy"]) / 2, rel=1e-4)
    assert metrics["b"]["loss"] == pytest.approx((math.log(2) + 10.0) / 2, abs=1e-3)
    assert softmax_margin(logits)[2].item() == pytest.approx(0.0)


def test_random_operator_keeps_half_of_body_and_three_quarters_of_classifier():
    model = build_model("mlp", 10, image_size=16, generator=torch.Generator().manual_seed(0))
    assert classifier_name(model) == "fc3"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    body, head = probe_operators(model, ProbeConfig(operator="random", keep_fraction=0.5))
    for operator in (body, head):
        operator.prepare(model)
        operator.apply(model, generator=torch.Generator().manual_seed(1))
    kept_body = body.masks()["fc1.weight"].float().mean().item()
    kept_head = head.masks()["fc3.weight"].float().mean().item()
    assert abs(kept_body - 0.5) < 0.01 and abs(kept_head - 0.75) < 0.05
    after = model.state_dict()
    for name in ("fc1.bias", "fc2.bias", "fc3.bias"):
        assert torch.equal(after[name], before[name])
    mask = body.masks()["fc1.weight"]
    assert torch.equal(after["fc1.weight"][mask], before["fc1.weight"][mask])
    assert torch.all(after["fc1.weight"][~mask] != before["fc1.weight"][~mask])


def test_magnitude_operator_rewinds_largest_trained_weights_and_zeroes_the_rest():
    model = build_model("mlp", 10, image_size=8, width=30, generator=torch.Generator().manual_seed(0))
    body, head = probe_operators(model, ProbeConfig(operator="magnitude", keep_fraction=0.3))
    init = {k: v.clone() for k, v in model.state_dict().items()}
    for operator in (body, head):
        operator.prepare(model)
    with torch.no_grad():  # "training" moved the weights
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    for operator in (body, head):
        operator.apply(model)
    weight, mask = model.fc1.weight, body.masks()["fc1.weight"]
    assert abs(mask.float().mean().item() - 0.3) < 0.01
    assert torch.equal(weight[mask], init["fc1.weight"][mask]) and torch.count_nonzero(weight[~mask]) == 0
    assert trained["fc1.weight"][mask].abs().min() >= trained["fc1.weight"][~mask].abs().max()
    assert abs(head.masks()["fc3.weight"].float().mean().item() - 0.65) < 0.02


def test_probe_measures_a_copy_and_leaves_training_model_untouched():
    probe = TargetedForgettingProbe(ProbeConfig(steps=20, measure_every=10, train_per_class=20, width=30))
    records = probe.run()
    assert [r["step"] for r in records] == [10, 20]
    state = {k: v.clone() for k, v in probe.model.state_dict().items()}
    record = probe.measure(20, 5)
    assert all(torch.equal(state[k], v) for k, v in probe.model.state_dict().items())
    assert record["before"]["mislabeled"]["n"] == 20 and record["before"]["clean"]["n"] == 180
    assert record["before"]["all"]["n"] == 200
    assert 0 <= record["after"]["mislabeled"]["true_label_accuracy"] <= 1


def test_margin_groups_take_the_lowest_margin_share():
    probe = TargetedForgettingProbe(ProbeConfig(grouping="margin", noise_fraction=0.0, steps=5, measure_every=5,
                                                train_per_class=20, width=30))
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(0))
    groups = probe.groups(logits)
    margins = softmax_margin(logits)
    assert int(groups["hard"].sum()) == 20
    assert margins[groups["hard"]].max() <= margins[groups["easy"]].min()


def test_script_writes_probe_json_and_summary(tmp_path, capsys):
    out = tmp_path / "probe"
    argv = ["--steps", "30", "--measure-every", "15", "--train-per-class", "20", "--width", "30", "--seeds", "0-1",
            "--out", str(out), "--no-progress"]
    assert targeted_forgetting.main(argv) == 0
    printed = capsys.readouterr().out
    assert "gap: drop(mislabeled) - drop(clean)" in printed
    probe = json.loads((out / "seed1" / "probe.json").read_text())
    assert probe["groups"] == ["clean", "mislabeled"] and len(probe["measurements"]) == 2
    assert json.loads((out / "seed1" / "config.json").read_text())["seed"] == 1
    # the same command again: finished seeds reused as they are, an interrupted one redone
    finished = (out / "seed1" / "probe.json").read_bytes()
    cut = json.loads((out / "seed0" / "probe.json").read_text())
    cut["measurements"] = cut["measurements"][:1]
    (out / "seed0" / "probe.json").write_text(json.dumps(cut))
    assert targeted_forgetting.main(argv) == 0
    assert (out / "seed1" / "probe.json").read_bytes() == finished
    assert len(json.loads((out / "seed0" / "probe.json").read_text())["measurements"]) == 2
    other = [a if a != "30" else "45" for a in argv]  # other settings: never overwritten
    assert targeted_forgetting.main(other) == 2
    assert "steps=30" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [(["--noise-fraction", "2"], "--noise-fraction"),
                                         (["--measure-every", "0"], "--measure-every"),
                                         (["--seeds", "1,1"], "--seeds 1,1: a seed is given twice"), (["--keep-fraction", "-1"], "--keep-fraction"),
                                         (["--keep-fraction", "nan"], "--keep-fraction nan: not a finite number"),
                                         (["--seeds", "4294967296"], "--seeds 4294967296: allowed range is 0.."),
                                         (["--device", "mps"], "--device"), (["--width", "0"], "--width")])
def test_script_rejects_bad_arguments(tmp_path, capsys, argv, flag):
    assert targeted_forgetting.main(argv + ["--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and flag in err and "\n" not in err
    assert not (tmp_path / "p").exists()  # nothing made before the arguments are valid


def test_probe_memory_check_names_the_flag_before_loading_anything():
    config = ProbeConfig(arch="small_cnn", width=512, train_per_class=20)
    with pytest.raises(ValueError, match=r"^--width 512: the run would need about .* 1\.0 MiB is available on cpu"):
        config.check_fits(torch.device("cpu"), available=2**20)
    ProbeConfig().check_fits(torch.device("cpu"), available=2**30)  # the default probe: under 1 GiB


@pytest.mark.slow
def test_ke_style_forgetting_hits_the_mislabeled_group_harder():
    """The paper's claim at small scale: after memorizing 15 % wrong labels, random re-init of half
    the weights removes more of the mislabeled group's fit than of the clean group's."""
    probe = TargetedForgettingProbe(ProbeConfig(noise_fraction=0.15, steps=1500, measure_every=1500, draws=3))
    final = probe.run()[-1]
    assert final["before"]["mislabeled"]["accuracy"] > 0.9  # memorized
    drop = {g: final["before"][g]["accuracy"] - final["after"][g]["accuracy"] for g in ("clean", "mislabeled")}
    assert drop["mislabeled"] > drop["clean"] + 0.1


# ------------------------------------------------------------------------------ analysis side
def fake_probe(seed: int, drops: tuple[float, float]) -> dict:
    def metrics(acc):
        return {"n": 10, "accuracy": acc, "loss": 1.0 - acc, "entropy": 0.5}

    return {"config": {"seed": seed}, "groups": ["clean", "mislabeled"],
            "measurements": [{"step": 100, "epoch": 1.0,
                              "before": {"clean": metrics(1.0), "mislabeled": metrics(0.9)},
                              "after": {"clean": metrics(1.0 - drops[0]), "mislabeled": metrics(0.9 - drops[1])}}]}


def test_probe_summary_means_and_gap(tmp_path):
    probes = [fake_probe(0, (0.1, 0.5)), fake_probe(1, (0.2, 0.4)), fake_probe(2, (0.3, 0.6))]
    summary = probe_summary(probes)
    assert summary["per_group"]["clean"]["damage"][0] == pytest.approx(0.2)
    assert summary["per_group"]["mislabeled"]["after"][0] == pytest.approx(0.4)
    assert summary["gap"][0] == pytest.approx(0.3) and summary["gap"][2] == 3
    assert summary["gap"][1] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-4)  # t(0.975, 2) * sd / sqrt(n)
    table = summary_table(summary)
    assert "| gap: drop(mislabeled) - drop(clean) | | | 30.0 ± 24.8 |" in table
    assert "true_label" not in summary and "true class" not in table
    for probe in probes:
        last = probe["measurements"][-1]
        last["before"]["mislabeled"]["true_label_accuracy"], last["after"]["mislabeled"]["true_label_accuracy"] = 0.0, 0.3
    assert "| mislabeled, predicted as the true class | 0.0 ± 0.0 | 30.0 ± 0.0 | |" in summary_table(probe_summary(probes))
    for i, probe in enumerate(probes):
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "probe.json").write_text(json.dumps(probe))
    found = find_probes([tmp_path])
    assert len(found) == 3 and load_probe(found[0])["path"] == str(found[0])
    plot_probe([load_probe(p) for p in found], str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    loss = probe_summary(probes, "loss")  # loss = 1 - accuracy here: it rises by what accuracy drops
    assert loss["per_group"]["mislabeled"]["damage"][0] == pytest.approx(0.5) and loss["gap"][0] == pytest.approx(0.3)
    assert "| gap: rise(mislabeled) - rise(clean) | | | 0.30 ± 0.25 |" in summary_table(loss)


def test_analysis_plot_draws_a_probe_folder(tmp_path, capsys):
    from analysis import plot

    for i in range(2):
        (tmp_path / f"seed{i}").mkdir()
        (tmp_path / f"seed{i}" / "probe.json").write_text(json.dumps(fake_probe(i, (0.1, 0.5 + 0.1 * i))))
    assert plot.main([str(tmp_path), "--metric", "entropy", "--out", str(tmp_path / "p.png")]) == 0
    assert "| group | entropy before |" in capsys.readouterr().out
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert plot.main([str(tmp_path), "--metric", "topsim", "--out", str(tmp_path / "q.png")]) == 2
    assert "accuracy, loss, entropy" in capsys.readouterr().err


def test_probe_loader_rejects_malformed_files(tmp_path):
    (tmp_path / "probe.json").write_text("{\"groups\": [\"a\"]}")
    with pytest.raises(ValueError, match="two groups"):
        load_probe(tmp_path)
    with pytest.raises(ValueError, match="mix groupings"):
        other = fake_probe(1, (0.1, 0.1))
        other["groups"] = ["easy", "hard"]
        probe_summary([fake_probe(0, (0.1, 0.1)), other])


def test_probe_plot_module_does_not_import_torch():
    code = "import sys, analysis.probe_plot; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=str(__import__("pathlib").Path(__file__).parents[1])).returncode == 0
