"""Forgetting operators: selection, masks, reset values, policies, resume, on agents and CNNs."""
from __future__ import annotations

import copy
import io
import math
from fractions import Fraction

import pytest
import torch
from torch import nn

from emergent_frl.forgetting import (
    ForgetReport,
    ForgettingOperator,
    MaskCriterion,
    ParameterSelection,
    ResetValue,
    full_reset,
    knowledge_evolution,
    later_layer_forgetting,
    magnitude_pruning,
    partial_forgetting,
    reset_module,
)

try:
    import torchvision
except Exception as exc:  # pragma: no cover - depends on the machine
    torchvision = None
    TORCHVISION_ERROR = repr(exc)


# ----------------------------------------------------------------------------- models
class Agent(nn.Module):
    """Language-agent-like module: embedding, recurrent cells, nn.LSTM, head, a plain parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.cell = nn.LSTMCell(4, 8)
        self.gru = nn.GRUCell(4, 8)
        self.rnn = nn.RNNCell(4, 8)
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.head = nn.Linear(8, 5)
        self.scale = nn.Parameter(torch.empty(3))
        nn.init.uniform_(self.scale, 2.0, 3.0)

    def reset_parameters(self) -> None:  # only the root's own parameter; children init themselves
        nn.init.uniform_(self.scale, 2.0, 3.0)


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class NoInit(nn.Module):
    """A plain parameter on a module (and ancestors) without reset_parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.lin = nn.Linear(4, 4)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def build(cls, seed: int = 0, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**kwargs)


@pytest.fixture(scope="module")
def resnet18_template():
    if torchvision is None:
        pytest.skip(f"torchvision does not import here: {TORCHVISION_ERROR}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18(num_classes=10)


@pytest.fixture
def resnet18(resnet18_template):
    return copy.deepcopy(resnet18_template)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().view(torch.int32) if t.dtype == torch.float32 else t.detach()


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(bits(a), bits(b))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before: dict, model: nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not bits_equal(before[k], v)}


