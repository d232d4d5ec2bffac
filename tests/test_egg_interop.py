"""EGG interop: our agents inside EGG's wrappers, EGG games driven in generations, topsim parity.

Tests that need EGG skip when it is not importable (it is not on PyPI); the adapters, the
generation driver (on a torch-only stand-in of an EGG game) and the "nothing imports egg" check
run everywhere.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from analysis.compositionality import topographic_similarity
from analysis.runs import load_run
from emergent_frl.agents import ReconstructionReceiver, ReferentialReceiver, Sender
from emergent_frl.forgetting import full_reset, magnitude_pruning, partial_forgetting
from emergent_frl.games import reconstruction_loss_for
from emergent_frl.interop import (
    EggGenerations,
    ReconstructionReceiverAgent,
    ReferentialReceiverAgent,
    SenderAgent,
    egg_receiver,
    egg_sender,
    evaluate,
    fresh_optimizer,
    receiver_agent,
    require_egg,
    reset_baselines,
    run_egg_generations,
)
from emergent_frl.interop.egg import message_symbols
from emergent_frl.interop.egg_agents import cell_name
from emergent_frl.objects import ObjectSpace
from emergent_frl.runs import to_jsonable

EGG_SKIP_REASON = (
    "EGG (facebookresearch/EGG) is not importable. It is not on PyPI (the PyPI package 'egg' is "
    "unrelated): git clone https://github.com/facebookresearch/EGG && pip install --no-deps -e EGG "
    "&& pip install editdistance rich wandb"
)


@pytest.fixture(scope="module")
def core():
    try:
        return require_egg()
    except ImportError:
        pytest.skip(EGG_SKIP_REASON)


N_VALUES = (4, 4)
SPACE = ObjectSpace(2, list(N_VALUES))
ATTRS = SPACE.objects()  # [16, 2] attribute values
X = SPACE.encode(ATTRS).float()  # [16, 8] one-hot
DATA = [(X, ATTRS)]


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# --------------------------------------------------------------------------------------------
# No EGG needed
# --------------------------------------------------------------------------------------------
IMPORT_CHECK = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    class NoEgg(importlib.abc.MetaPathFinder):  # EGG "not installed", even where it is
        def find_spec(self, name, path=None, target=None):
            if name == "egg" or name.startswith("egg."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    sys.meta_path.insert(0, NoEgg())
    import analysis, emergent_frl
    names = ["emergent_frl.interop"]
    for package in (emergent_frl, analysis):
        names += [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    optional = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:  # an optional dependency (e.g. torchvision) is fine, egg is not
            if (error.name or "").split(".")[0] == "egg":
                raise
            optional.append(name)
    assert not [m for m in sys.modules if m == "egg" or m.startswith("egg.")], "egg was imported"
    from emergent_frl.agents import Sender
    from emergent_frl.interop import egg_sender
    try:
        egg_sender(Sender(8, 5, 2, 16))
    except ImportError as error:
        assert "not on PyPI" in str(error) and "EGG is not installed" in str(error), str(error)
    else:
        raise AssertionError("egg_sender without EGG did not raise ImportError")
    print("ok", len(names), "modules;", "skipped:", optional)
    """
)


def test_no_module_imports_egg_and_missing_egg_gives_install_hint():
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=120,
                            cwd=pathlib.Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok"), result.stdout
    assert "emergent_frl.interop.egg" not in result.stdout.split("skipped:")[1]


