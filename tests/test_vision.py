"""Image track: models, data, strategies (exactly the selected weights forgotten), trainer, resume, CLI."""

from __future__ import annotations

import builtins
import json
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from emergent_frl.vision.datasets import DataConfig, ImageData, check_image_folder, load_data, split_digits
from emergent_frl.vision.experiment import ImageRunConfig, prepare_run, resolve_device, run_image_classification
from emergent_frl.vision.footprint import model_costs
from emergent_frl.vision.models import build_model, import_torchvision
from emergent_frl.vision.splits import TensorAugment, TensorSplit, random_shift
from emergent_frl.vision.strategies import StrategyConfig
from emergent_frl.vision.trainer import GenerationTrainer, TrainConfig, derived_generator, learning_rate
from games import image_classification

try:
    import torchvision  # noqa: F401

    HAVE_TORCHVISION = True
except Exception:  # pragma: no cover - depends on the machine
    HAVE_TORCHVISION = False

needs_torchvision = pytest.mark.skipif(not HAVE_TORCHVISION, reason="torchvision not importable")


def tiny_data(n_per_class: int = 6, classes: int = 3, size: int = 8) -> ImageData:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    images = torch.rand(labels.shape[0], 3, size, size, generator=generator)
    images[:, 0] += labels[:, None, None] * 0.5  # learnable from the red channel
    split = TensorSplit(images.clamp(0, 1), labels, mean=[0.5] * 3, std=[0.3] * 3, augment=TensorAugment(shift=1))
    return ImageData("tiny", split, split, split, num_classes=classes, image_size=size)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed_keys(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def forget_once(arch: str, strategy: StrategyConfig, **model_kwargs) -> tuple[nn.Module, dict, GenerationTrainer]:
    model = build_model(arch, 10, generator=derived_generator(0, 0), **model_kwargs)
    trainer = GenerationTrainer(model, tiny_data(), TrainConfig(), seed=0, operator=strategy.build_operator(model, arch))
    before = snapshot(model)
    trainer.forget(1)
    return model, before, trainer


# ------------------------------------------------------------------------------------ models
def test_small_cnn_and_mlp_shapes_and_seeded_init():
    x = torch.randn(4, 3, 16, 16)
    for arch in ("small_cnn", "mlp"):
        a = build_model(arch, 7, image_size=16, generator=torch.Generator().manual_seed(3))
        b = build_model(arch, 7, image_size=16, generator=torch.Generator().manual_seed(3))
        c = build_model(arch, 7, image_size=16, generator=torch.Generator().manual_seed(4))
        assert a(x).shape == (4, 7)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    names = [n for n, _ in build_model("small_cnn", 10).named_children()]
    assert names == ["layer1", "layer2", "layer3", "avgpool", "fc"]


def test_reference_init_is_kaiming_fan_in():
    model = build_model("mlp", 10, image_size=32, width=600, generator=torch.Generator().manual_seed(0))
    std = model.fc1.weight.std().item()
    assert abs(std - math.sqrt(2.0 / model.fc1.in_features)) < 0.02 * math.sqrt(2.0 / model.fc1.in_features) * 5


@needs_torchvision
def test_resnet18_cifar_stem_keeps_names_and_order():
    model = build_model("resnet18", 10, stem="cifar")
    assert [n for n, _ in model.named_children()][:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_resnet_without_torchvision_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(ValueError, match=r"pip install emergent-frl\[vision\]"):
        build_model("resnet18", 10)
    with pytest.raises(ValueError, match=r"pip install emergent-frl\[vision\]"):
        import_torchvision("--dataset cifar10")
    assert build_model("small_cnn", 10)(torch.randn(2, 3, 16, 16)).shape == (2, 10)  # no torchvision needed
    assert len(load_data(DataConfig(train_per_class=2)).train) == 20


# --------------------------------------------------------------------------------- forgetting
def test_llf_small_cnn_forgets_exactly_layer3_conv_and_fc_weight():
    model, before, _ = forget_once("small_cnn", StrategyConfig("llf", layer="layer3"))
    assert changed_keys(before, model) == {"layer3.conv.weight", "fc.weight"}  # BN, fc.bias, earlier layers kept


def test_reverse_llf_small_cnn_forgets_only_the_earlier_layers():
    model, before, _ = forget_once("small_cnn", StrategyConfig("llf", layer="layer3", reverse=True))
    assert changed_keys(before, model) == {"layer1.conv.weight", "layer2.conv.weight"}


@needs_torchvision
def test_llf_resnet18_forgets_layer4_convs_and_fc_weight_only():
    model, before, trainer = forget_once("resnet18", StrategyConfig("llf"), stem="cifar")
    expected = {k for k, v in before.items() if k.startswith("layer4.") and v.ndim == 4} | {"fc.weight"}
    assert "layer4.0.downsample.0.weight" in expected
    assert changed_keys(before, model) == expected
    forgotten = sum(before[k].numel() for k in expected)
    weights = sum(v.numel() for k, v in before.items() if v.ndim >= 2)
    assert 0.70 < forgotten / weights < 0.80  # "about 75 % of ResNet18's conv + fc weights"


def test_ke_kels_mask_density_and_fit_hypothesis_kept():
    model, before, trainer = forget_once("small_cnn", StrategyConfig("ke", split_mode="kels", split_rate=0.5), width=8)
    masks = trainer.operator.masks()
    # first conv keeps all 3 input channels: ceil(.5*8)=4 of 8 output channels
    assert masks["layer1.conv.weight"].float().mean().item() == pytest.approx(4 / 8)
    assert masks["layer2.conv.weight"].float().mean().item() == pytest.approx((8 / 16) * (4 / 8))
    assert masks["fc.weight"].float().mean().item() == pytest.approx(16 / 32)  # all classes, first half of inputs
    for name, mask in masks.items():
        after = model.state_dict()[name]
        assert torch.equal(after[mask], before[name][mask])  # fit hypothesis bit-identical
        assert not torch.equal(after[~mask], before[name][~mask])  # reset hypothesis re-drawn
    assert changed_keys(before, model) == set(masks)


@settings(max_examples=25, deadline=None)
@given(width=st.integers(4, 12), split_rate=st.floats(0.05, 0.95), classes=st.integers(2, 12))
@example(width=5, split_rate=0.05000000000000001, classes=2)  # a rate one ulp above 1/20
def test_ke_kels_masks_are_the_documented_top_left_blocks(width, split_rate, classes):
    """Every kels mask keeps exactly the ceil(r*out) x ceil(r*in) top-left kernels (stem: all 3 inputs;
    classifier: all classes), and forgetting changes nothing else. (width >= 4: the operator library
    treats any conv with <= 3 input channels as the RGB stem.)"""
    model = build_model("small_cnn", classes, width=width, generator=derived_generator(0, 0))
    operator = StrategyConfig("ke", split_mode="kels", split_rate=split_rate).build_operator(model, "small_cnn")
    trainer = GenerationTrainer(model, tiny_data(), TrainConfig(), seed=0, operator=operator)
    before = snapshot(model)
    trainer.forget(1)
    masks = operator.masks()
    assert set(masks) == {n for n, p in model.named_parameters() if p.ndim >= 2}
    for name, mask in masks.items():
        out_dim, in_dim = mask.shape[:2]
        # ceil of the rate as written times the count, in exact decimals (0.05000000000000001 x 20
        # is just above 1, so 2 rows; a float product with a tolerance would say 1)
        written = Fraction(repr(split_rate))
        rows = out_dim if name == "fc.weight" else math.ceil(written * out_dim)
        cols = in_dim if name == "layer1.conv.weight" else math.ceil(written * in_dim)
        expected = torch.zeros_like(mask)
        expected[:rows, :cols] = True
        assert torch.equal(mask, expected), name
        after = model.state_dict()[name]
        assert torch.equal(after[mask], before[name][mask])
    assert changed_keys(before, model) <= set(masks)


def test_ke_wels_mask_density_near_split_rate():
    _, _, trainer = forget_once("small_cnn", StrategyConfig("ke", split_mode="wels", split_rate=0.8))
    masks = trainer.operator.masks()
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert abs(kept / total - 0.8) < 0.01  # ~100k Bernoulli draws


def test_imp_holds_pruned_weights_at_zero_while_training():
    data = tiny_data()
    model = build_model("small_cnn", 3, width=4, generator=derived_generator(0, 0))
    strategy = StrategyConfig("imp", prune_fraction=0.2)
    config = TrainConfig(generations=3, epochs=2, batch_size=6, lr=0.1, warmup_epochs=0)
    trainer = GenerationTrainer(model, data, config, seed=0, operator=strategy.build_operator(model, "small_cnn"),
                                strategy="imp")
    records = trainer.run()
    masks = trainer.operator.masks()
    assert set(masks) == {n for n, p in model.named_parameters() if p.ndim >= 2}
    for name, mask in masks.items():
        weight = model.get_parameter(name)
        assert torch.count_nonzero(weight[~mask]) == 0  # still exactly zero after 2 epochs of SGD with momentum
        assert torch.count_nonzero(weight[mask]) == int(mask.sum())
        pruned = 1 - mask.float().mean().item()
        assert abs(pruned - (1 - 0.8 ** 2)) < 0.05  # two rounds of 20 % of the survivors
    assert records[1]["forgotten_fraction"] > 0 and records[0]["forgotten_fraction"] == 0


@pytest.mark.parametrize("scope", ["model", "weights"])
def test_imp_rewinds_survivors_and_with_scope_model_everything_else(scope):
    """IMP: pruned weights 0, surviving weights back at init; biases and BatchNorm (parameters and
    running statistics) back at init too with rewind_scope='model', untouched with 'weights'."""
    model = build_model("small_cnn", 3, width=4, generator=derived_generator(0, 0))
    strategy = StrategyConfig("imp", prune_fraction=0.5, rewind_scope=scope)
    trainer = GenerationTrainer(model, tiny_data(), TrainConfig(generations=1, epochs=2, batch_size=6),
                                seed=0, operator=strategy.build_operator(model, "small_cnn"),
                                rewind_model=strategy.rewinds_model, strategy="imp")
    init = snapshot(model)
    trainer.run()
    trained = snapshot(model)
    assert {"fc.bias", "layer1.bn.bias", "layer1.bn.running_var"} <= changed_keys(init, model)  # training moved them
    trainer.forget(1)
    after = model.state_dict()
    masks = trainer.operator.masks()
    for name, mask in masks.items():
        assert torch.count_nonzero(after[name][~mask]) == 0
        assert torch.equal(after[name][mask], init[name][mask])
        assert abs(mask.float().mean().item() - 0.5) < 0.1
    others = [k for k in init if k not in masks]
    assert "layer1.bn.running_mean" in others and "fc.bias" in others
    reference = init if scope == "model" else trained
    assert all(torch.equal(after[k], reference[k]) for k in others)


# ----------------------------------------------------------------------------- schedule, data
def test_learning_rate_schedule_matches_reference_per_epoch():
    lrs = [learning_rate(1.0, e, 10, 5) for e in range(10)]
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert lrs[5] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 5)))
    assert learning_rate(1.0, 10, 10, 0) == pytest.approx(0.0)