def perturb(model: nn.Module, seed: int = 1) -> None:
    """Stand-in for training: move every parameter by a random amount."""
    g = seeded(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


# ----------------------------------------------------------------------------- selection
def test_selection_modules_from_module_invert_and_filters():
    model = build(SmallCNN)
    names = lambda sel: list(sel.select(model))  # noqa: E731
    assert names(ParameterSelection()) == ["conv1.weight", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]
    assert names(ParameterSelection(include_norm=True)) == [n for n, _ in model.named_parameters()]
    assert names(ParameterSelection(modules=("fc", "conv1"))) == ["conv1.weight", "fc.weight", "fc.bias"]
    onward = ParameterSelection(from_module="bn2", include_norm=True)
    assert names(onward) == ["bn2.weight", "bn2.bias", "fc.weight", "fc.bias"]
    before = ParameterSelection(from_module="conv2", invert=True, include_norm=True)
    assert names(before) == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert names(ParameterSelection(parameters="weights")) == ["conv1.weight", "conv2.weight", "fc.weight"]
    assert names(ParameterSelection(modules="fc")) == ["fc.weight", "fc.bias"]  # a bare string is one name


def test_selection_matches_dotted_boundaries_only():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    picked = list(ParameterSelection(modules=("1",)).select(model))
    assert picked == ["1.weight", "1.bias"]  # not 10.*, 11.*


def test_selection_missing_module_names_it_and_lists_top_level():
    with pytest.raises(ValueError, match=r"modules.*'decoder'.*embed, cell, gru, rnn, lstm, head"):
        ParameterSelection(modules=("decoder",)).select(build(Agent))
    with pytest.raises(ValueError, match=r"from_module.*'layer9'"):
        ParameterSelection(from_module="layer9").select(build(SmallCNN))


def test_llf_on_resnet18_changes_exactly_layer4_convs_and_fc_weight(resnet18):
    model = resnet18
    perturb(model)  # non-trivial BN affine parameters ...
    for layer in model.modules():  # ... and running statistics, all of which must survive
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
    before = snapshot(model)
    op = later_layer_forgetting("layer4")
    op.prepare(model)
    report = op.apply(model, generator=seeded(0))
    expected = {
        "layer4.0.conv1.weight", "layer4.0.conv2.weight", "layer4.0.downsample.0.weight",
        "layer4.1.conv1.weight", "layer4.1.conv2.weight", "fc.weight",
    }
    assert changed(before, model) == expected
    assert set(report.forgotten) == expected and report.fraction == 1.0
    for name in expected:  # every entry re-drawn, not just some
        assert (before[name] != model.state_dict()[name]).float().mean() > 0.99


def test_early_layer_forgetting_on_resnet18_is_the_complement(resnet18):
    model = resnet18
    before = snapshot(model)
    later_layer_forgetting("layer4", reverse=True).apply(model, generator=seeded(0))
    conv_weights = {n for n, p in model.named_parameters() if p.ndim == 4}
    expected = {n for n in conv_weights if not n.startswith("layer4.")}
    assert changed(before, model) == expected
    assert "conv1.weight" in expected and "layer3.1.conv2.weight" in expected


# ----------------------------------------------------------------------------- keep 1 / keep 0
@pytest.mark.parametrize("kind", ["magnitude", "bernoulli"])
@pytest.mark.parametrize("timing", ["each", "once_init", "once_trained"])
def test_keep_fraction_one_changes_nothing(kind, timing):
    model = build(Agent)
    before = snapshot(model)
    op = partial_forgetting(1.0, mask=kind, timing=timing)
    op.prepare(model)
    report = op.apply(model, generator=seeded(3))
    assert changed(before, model) == set()
    assert report.fraction == 0.0 and sum(report.total.values()) == sum(p.numel() for p in model.parameters())


def test_kels_split_rate_one_changes_nothing():
    model = build(SmallCNN)
    before = snapshot(model)
    op = knowledge_evolution(1.0, "kels")
    op.prepare(model)
    assert op.apply(model).fraction == 0.0
    assert changed(before, model) == set()


@pytest.mark.parametrize("kind", ["magnitude", "bernoulli"])
def test_keep_fraction_zero_equals_reset_module(kind):
    a = build(Agent)
    b = copy.deepcopy(a)
    report = partial_forgetting(0.0, mask=kind, timing="each").apply(a, generator=seeded(7))
    reset_module(b, generator=seeded(7))
    assert report.fraction == 1.0
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert bits_equal(pa, pb), name
    assert not bits_equal(a.head.weight, build(Agent).head.weight)


def test_full_reset_equals_reset_module_including_norm_layers():
    a, b = build(SmallCNN), None
    a.train()
    a(torch.randn(4, 3, 8, 8))
    b = copy.deepcopy(a)
    report = full_reset().apply(a, generator=seeded(11))
    reset_module(b, generator=seeded(11))
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert bits_equal(va, vb), name
    assert torch.equal(a.bn1.running_var, torch.ones(8)) and torch.equal(a.bn1.running_mean, torch.zeros(8))
    assert int(a.bn2.num_batches_tracked) == 0
    assert report.norm_layers_reset == ["bn1", "bn2"]


# ----------------------------------------------------------------------------- masks and values
@pytest.mark.parametrize("reset", ["reinit", "zero"])
def test_entries_outside_the_forget_mask_are_bit_identical(reset):
    model = build(Agent)
    before = snapshot(model)
    op = partial_forgetting(0.4, mask="bernoulli", timing="each", reset=reset)
    op.apply(model, generator=seeded(2))
    masks = op.masks()
    assert set(masks) == {n for n, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        kept = masks[name]
        assert torch.equal(bits(p)[kept], bits(before[name])[kept]), name
        if reset == "zero":
            assert torch.all(p.detach()[~kept] == 0)
        elif (~kept).sum() > 10:
            assert (p.detach()[~kept] != before[name][~kept]).float().mean() > 0.9, name


def test_reinit_values_come_from_each_modules_initializer():
    model = build(Agent)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(100.0)
    full_reset().apply(model, generator=seeded(0))
    linear_bound = 1 / math.sqrt(8)  # kaiming_uniform(a=sqrt(5)) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = model.head.weight.detach()
    assert w.abs().max() <= linear_bound and w.abs().max() > 0.8 * linear_bound
    rnn_bound = 1 / math.sqrt(8)  # LSTM/GRU/RNN cells: U(-1/sqrt(hidden), 1/sqrt(hidden))
    for module in (model.cell, model.gru, model.rnn, model.lstm):
        for p in module.parameters():
            assert p.abs().max() <= rnn_bound and p.abs().max() > 0.5 * rnn_bound
    emb = model.embed.weight.detach()  # N(0, 1)
    assert emb.abs().max() > 1.0 and abs(emb.mean()) < 0.6
    assert torch.all((model.scale >= 2.0) & (model.scale <= 3.0))  # the root's own reset_parameters


def test_reinit_without_any_initializer_raises_before_changing_anything():
    model = build(NoInit)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'w'.*reset_parameters"):
        full_reset().apply(model)
    assert changed(before, model) == set()
    full_reset(modules=("lin",)).apply(model)  # a module that has one is fine
    op = ForgettingOperator(ParameterSelection(modules=("",)), MaskCriterion("all"), ResetValue("zero"))
    op.apply(model)
    assert torch.all(model.w == 0)


def test_reinit_draws_leave_the_global_rng_untouched():
    model = build(Agent)
    state = torch.get_rng_state()
    op = partial_forgetting(0.3, mask="bernoulli", timing="once_init")
    op.prepare(model)
    op.apply(model)
    op.apply(model, generator=seeded(1))
    reset_module(model, generator=seeded(2))
    later_layer_forgetting("head").apply(model)
    assert torch.equal(torch.get_rng_state(), state)


def test_fixed_seed_gives_identical_reinit_values_across_generations():
    model = build(SmallCNN)
    op = later_layer_forgetting("conv2", fixed_seed=5)
    op.apply(model, generator=seeded(0))
    first = model.fc.weight.detach().clone(), model.conv2.weight.detach().clone()
    perturb(model)
    op.apply(model, generator=seeded(99))
    assert bits_equal(model.fc.weight, first[0]) and bits_equal(model.conv2.weight, first[1])
    free = later_layer_forgetting("conv2")
    free.apply(model, generator=seeded(0))
    again = model.fc.weight.detach().clone()
    free.apply(model, generator=seeded(1))
    assert not bits_equal(model.fc.weight, again)


def test_rewind_reset_restores_the_prepare_snapshot_and_late_rewind_point():
    model = build(SmallCNN)
    op = ForgettingOperator(ParameterSelection(modules=("fc",)), MaskCriterion("all"), ResetValue("rewind"))
    op.prepare(model)
    init = model.fc.weight.detach().clone()
    perturb(model)
    op.apply(model)
    assert bits_equal(model.fc.weight, init)
    perturb(model, seed=2)
    late = model.fc.weight.detach().clone()
    op.set_rewind_point(model)
    perturb(model, seed=3)
    op.apply(model)
    assert bits_equal(model.fc.weight, late)


# ----------------------------------------------------------------------------- KE
@pytest.mark.parametrize("rate", [0.5, 0.8, 0.7])
def test_kels_masks_have_the_documented_blocks(rate):
    model = build(SmallCNN, classes=10)
    op = knowledge_evolution(rate, "kels")
    op.prepare(model)
    masks = op.masks()
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc.weight"}
    r = Fraction(str(rate))
    ceil = lambda n: math.ceil(n * r)  # noqa: E731
    expected_blocks = {"conv1.weight": (ceil(8), 3), "conv2.weight": (ceil(16), ceil(8)), "fc.weight": (10, ceil(16))}
    for name, (rows, cols) in expected_blocks.items():
        m = masks[name]
        assert m.sum() == rows * cols * (m[0, 0].numel()), name
        assert m[:rows, :cols].all() and not m[rows:].any() and not m[:, cols:].any(), name


def test_kels_density_on_resnet18_per_tensor(resnet18):
    model = resnet18
    op = knowledge_evolution(0.8, "kels")
    op.prepare(model)
    masks = op.masks()
    for name, p in model.named_parameters():
        if p.ndim < 2:
            assert name not in masks
            continue
        out, inp = p.shape[:2]
        rows = out if name == "fc.weight" else math.ceil(out * Fraction(4, 5))
        cols = inp if name == "conv1.weight" else math.ceil(inp * Fraction(4, 5))
        assert masks[name].float().mean().item() == pytest.approx(rows * cols / (out * inp), abs=1e-9), name
    assert masks["fc.weight"][:, :410].all() and not masks["fc.weight"][:, 410:].any()


def test_wels_density_is_the_split_rate_and_the_mask_is_fixed():
    model = build(SmallCNN)
    op = knowledge_evolution(0.3, "wels")
    op.prepare(model, generator=seeded(4))
    masks = op.masks()
    n = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert abs(kept - 0.3 * n) <= 5 * math.sqrt(n * 0.3 * 0.7)
    before = snapshot(model)
    op.apply(model, generator=seeded(5))
    perturb(model)
    op.apply(model, generator=seeded(6))
    for name, m in op.masks().items():
        assert torch.equal(m, masks[name])
    assert not bits_equal(model.conv2.bias, before["conv2.bias"])  # perturbed, not forgotten: biases unselected


def test_wels_new_mask_redraws_each_generation():
    model = build(SmallCNN)
    op = knowledge_evolution(0.5, "wels", new_mask=True)
    op.prepare(model)
    op.apply(model, generator=seeded(1))
    first = op.masks()
    op.apply(model, generator=seeded(2))
    assert not torch.equal(first["conv2.weight"], op.masks()["conv2.weight"])


# ----------------------------------------------------------------------------- mask timing
def test_same_mask_timing_reuses_masks_and_each_redraws():
    model = build(Agent)
    same = partial_forgetting(0.5, mask="bernoulli", timing="once_init")
    same.prepare(model, generator=seeded(0))
    each = partial_forgetting(0.5, mask="bernoulli", timing="each")
    seen_same, seen_each = [], []
    for gen in range(3):
        perturb(model, seed=gen)
        same.apply(model, generator=seeded(10 + gen))
        each.apply(model, generator=seeded(10 + gen))
        seen_same.append(same.masks())
        seen_each.append(each.masks())
    for masks in seen_same[1:]:
        assert all(torch.equal(masks[n], seen_same[0][n]) for n in masks)
    assert not torch.equal(seen_each[0]["head.weight"], seen_each[1]["head.weight"])


def test_once_init_magnitude_mask_comes_from_the_initial_weights():
    model = build(Agent)
    init_w = model.head.weight.detach().clone()
    op = partial_forgetting(0.25, mask="magnitude", timing="once_init")
    op.prepare(model)
    perturb(model)
    op.apply(model)
    kept = op.masks()["head.weight"]
    assert int(kept.sum()) == 40 - math.floor(40 * 0.75)
    assert init_w.abs()[kept].min() >= init_w.abs()[~kept].max()


def test_once_trained_mask_is_taken_at_the_first_apply_then_reused():
    model = build(Agent)
    op = partial_forgetting(0.5, mask="magnitude", timing="once_trained")
    op.prepare(model)
    assert op.masks() == {}
    perturb(model)
    trained = model.head.weight.detach().clone()
    op.apply(model)
    first = op.masks()["head.weight"]
    assert trained.abs()[first].min() >= trained.abs()[~first].max()
    perturb(model, seed=5)
    op.apply(model)
    assert torch.equal(op.masks()["head.weight"], first)


def test_once_init_without_prepare_is_an_error():
    with pytest.raises(RuntimeError, match="prepare"):
        partial_forgetting(0.1).apply(build(Agent))


def test_global_magnitude_ranks_across_tensors():
    model = nn.Sequential(nn.Linear(10, 10, bias=False), nn.Linear(10, 10, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(0.01)
        model[1].weight.fill_(1.0)
    op = ForgettingOperator(
        ParameterSelection(), MaskCriterion("magnitude", 0.5, scope="global"), ResetValue("zero")
    )
    op.apply(model)
    assert torch.all(model[0].weight == 0) and torch.all(model[1].weight == 1.0)


# ----------------------------------------------------------------------------- IMP
def _mlp() -> nn.Module:
    return build(lambda: nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 20)))


def test_imp_zeroes_pruned_rewinds_survivors_and_holds_them_after_steps():
    model = _mlp()
    op = magnitude_pruning(0.2, rewind=True)
    op.prepare(model)
    init = snapshot(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(32, 20, generator=seeded(0)), torch.randn(32, 20, generator=seeded(1))

    def train(steps):
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            op.after_step(model)

    train(5)
    trained = snapshot(model)
    report = op.apply(model)
    masks = op.masks()
    assert set(masks) == {"0.weight", "2.weight"}
    for name, m in masks.items():
        p = model.get_parameter(name)
        assert report.forgotten[name] == math.floor(m.numel() * Fraction(1, 5)) == int((~m).sum())
        assert torch.all(p[~m] == 0)
        assert bits_equal(p[m], init[name][m])  # survivors rewound to init
        assert trained[name].abs()[m].min() >= trained[name].abs()[~m].max()  # smallest trained pruned
    assert bits_equal(model[0].bias, trained["0.bias"])
    train(3)  # momentum still pushes pruned entries; after_step must re-zero them
    for name, m in masks.items():
        p = model.get_parameter(name)
        assert torch.all(p[~m] == 0) and (p[m] != init[name][m]).any()


def test_imp_is_cumulative_keep_to_the_power_g():
    model = build(lambda: nn.Linear(40, 25, bias=False))  # 1000 entries
    op = magnitude_pruning(0.5, rewind=False)
    op.prepare(model)
    kept, expected, previous = [], 1000, None
    for g in range(1, 5):
        perturb(model, seed=g)
        op.after_step(model)
        op.apply(model)
        m = op.masks()["weight"]
        expected -= math.floor(expected * Fraction(1, 2))
        kept.append(int(m.sum()))
        assert int(m.sum()) == expected
        assert abs(int(m.sum()) / 1000 - 0.5**g) <= g / 1000
        if previous is not None:
            assert not (m & ~previous).any()  # pruned entries never come back
        previous = m
        assert torch.all(model.weight[~m] == 0)
    assert kept == [500, 250, 125, 63]


def test_imp_without_rewind_keeps_trained_survivors():
    model = _mlp()
    op = magnitude_pruning(0.2, rewind=False)
    op.prepare(model)
    perturb(model)
    trained = snapshot(model)
    op.apply(model)
    m = op.masks()["2.weight"]
    assert bits_equal(model[2].weight[m], trained["2.weight"][m])


# ----------------------------------------------------------------------------- optimizer and norm policy
def test_optimizer_state_reset_clears_adam_state_of_touched_parameters_only():
    model = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = (model["a"](torch.ones(2, 4)) + model["b"](torch.ones(2, 4))).pow(2).sum()
    loss.backward()
    opt.step()
    b_state = {k: v.clone() for k, v in opt.state[model["b"].weight].items()}
    op = ForgettingOperator(ParameterSelection(modules=("a",)), optimizer_state="reset")
    report = op.apply(model, optimizers=[opt])
    assert report.optimizer_states_cleared == 2
    assert model["a"].weight not in opt.state and model["a"].bias not in opt.state
    assert all(torch.equal(opt.state[model["b"].weight][k], v) for k, v in b_state.items())
    opt.zero_grad()
    model["a"](torch.ones(2, 4)).sum().backward()
    opt.step()  # Adam re-creates fresh moments for the cleared parameters
    assert int(opt.state[model["a"].weight]["step"]) == 1


def test_optimizer_state_reset_without_optimizers_is_an_error():
    op = ForgettingOperator(optimizer_state="reset")
    with pytest.raises(ValueError, match="optimizer_state"):
        op.apply(build(Agent))


def test_norm_statistics_reset_only_for_selected_norm_layers():
    model = build(SmallCNN)
    model.train()
    model(torch.randn(4, 3, 8, 8))
    bn1_mean = model.bn1.running_mean.clone()
    op = ForgettingOperator(
        ParameterSelection(from_module="conv2", parameters="weights"), norm_statistics="reset"
    )
    report = op.apply(model, generator=seeded(0))
    assert report.norm_layers_reset == ["bn2"]
    assert torch.equal(model.bn2.running_var, torch.ones(16)) and torch.equal(model.bn2.running_mean, torch.zeros(16))
    assert torch.equal(model.bn1.running_mean, bn1_mean)


# ----------------------------------------------------------------------------- resume
def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: partial_forgetting(0.3, mask="bernoulli", timing="each"),
        lambda: partial_forgetting(0.3, mask="bernoulli", timing="once_init"),
        lambda: partial_forgetting(0.5, mask="magnitude", timing="once_trained", reset="zero"),
        lambda: magnitude_pruning(0.3),
        lambda: knowledge_evolution(0.5, "wels"),
    ],
    ids=["bernoulli-each", "bernoulli-once", "magnitude-once-trained", "imp", "wels"],
)
def test_state_dict_round_trip_reproduces_the_next_apply(make):
    model = build(SmallCNN)
    op = make()
    op.prepare(model)
    perturb(model, seed=1)
    op.apply(model)
    perturb(model, seed=2)
    saved_model, saved_op = _round_trip(model.state_dict()), _round_trip(op.state_dict())

    op.apply(model)  # the uninterrupted run
    resumed_model = build(SmallCNN, seed=123)
    resumed_model.load_state_dict(saved_model)
    resumed = make()
    resumed.load_state_dict(saved_op)
    assert resumed.applications == 1
    resumed.apply(resumed_model)
    for (name, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        assert bits_equal(a, b), name
    assert all(torch.equal(m, resumed.masks()[n]) for n, m in op.masks().items())


def test_load_state_dict_rejects_a_different_operator():
    model = build(SmallCNN)
    op = partial_forgetting(0.3)
    op.prepare(model)
    with pytest.raises(ValueError, match="mask"):
        partial_forgetting(0.4).load_state_dict(op.state_dict())


def test_operator_prepared_on_another_model_is_refused():
    op = partial_forgetting(0.3)
    op.prepare(build(SmallCNN, classes=10))
    with pytest.raises(ValueError, match="fc.weight"):
        op.apply(build(SmallCNN, classes=7))


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: MaskCriterion(kind="random"), "MaskCriterion.kind"),
        (lambda: MaskCriterion("bernoulli", 1.5), "keep_fraction"),
        (lambda: MaskCriterion("magnitude", -0.1), "keep_fraction"),
        (lambda: MaskCriterion("kels", 0.0), "keep_fraction"),
        (lambda: MaskCriterion("all", 0.5), "keep_fraction"),
        (lambda: MaskCriterion("magnitude", 0.5, scope="layer"), "scope"),
        (lambda: MaskCriterion("bernoulli", 0.5, scope="global"), "scope"),
        (lambda: MaskCriterion("bernoulli", 0.5, timing="never"), "timing"),
        (lambda: MaskCriterion("magnitude", 0.5, timing="once_init", cumulative=True), "cumulative"),
        (lambda: MaskCriterion("kels", 0.5, cumulative=True), "cumulative"),
        (lambda: ResetValue("random"), "ResetValue.kind"),
        (lambda: ResetValue("zero", fixed_seed=1), "fixed_seed"),
        (lambda: ParameterSelection(parameters="biases"), "ParameterSelection.parameters"),
        (lambda: ForgettingOperator(kept="init"), "kept"),
        (lambda: ForgettingOperator(optimizer_state="drop"), "optimizer_state"),
        (lambda: ForgettingOperator(norm_statistics="drop"), "norm_statistics"),
        (lambda: ForgettingOperator(hold_forgotten_at_zero=True), "hold_forgotten_at_zero"),
        (lambda: ForgettingOperator(mask="all"), "mask"),
        (lambda: partial_forgetting(1.2), "keep_fraction"),
        (lambda: knowledge_evolution(0.5, "kernel"), "mode"),
        (lambda: knowledge_evolution(1.5, "kels"), "split rate"),
        (lambda: magnitude_pruning(1.5), "prune_fraction"),
    ],
)
def test_bad_configuration_raises_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_error_message_names_value_and_allowed_values():
    with pytest.raises(ValueError) as info:
        MaskCriterion(kind="random")
    assert "'random'" in str(info.value) and "magnitude" in str(info.value) and "kels" in str(info.value)