def test_adapters_share_our_modules_and_give_egg_shapes():
    sender = Sender(8, vocab_size=5, max_len=2, hidden_size=16, cell="gru")
    agent = SenderAgent(sender)
    assert agent.encoder is sender.encoder and agent.hidden_size == 16
    assert agent(X, None).shape == (16, 16)
    torch.testing.assert_close(agent(X), sender.encoder(X), rtol=0, atol=0)

    referential = ReferentialReceiver(8, vocab_size=5, hidden_size=16)
    ref_agent = receiver_agent(referential)
    assert isinstance(ref_agent, ReferentialReceiverAgent) and ref_agent.head is referential.head
    h, candidates = torch.randn(3, 16), torch.randn(3, 4, 8)
    scores = ref_agent(h, candidates, None)
    assert scores.shape == (3, 4)
    expected = (referential.head(h).unsqueeze(1) * referential.candidate_encoder(candidates)).sum(-1)
    torch.testing.assert_close(scores, expected)
    with pytest.raises(ValueError, match="candidates"):
        ref_agent(h, None)

    reconstruction = ReconstructionReceiver(N_VALUES, vocab_size=5, hidden_size=16, cell="rnn")
    rec_agent = receiver_agent(reconstruction)
    assert isinstance(rec_agent, ReconstructionReceiverAgent) and rec_agent.head is reconstruction.head
    assert rec_agent(h).shape == (3, sum(N_VALUES))
    assert [cell_name(a.cell) for a in (sender, referential, reconstruction)] == ["gru", "lstm", "rnn"]
    with pytest.raises(ValueError, match="Sender"):
        SenderAgent(reconstruction)
    with pytest.raises(ValueError, match="ReferentialReceiver or ReconstructionReceiver"):
        receiver_agent(sender)
    # Argument errors come before EGG is needed.
    with pytest.raises(ValueError, match="mode="):
        egg_sender(sender, mode="pg")
    with pytest.raises(ValueError, match="stochastic"):
        egg_receiver(reconstruction, stochastic=True)
    with pytest.raises(ValueError, match="embed_dim"):
        egg_receiver(referential, embed_dim=0)


class TinyGame(nn.Module):
    """EGG's game protocol with our agents (straight-through Gumbel-Softmax), no EGG needed:
    forward(sender_input, labels, receiver_input, aux_input) -> (loss, interaction)."""

    def __init__(self):
        super().__init__()
        self.sender = Sender(X.shape[1], vocab_size=5, max_len=2, hidden_size=16, channel="gumbel")
        self.receiver = ReconstructionReceiver(N_VALUES, vocab_size=5, hidden_size=16)
        self.loss = reconstruction_loss_for(N_VALUES)

    def forward(self, sender_input, labels, receiver_input=None, aux_input=None):
        sent = self.sender(sender_input)
        logits = self.receiver(sent.symbols).logits
        loss, aux = self.loss(sender_input, sent.message, receiver_input, logits, labels, aux_input)
        return loss.mean(), SimpleNamespace(message=sent.message, aux=aux)


def test_end_generation_resets_receiver_keeps_sender_and_rebuilds_optimizer():
    torch.manual_seed(0)
    game = TinyGame()
    optimizer = torch.optim.Adam(game.parameters(), lr=3e-2)
    driver = EggGenerations(game, {"receiver": full_reset()}, (X, ATTRS), meanings=ATTRS)
    initial_loss = driver.evaluate()["loss"]
    driver.train(DATA, optimizer, 30)
    sender_before, receiver_before = snapshot(game.sender), snapshot(game.receiver)
    record, new_optimizer = driver.end_generation(optimizer, train_loss=1.0)

    for name, value in snapshot(game.sender).items():
        assert torch.equal(value, sender_before[name]), name
    for name, value in snapshot(game.receiver).items():
        assert (value != receiver_before[name]).all(), f"{name} not fully re-drawn"
    assert new_optimizer is not optimizer and type(new_optimizer) is torch.optim.Adam
    assert new_optimizer.param_groups[0]["lr"] == 3e-2 and not new_optimizer.state and optimizer.state
    assert [p for g in new_optimizer.param_groups for p in g["params"]] == list(game.parameters())

    game.eval()
    with torch.no_grad():
        messages = game.sender(X).message.numpy()
    expected = topographic_similarity(ATTRS.numpy(), messages, convention="egg")
    assert record["generation"] == 0 and record["train_loss"] == 1.0 and record["strategy"] == "forget_receiver"
    assert record["forgotten_fraction"] == {"receiver": 1.0}
    assert np.isfinite(expected) and record["topsim"] == pytest.approx(expected, abs=1e-12)
    assert record["topsim_after_forgetting"] == record["topsim"]  # the sender did not change
    assert record["loss"] < initial_loss < record["loss_after_forgetting"] + 1.0
    assert 0.0 <= record["acc"] <= 1.0 and record["acc_after_forgetting"] <= 1.0
    assert driver.records == [record]