def test_digits_split_is_stratified_disjoint_and_seeded():
    labels = load_data(DataConfig()).train.labels  # loads once to warm the import
    from sklearn.datasets import load_digits

    all_labels = load_digits().target
    train, val, test = split_digits(all_labels, DataConfig(val_fraction=0.1))
    assert len(set(train) | set(val) | set(test)) == len(train) + len(val) + len(test) == 1797
    assert abs(len(test) / 1797 - 0.25) < 0.01
    again = split_digits(all_labels, DataConfig(val_fraction=0.1))
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = split_digits(all_labels, DataConfig(val_fraction=0.1, split_seed=1))
    assert not np.array_equal(train, other[0])
    few, _, _ = split_digits(all_labels, DataConfig(train_per_class=7))
    assert np.bincount(all_labels[few]).tolist() == [7] * 10
    assert labels.shape[0] == len(train)


def test_digits_batches_are_normalized_shifted_and_seeded():
    data = load_data(DataConfig(train_per_class=10, image_size=16))
    images = data.train.normalized()
    assert images.shape == (100, 3, 16, 16)
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05
    a = list(data.train.batches(32, train=True, generator=torch.Generator().manual_seed(1)))
    b = list(data.train.batches(32, train=True, generator=torch.Generator().manual_seed(1)))
    assert [x.shape[0] for x, _ in a] == [32, 32, 32, 4]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == sorted(data.train.labels.tolist())