def test_report_fraction_and_dict():
    report = ForgetReport(forgotten={"a": 1, "b": 3}, total={"a": 4, "b": 4})
    assert report.fraction == 0.5
    assert report.to_dict()["fraction"] == 0.5
    assert ForgetReport({}, {}).fraction == 0.0


# ----------------------------------------------------------------------------- properties
try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=40, deadline=None)
    @given(
        shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
        keep=st.floats(0.0, 1.0),
        seed=st.integers(0, 2**16),
        scope=st.sampled_from(["tensor", "global"]),
    )
    def test_magnitude_masks_keep_exactly_the_largest_entries(shape, keep, seed, scope):
        g = seeded(seed)
        params = {"a": torch.randn(shape, generator=g), "b": torch.randn(shape[::-1], generator=g)}
        masks = MaskCriterion("magnitude", keep, scope=scope).compute(params, generator=g)
        groups = [("a",), ("b",)] if scope == "tensor" else [("a", "b")]
        for group in groups:
            values = torch.cat([params[n].abs().reshape(-1) for n in group])
            kept = torch.cat([masks[n].reshape(-1) for n in group])
            n = values.numel()
            assert int(kept.sum()) == n - math.floor(n * (1 - Fraction(repr(keep))))
            if kept.any() and (~kept).any():
                assert values[kept].min() >= values[~kept].max()

    @settings(max_examples=25, deadline=None)
    @given(keep=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), reset=st.sampled_from(["reinit", "zero"]))
    def test_apply_never_changes_kept_entries(keep, seed, reset):
        model = build(Agent, seed=seed % 7)
        before = snapshot(model)
        op = partial_forgetting(keep, mask="bernoulli", timing="each", reset=reset, seed=seed)
        report = op.apply(model)
        for name, p in model.named_parameters():
            m = op.masks()[name]
            assert torch.equal(bits(p)[m], bits(before[name])[m])
            assert report.forgotten[name] == int((~m).sum())