def test_partial_forgetting_keeps_masked_entries_bit_identical():
    torch.manual_seed(1)
    game = TinyGame()
    operator = partial_forgetting(0.25)  # keep the 25 % largest-at-init magnitudes, re-draw the rest
    driver = EggGenerations(game, {"sender": operator}, (X, ATTRS), fresh_optimizer=False)
    optimizer = torch.optim.SGD(game.parameters(), lr=0.1)
    driver.train(DATA, optimizer, 3)
    before = snapshot(game.sender)
    receiver_before = snapshot(game.receiver)
    record, same = driver.end_generation(optimizer)
    assert same is optimizer
    masks = operator.masks()
    assert set(masks) == set(before)
    for name, value in snapshot(game.sender).items():
        kept = masks[name]
        assert torch.equal(value[kept], before[name][kept]), name
        assert (value[~kept] != before[name][~kept]).all(), name
    for name, value in snapshot(game.receiver).items():
        assert torch.equal(value, receiver_before[name])
    assert record["forgotten_fraction"]["sender"] == pytest.approx(0.75, abs=0.02)


def test_run_writes_records_readable_by_analysis(tmp_path):
    torch.manual_seed(2)
    game = TinyGame()
    records = run_egg_generations(
        game, DATA, {"receiver": full_reset(), "sender": partial_forgetting(0.5)}, 3, 10,
        eval_batch=(X, ATTRS), meanings=ATTRS, out=tmp_path / "run",
        optimizer=torch.optim.Adam(game.parameters(), lr=3e-2),
    )
    assert [r["generation"] for r in records] == [0, 1, 2]
    assert [r["topsim_after_forgetting"] is None for r in records] == [False, False, True]
    assert "forgotten_fraction" not in records[-1] and all(np.isfinite(r["train_loss"]) for r in records)
    run = load_run(tmp_path / "run")
    assert run["records"] == to_jsonable(records)  # nan (a constant language) is written as null
    assert run["config"]["generations"] == 3 and run["config"]["iterations_per_generation"] == 10
    assert set(run["config"]["operators"]) == {"receiver", "sender"} and run["config"]["egg_game"] == "TinyGame"


def test_no_reset_control_changes_nothing_and_imp_holds_zeros():
    torch.manual_seed(3)
    game = TinyGame()
    driver = EggGenerations(game, {}, (X, ATTRS))
    optimizer = torch.optim.Adam(game.parameters())
    before = snapshot(game)
    record, same = driver.end_generation(optimizer)
    assert same is optimizer and record["strategy"] == "no_reset" and record["topsim_after_forgetting"] is None
    assert all(torch.equal(v, before[n]) for n, v in snapshot(game).items())

    imp = magnitude_pruning(0.5, rewind=False)
    driver = EggGenerations(game, {"receiver": imp}, (X, ATTRS))
    _, optimizer = driver.end_generation(optimizer)
    driver.train(DATA, optimizer, 3)  # after_step() keeps pruned weights at zero while training
    for name, kept in imp.masks().items():
        assert (game.receiver.get_parameter(name)[~kept] == 0).all()
    with pytest.raises(ValueError, match="after_step"):
        driver.trainer_callback(1, 2)


def test_roles_with_the_same_architecture_get_different_draws():
    class Twins(nn.Module):
        def __init__(self):
            super().__init__()
            self.sender, self.receiver = nn.Linear(8, 3), nn.Linear(8, 3)

        def forward(self, x, labels, *rest):
            out = self.sender(x) + self.receiver(x)
            return out.pow(2).mean(), SimpleNamespace(message=out.argmax(-1), aux={})

    game = Twins()
    driver = EggGenerations(game, {"sender": full_reset(), "receiver": full_reset()}, (X, ATTRS), seed=3)
    driver.end_generation(torch.optim.SGD(game.parameters(), lr=0.1))
    assert (game.sender.weight != game.receiver.weight).all()  # one stream for both roles