def test_random_shift_moves_each_image_by_an_integer_offset():
    images = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5) + 1
    assert torch.equal(random_shift(images, 0, None), images)
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    for original, moved in zip(images, shifted):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(moved[0][max(0, -dy):5 - max(0, dy), max(0, -dx):5 - max(0, dx)],
                                  original[0][max(0, dy):5 + min(0, dy), max(0, dx):5 + min(0, dx)])]
        assert len(matches) == 1
        assert int((moved == 0).sum()) == 25 - (5 - abs(matches[0][0])) * (5 - abs(matches[0][1]))


def test_missing_and_malformed_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"missing or malformed.*expected layout: .*\{train,val,test\}/<class>"):
        check_image_folder(tmp_path / "nowhere")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="'train' holds 1 class folders"):
        check_image_folder(tmp_path)


def write_image_folder(root, splits=("train", "test"), classes=("cat", "dog"), per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")


def image_file_split(root, workers: int):
    """A LoaderSplit over 8 small PNGs (2 classes), with the reference's augmenting transforms."""
    from emergent_frl.vision.datasets import file_transforms
    from emergent_frl.vision.splits import LoaderSplit

    if not (root / "train").exists():
        write_image_folder(root, splits=("train",))
    datasets = import_torchvision("image files").datasets
    views = [datasets.ImageFolder(str(root / "train"), transform=t) for t in file_transforms(16, augment=True)]
    return LoaderSplit(*views, workers=workers)


@needs_torchvision
def test_image_file_augmentation_is_fixed_by_the_seed_whatever_the_workers(tmp_path):
    def epoch(workers, seed):
        split = image_file_split(tmp_path, workers)
        return [b for b in split.batches(3, train=True, generator=torch.Generator().manual_seed(seed))]

    global_state = torch.get_rng_state()
    in_process = epoch(0, seed=5)
    assert torch.equal(torch.get_rng_state(), global_state)  # augmentation leaves the caller's RNG alone
    assert [x.shape[0] for x, _ in in_process] == [3, 3, 2]
    with_workers = epoch(2, seed=5)
    for (x0, y0), (x2, y2) in zip(in_process, with_workers, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    other_epoch = epoch(0, seed=6)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(in_process, other_epoch))
    # the same examples are still all there once per epoch
    assert sorted(torch.cat([y for _, y in other_epoch]).tolist()) == [0] * 4 + [1] * 4


@needs_torchvision
def test_loader_split_keeps_its_worker_processes_across_epochs(tmp_path):
    split = image_file_split(tmp_path, workers=1)
    first = [x for x, _ in split.batches(4, train=True, generator=torch.Generator().manual_seed(0))]
    workers = split._loaders[(True, 4)]._iterator._workers
    second = [x for x, _ in split.batches(4, train=True, generator=torch.Generator().manual_seed(1))]
    assert split._loaders[(True, 4)]._iterator._workers == workers and workers[0].is_alive()
    assert not torch.equal(first[0], second[0])


@needs_torchvision
def test_image_folder_tree_trains_end_to_end(tmp_path):
    write_image_folder(tmp_path)
    data_config = DataConfig("imagefolder", data_root=str(tmp_path), image_size=16, val_fraction=0.25, workers=0)
    data = load_data(data_config)
    assert data.sizes() == {"train": 6, "val": 2, "test": 8} and data.num_classes == 2
    x, y = next(data.train.batches(4, train=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 16, 16)
    records = run_image_classification(ImageRunConfig(data=data_config, train=TrainConfig(generations=2, epochs=1,
                                                                                          batch_size=4)))
    assert [r["generation"] for r in records] == [0, 1] and all(0 <= r["test_accuracy"] <= 1 for r in records)


@needs_torchvision
def test_missing_cifar_gives_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"cifar-10-batches-py.*nothing is downloaded"):
        load_data(DataConfig("cifar10", data_root=str(tmp_path)))


# ----------------------------------------------------------------------------- trainer, resume
TINY_ARGS = ["--train-per-class", "4", "--width", "4", "--epochs", "1", "--batch-size", "10", "--lr", "0.05",
             "--val-fraction", "0.05", "--no-progress"]


def strip_seconds(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in (path / "generations.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["llf", "imp", "imp-late-rewind"])
def test_resume_after_fewer_generations_equals_uninterrupted_run(tmp_path, strategy):
    full, part = tmp_path / "full", tmp_path / "part"
    args = TINY_ARGS + ["--strategy", strategy.split("-")[0]]
    if strategy == "imp-late-rewind":  # the rewind point (weights, BN, biases) must survive the restart
        args += ["--epochs", "2", "--rewind-epoch", "1"]
    assert image_classification.main(args + ["--generations", "3", "--out", str(full)]) == 0
    assert image_classification.main(args + ["--generations", "1", "--out", str(part)]) == 0
    assert image_classification.main(["--resume", str(part), "--generations", "3", "--no-progress"]) == 0
    uninterrupted, resumed = read_records(full), read_records(part)
    assert [r["generation"] for r in resumed] == [0, 1, 2]
    assert strip_seconds(resumed) == strip_seconds(uninterrupted)
    assert json.loads((part / "config.json").read_text())["generations"] == 3


@needs_torchvision
def test_image_file_run_resumes_identically(tmp_path):
    # augmentation of image files (RandomResizedCrop, flip) is seeded per example, not drawn from
    # the global RNG, so the generation after a restart sees the same crops as uninterrupted
    write_image_folder(tmp_path / "images")
    args = ["--dataset", "imagefolder", "--data-root", str(tmp_path / "images"), "--image-size", "16",
            "--val-fraction", "0.25", "--width", "4", "--epochs", "1", "--batch-size", "3", "--workers", "0",
            "--strategy", "llf", "--no-progress"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert image_classification.main(args + ["--generations", "2", "--out", str(full)]) == 0
    assert image_classification.main(args + ["--generations", "1", "--out", str(part)]) == 0
    assert image_classification.main(["--resume", str(part), "--generations", "2", "--no-progress"]) == 0
    assert strip_seconds(read_records(part)) == strip_seconds(read_records(full))


def test_long_baseline_resumes_mid_schedule_identically(tmp_path):
    config = ImageRunConfig(data=DataConfig(train_per_class=4, val_fraction=0.05), width=4,
                            train=TrainConfig(generations=3, epochs=1, batch_size=10),
                            strategy=StrategyConfig("long_baseline"))
    uninterrupted = run_image_classification(config, str(tmp_path / "full"))

    def crash_after_first(record):
        if record["generation"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_image_classification(config, str(tmp_path / "part"), on_record=crash_after_first)
    resumed = run_image_classification(config, str(tmp_path / "part"), resume=True)
    assert strip_seconds(read_records(tmp_path / "part")) == strip_seconds(uninterrupted)
    assert [r["epoch"] for r in resumed] == [1, 2, 3]


def test_training_learns_digits_beyond_chance():
    config = ImageRunConfig(data=DataConfig(train_per_class=15, val_fraction=0.05), width=8,
                            train=TrainConfig(generations=2, epochs=4, batch_size=16, lr=0.1),
                            strategy=StrategyConfig("llf"))
    records = run_image_classification(config)
    assert records[-1]["test_accuracy"] > 0.5  # chance is 0.1; this seed reaches 0.64
    assert records[-1]["test_accuracy"] > records[0]["test_accuracy"]  # relearning after LLF improves
    assert records[1]["forgotten_fraction"] > 0.5  # layer3 + fc hold most of the small CNN


@pytest.mark.parametrize("argv, flag", [
    (["--epochs", "0"], "--epochs"), (["--lr", "-1"], "--lr"), (["--strategy", "llf", "--layer", "nope"], "--layer"),
    (["--split-rate", "1.5", "--strategy", "ke"], "--split-rate"), (["--rewind-epoch", "5", "--epochs", "2"], "--rewind-epoch"),
    (["--width", "8", "--arch", "resnet18"], "--width"), (["--device", "cuda:7"], "--device"),
    (["--dataset", "imagefolder", "--data-root", "/nonexistent/x"], "expected layout"),
    (["--dataset", "cub200", "--data-root", "/nonexistent/x"], "/nonexistent/x/CUB200/{train,val,test}/<class>"),
    (["--strategy", "ke", "--layer", "layer2"], "--layer applies to --strategy llf only"),
    (["--strategy", "none", "--rewind-epoch", "1"], "--rewind-epoch applies to --strategy imp only"),
    (["--layer", "layer1", "--reverse"], "selects no conv or linear weight"),
    (["--lr", "nan"], "--lr nan: not a finite number"), (["--seed", "4294967296"], "--seed"),
    (["--device", "mps"], "--device"), (["--epochs", "1.5"], "argument --epochs"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, flag):
    if "cuda" in " ".join(argv) and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    assert image_classification.main(argv + ["--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and flag in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing written before the arguments are valid


def test_resume_rejects_changed_settings(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert image_classification.main(TINY_ARGS + ["--generations", "1", "--out", out]) == 0
    assert image_classification.main(["--resume", out, "--lr", "0.5", "--no-progress"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert image_classification.main(["--resume", out, "--generations", "2", "--no-progress"]) == 0
    assert image_classification.main(["--resume", out, "--generations", "1", "--no-progress"]) == 2
    assert "already holds 2 generations" in capsys.readouterr().err
    assert image_classification.main(["--resume", out]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert image_classification.main(TINY_ARGS + ["--generations", "1", "--out", out]) == 2  # never overwrite


def test_seeds_write_one_run_per_seed_and_one_plot_like_the_games(tmp_path, capsys):
    out = tmp_path / "batch"
    argv = TINY_ARGS + ["--generations", "2"]
    assert image_classification.main(argv + ["--seeds", "0-1", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "seed0", "seed1"]
    assert json.loads((out / "seed1" / "config.json").read_text())["seed"] == 1
    assert (out / "accuracy.png").stat().st_size > 10_000
    # each seed is the run `--seed S` makes alone, and a single run gets its own plot
    assert image_classification.main(argv + ["--seed", "1", "--out", str(tmp_path / "one")]) == 0
    assert strip_seconds(read_records(out / "seed1")) == strip_seconds(read_records(tmp_path / "one"))
    assert strip_seconds(read_records(out / "seed0")) != strip_seconds(read_records(out / "seed1"))
    assert (tmp_path / "one" / "accuracy.png").stat().st_size > 10_000
    assert image_classification.main(argv + ["--seeds", "2", "--no-plot", "--out", str(tmp_path / "bare")]) == 0
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["seed2"]
    assert capsys.readouterr().out == ""  # --no-progress: no per-generation lines


def test_progress_lines_and_the_deprecated_quiet(tmp_path, capsys):
    argv = [a for a in TINY_ARGS if a != "--no-progress"] + ["--generations", "2", "--no-plot"]
    assert image_classification.main(argv + ["--seeds", "3", "--out", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[1:]] == [["seed", "3", "gen", "0"], ["seed", "3", "gen", "1"]]
    assert image_classification.main(argv + ["--quiet", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,0"], "--seeds 0,0: a seed is given twice"),
    (["--seeds", "-1"], "--seeds -1: expected integers"),
    (["--seeds", "4294967296"], "--seeds 4294967296: allowed range is 0..4294967295"),
    (["--seeds", "0-1", "--seed", "3"], "--seeds: give --seed or --seeds, not both"),
    (["--seeds", "0", "1"], "unrecognized arguments: 1"),
])
def test_bad_seed_lists_exit_2_before_any_work(tmp_path, capsys, argv, message):
    assert image_classification.main(TINY_ARGS + argv + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_seeds_cannot_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert image_classification.main(TINY_ARGS + ["--generations", "1", "--out", out]) == 0
    assert image_classification.main(["--resume", out, "--seeds", "0-1"]) == 2
    assert "--seeds: cannot be combined with --resume" in capsys.readouterr().err


def test_edited_configuration_values_of_the_wrong_type_name_the_flag():
    """config.json may be edited by hand: text for a number, a bool for a count, NaN: one ValueError
    naming the flag, never a TypeError from a comparison."""
    flat = ImageRunConfig().to_flat()
    for key, value, message in [("epochs", "10", "--epochs '10': expected an integer"),
                                ("batch_size", True, "--batch-size True: expected an integer"),
                                ("lr", "0.1", "--lr '0.1': expected a number"),
                                ("augment", "yes", "--augment 'yes': expected true or false"),
                                ("width", 4.5, "--width 4.5: expected an integer or none"),
                                ("strategy", 3, "--strategy 3: expected text"),
                                ("momentum", float("inf"), "--momentum inf: not a finite number")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            ImageRunConfig.from_flat({**flat, key: value}).validate()
    ImageRunConfig.from_flat({**flat, "width": None, "lr": 1}).validate()  # None where allowed, an int for a float


@pytest.mark.parametrize("name", ["mps", "cpu:5", "cuda:9", "gpu", "", "meta"])
def test_devices_this_machine_lacks_are_refused_with_the_allowed_ones(name):
    if name == "cuda:9" and torch.cuda.device_count() > 9:
        pytest.skip("this machine has a cuda:9")
    with pytest.raises(ValueError, match=r"^--device .*allowed on this machine: auto, cpu"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("arch, width", [("small_cnn", 8), ("mlp", 30),
                                         pytest.param("resnet18", None, marks=needs_torchvision)])
def test_memory_estimate_counts_the_built_model_exactly(arch, width):
    costs = model_costs(arch, 10, image_size=16, width=width)
    model = build_model(arch, 10, image_size=16, width=width)
    assert costs.parameters == sum(p.numel() for p in model.parameters())
    outputs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o.numel()))
             for m in model.modules() if not list(m.children())]
    model.eval()(torch.randn(1, 3, 16, 16))
    for hook in hooks:
        hook.remove()
    assert costs.outputs == sum(outputs)


def test_a_run_that_would_not_fit_is_refused_naming_the_flag_and_the_memory():
    config = ImageRunConfig(data=DataConfig(train_per_class=2), width=4, train=TrainConfig(batch_size=4096))
    footprint = config.footprint()
    assert footprint.bytes["training"] == max(footprint.bytes.values())
    config.check_fits(torch.device("cpu"), available=footprint.total)  # exactly enough
    with pytest.raises(ValueError, match=r"^--batch-size 4096: the run would need about .* of memory \(parameters "
                                         r".*\), 1\.0 MiB is available on cpu; reduce --batch-size$"):
        config.check_fits(torch.device("cpu"), available=2**20)
    assert ImageRunConfig().footprint().total < 2**28  # the default digits run: well under 256 MiB


def test_prepare_run_reports_forgettable_layer_defaults():
    prepared = prepare_run(ImageRunConfig(data=DataConfig(train_per_class=2), width=4))
    assert prepared.trainer.operator is not None and prepared.device.type in ("cpu", "cuda")
    assert prepared.config.strategy.forget_layer("small_cnn") == "layer3"