def test_driver_helpers_and_errors():
    linear = nn.Linear(3, 2)
    optimizer = torch.optim.SGD([{"params": [linear.weight], "lr": 0.5}, {"params": [linear.bias]}], lr=0.1, momentum=0.9)
    linear(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    rebuilt = fresh_optimizer(optimizer)
    assert [g["lr"] for g in rebuilt.param_groups] == [0.5, 0.1] and rebuilt.defaults["momentum"] == 0.9
    assert optimizer.state and not rebuilt.state

    class Mean:
        def __init__(self):
            self.n = 0

        def update(self, loss):
            self.n += 1

        def predict(self, loss):
            return 0.0

    holder = nn.Module()
    holder.baselines = defaultdict(Mean)
    holder.baselines["loss"].update(1.0)
    holder.baseline = Mean()
    holder.baseline.update(1.0)
    assert reset_baselines(holder) == 2 and not holder.baselines and holder.baseline.n == 0

    one_hot = torch.nn.functional.one_hot(torch.tensor([[1, 0], [2, 2]]), 3).float()
    assert message_symbols(one_hot).tolist() == [[1, 0], [2, 2]]
    assert message_symbols(torch.tensor([3, 1])).tolist() == [[3], [1]]

    game = TinyGame()
    with pytest.raises(ValueError, match="no submodule 'listener'"):
        EggGenerations(game, {"listener": full_reset()}, (X, ATTRS))
    with pytest.raises(ValueError, match="ForgettingOperator"):
        EggGenerations(game, {"receiver": "reset"}, (X, ATTRS))
    with pytest.raises(ValueError, match="generations"):
        run_egg_generations(game, DATA, {}, 0, 1, eval_batch=(X, ATTRS))
    with pytest.raises(ValueError, match="no batches"):
        EggGenerations(game, {}, (X, ATTRS)).train([], torch.optim.SGD(game.parameters(), lr=0.1), 1)


# --------------------------------------------------------------------------------------------
# With EGG
# --------------------------------------------------------------------------------------------
def egg_agents(core, mode: str, cell: str = "lstm", vocab_size: int = 5):
    sender = Sender(X.shape[1], vocab_size=vocab_size, max_len=2, hidden_size=16, cell=cell, eos=True)
    receiver = ReconstructionReceiver(N_VALUES, vocab_size=vocab_size, hidden_size=16, cell=cell)
    return sender, receiver, egg_sender(sender, mode=mode), egg_receiver(receiver, mode=mode)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("mode", ["rf", "gs"])
def test_our_agents_inside_egg_wrappers(core, mode, cell):
    sender, receiver, egg_s, egg_r = egg_agents(core, mode, cell)
    assert egg_s.agent.encoder is sender.encoder and egg_r.agent.head is receiver.head
    out = egg_s(X)
    if mode == "rf":
        message, log_prob, entropy = out
        assert message.shape == log_prob.shape == entropy.shape == (16, 3) and message.dtype == torch.long
        assert (message[:, -1] == 0).all()  # EGG appends an EOS
        output, _, _ = egg_r(message)
        assert output.shape == (16, sum(N_VALUES))
    else:
        assert out.shape == (16, 3, 5) and (out[:, -1, 0] == 1).all()
        assert egg_s.temperature == sender.temperature and egg_s.straight_through == sender.straight_through
        assert egg_r(out).shape == (16, 3, sum(N_VALUES))

    game_cls = core.SenderReceiverRnnReinforce if mode == "rf" else core.SenderReceiverRnnGS
    game = game_cls(egg_s, egg_r, reconstruction_loss_for(N_VALUES))
    encoder_before, head_before = sender.encoder.weight.clone(), receiver.head.weight.clone()
    optimizer = torch.optim.SGD(game.parameters(), lr=0.5)
    loss, _ = game(X, ATTRS)
    loss.backward()
    optimizer.step()
    assert not torch.equal(sender.encoder.weight, encoder_before)  # training EGG's game trains our modules
    assert not torch.equal(receiver.head.weight, head_before)


def test_referential_receiver_in_egg_deterministic_and_stochastic(core):
    receiver = ReferentialReceiver(8, vocab_size=5, hidden_size=16)
    message = torch.tensor([[1, 2, 0], [3, 0, 0]])
    candidates = torch.randn(2, 4, 8)
    scores, log_prob, _ = egg_receiver(receiver)(message, candidates)
    assert scores.shape == (2, 4) and (log_prob == 0).all()
    stochastic = egg_receiver(receiver, stochastic=True)
    choice, log_prob, entropy = stochastic(message, candidates)
    assert choice.shape == log_prob.shape == entropy.shape == (2,) and (log_prob < 0).all()
    stochastic.eval()
    greedy = stochastic.agent.agent(stochastic.encoder(message), candidates).argmax(1)
    assert torch.equal(stochastic(message, candidates)[0], greedy)
    assert egg_receiver(receiver, mode="gs")(torch.eye(5)[message].float(), candidates).shape == (2, 3, 4)


def test_full_reset_redraws_every_parameter_of_egg_agents(core):
    for mode in ("rf", "gs"):
        _, _, egg_s, egg_r = egg_agents(core, mode)
        for module in (egg_s, egg_r):
            before = snapshot(module)
            if hasattr(module, "sos_embedding"):  # EGG's own reset touches the SOS embedding only
                module.reset_parameters()
                changed = {n for n, v in snapshot(module).items() if not torch.equal(v, before[n])}
                assert changed == {"sos_embedding"}
                before = snapshot(module)
            full_reset().apply(module)
            for name, value in snapshot(module).items():
                assert (value != before[name]).all(), f"{type(module).__name__}.{name} not fully re-drawn"


class Mlp(nn.Module):
    """A plain EGG-style agent: forward(x, *inputs) ignores receiver_input / aux_input."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.hidden, self.out = nn.Linear(n_in, 16), nn.Linear(16, n_out)

    def forward(self, x, *ignored):
        return self.out(torch.tanh(self.hidden(x)))


def symbol_game(core):
    """EGG's single-symbol REINFORCE game with plain EGG agents (16 symbols)."""
    sender = core.ReinforceWrapper(Mlp(X.shape[1], 16))
    receiver = core.ReinforceDeterministicWrapper(
        core.SymbolReceiverWrapper(Mlp(16, sum(N_VALUES)), vocab_size=16, agent_input_size=16)
    )
    return core.SymbolGameReinforce(sender, receiver, reconstruction_loss_for(N_VALUES), sender_entropy_coeff=0.01)


def make_game(core, kind: str):
    if kind == "symbol_rf":
        return symbol_game(core)
    _, _, egg_s, egg_r = egg_agents(core, kind)
    game_cls = core.SenderReceiverRnnReinforce if kind == "rf" else core.SenderReceiverRnnGS
    return game_cls(egg_s, egg_r, reconstruction_loss_for(N_VALUES))


@pytest.mark.parametrize("kind", ["rf", "gs", "symbol_rf"])
def test_egg_games_in_generations_topsim_matches_egg(core, kind):
    torch.manual_seed(4)
    game = make_game(core, kind)
    operators = {"sender": partial_forgetting(0.5), "receiver": full_reset()}
    records = run_egg_generations(game, DATA, operators, 2, 15, eval_batch=(X, ATTRS), meanings=ATTRS,
                                  optimizer=torch.optim.Adam(game.parameters(), lr=1e-2))
    assert len(records) == 2 and records[0]["forgotten_fraction"]["receiver"] == 1.0
    assert records[0]["forgotten_fraction"]["sender"] == pytest.approx(0.5, abs=0.02)
    # Our record's topsim is EGG's TopographicSimilarity on the same greedy messages.
    game.eval()
    with torch.no_grad():
        _, interaction = game(X, ATTRS)
    messages = message_symbols(interaction.message)
    egg_value = core.TopographicSimilarity.compute_topsim(ATTRS.numpy(), messages)
    assert records[-1]["topsim"] == pytest.approx(egg_value, abs=1e-9)
    assert records[-1]["acc"] == pytest.approx(interaction.aux["acc"].mean().item(), abs=1e-7)
    # The EGG callback's input (flattened one-hot sender_input) gives the same value too.
    egg_flat = core.TopographicSimilarity.compute_topsim(X.numpy(), messages)
    assert evaluate(game, (X, ATTRS))["topsim"] == pytest.approx(egg_flat, abs=1e-9)


def test_forgetting_restarts_egg_baselines_and_keeps_kept_entries(core):
    torch.manual_seed(5)
    for kind in ("rf", "symbol_rf"):
        game = make_game(core, kind)
        operator = partial_forgetting(0.3)
        driver = EggGenerations(game, {"sender": operator}, (X, ATTRS))
        optimizer = torch.optim.Adam(game.parameters(), lr=1e-2)
        driver.train(DATA, optimizer, 5)
        baseline = game.baseline if kind == "symbol_rf" else game.mechanics.baselines["loss"]
        assert baseline.n_points == 5
        before = snapshot(game.sender)
        driver.end_generation(optimizer)
        if kind == "symbol_rf":
            assert game.baseline.n_points == 0
        else:
            baselines = game.mechanics.baselines  # re-created on first use (the greedy evaluation)
            assert set(baselines) <= {"loss", "length"} and all(b.n_points == 0 for b in baselines.values())
        for name, kept in operator.masks().items():
            value = game.sender.get_parameter(name)
            assert torch.equal(value[kept], before[name][kept]) and (value[~kept] != before[name][~kept]).all()


def test_egg_trainer_callback(core, tmp_path):
    core.init(params=["--random_seed=7", "--validation_freq=0"])
    game = make_game(core, "gs")
    optimizer = torch.optim.Adam(game.parameters(), lr=1e-2)
    driver = EggGenerations(game, {"receiver": full_reset()}, (X, ATTRS), meanings=ATTRS, out=tmp_path / "run")
    trainer = core.Trainer(game, optimizer, train_data=DATA * 3, callbacks=[driver.trainer_callback(2, 3)])
    receiver_at_start = snapshot(game.receiver)
    trainer.train(6)
    records = load_run(tmp_path / "run")["records"]
    assert [r["generation"] for r in records] == [0, 1, 2] and records[-1]["topsim_after_forgetting"] is None
    assert all(r["forgotten_fraction"] == {"receiver": 1.0} for r in records[:2])
    assert trainer.optimizer is not optimizer and type(trainer.optimizer) is torch.optim.Adam
    assert len(optimizer.state) == len(list(game.parameters()))  # the first generation's, left behind
    assert not all(torch.equal(v, receiver_at_start[n]) for n, v in snapshot(game.receiver).items())


LANGUAGES = {
    "random_with_eos_and_garbage": lambda rng: rng.integers(0, 4, size=(16, 4)),
    "compositional": lambda rng: np.concatenate([ATTRS.numpy() + 1, np.zeros((16, 1), int)], 1),
    "noisy_compositional": lambda rng: np.where(rng.random((16, 2)) < 0.3, rng.integers(1, 5, (16, 2)), ATTRS.numpy() + 1),
    "few_symbols": lambda rng: rng.integers(0, 2, size=(16, 3)),
}


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_topsim_equals_egg_compute_topsim(core, name):
    rng = np.random.default_rng(sorted(LANGUAGES).index(name))
    messages = LANGUAGES[name](rng)
    for meanings in (ATTRS.numpy(), X.numpy()):  # attribute values and EGG's flattened one-hot input
        ours = topographic_similarity(meanings, messages, convention="egg")
        egg = core.TopographicSimilarity.compute_topsim(meanings, messages)
        assert ours == pytest.approx(egg, abs=1e-9), name
    gs_messages = torch.nn.functional.one_hot(torch.as_tensor(messages), 5).float()  # as a GS game logs them
    ours = topographic_similarity(ATTRS.numpy(), message_symbols(gs_messages), convention="egg")
    egg = core.TopographicSimilarity.compute_topsim(ATTRS.numpy(), gs_messages.argmax(-1).numpy())
    assert ours == pytest.approx(egg, abs=1e-9)
