"""Agents, games and the one-generation trainer: shapes, modes, gradients, learning, losses."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from emergent_frl.agents import (
    ReconstructionReceiver,
    ReferentialReceiver,
    Sender,
    StartToken,
    find_lengths,
)
from emergent_frl.objects import ObjectSpace
from emergent_frl.training import (
    ConfigError,
    LanguageGameConfig,
    build_game,
    build_optimizers,
    evaluate,
    greedy_messages,
    make_generator,
    train_iterations,
)


def tiny_config(**overrides) -> LanguageGameConfig:
    # 6 objects, 100 possible messages: REINFORCE rarely gets stuck with colliding messages here.
    values = dict(n_attributes=2, n_values=[2, 3], vocab_size=10, max_len=2, n_candidates=3,
                  hidden_size=64, batch_size=32, lr_sender=5e-3, lr_receiver=5e-3, baseline=True,
                  eval_every=0, eval_repeats=4)
    values.update(overrides)
    return LanguageGameConfig(**values)


def sender(**kwargs) -> Sender:
    torch.manual_seed(0)
    return Sender(12, 8, 3, 20, **kwargs)


# -- agents ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("channel", ["reinforce", "gumbel"])
def test_sender_output_shapes_and_dtypes(cell, channel):
    agent = sender(cell=cell, channel=channel)
    x = ObjectSpace(2, [8, 4]).encode_index(torch.arange(5))
    out = agent(x, generator=torch.Generator().manual_seed(0))
    assert out.message.shape == (5, 3) and out.message.dtype == torch.long
    assert out.message.min() >= 0 and out.message.max() < 8
    assert out.symbols.shape == (5, 3, 8) and out.symbols.dtype == torch.float32
    assert torch.equal(out.symbols.argmax(-1), out.message)
    assert out.log_prob.shape == (5,) and (out.log_prob <= 0).all()
    assert out.entropy.shape == (5,) and (out.entropy > 0).all()
    assert torch.equal(out.length, torch.full((5,), 3))


def test_greedy_is_deterministic_and_sampling_follows_the_mode():
    agent = sender()
    x = ObjectSpace(2, [8, 4]).encode_index(torch.arange(32))
    agent.eval()
    first = agent(x, generator=torch.Generator().manual_seed(1)).message
    second = agent(x, generator=torch.Generator().manual_seed(2)).message
    assert torch.equal(first, second)
    logits_argmax = first  # eval = argmax at each step, feeding back the argmax
    agent.train()
    a = agent(x, generator=torch.Generator().manual_seed(1)).message
    b = agent(x, generator=torch.Generator().manual_seed(1)).message
    c = agent(x, generator=torch.Generator().manual_seed(2)).message
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, logits_argmax)


def test_log_prob_of_matches_the_sampled_log_prob():
    agent = sender()
    x = ObjectSpace(2, [8, 4]).encode_index(torch.arange(10))
    out = agent(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(agent.log_prob_of(x, out.message), out.log_prob, atol=1e-6)
    eos_agent = sender(eos=True)
    out = eos_agent(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(eos_agent.log_prob_of(x, out.message), out.log_prob, atol=1e-6)
    loss = -agent.log_prob_of(x, torch.zeros(10, 3, dtype=torch.long)).mean()
    loss.backward()
    assert agent.encoder.weight.grad.abs().sum() > 0


def test_eos_masks_after_the_first_zero():
    assert find_lengths(torch.tensor([[1, 1, 0, 0, 0, 1], [1, 1, 1, 10, 5, 5], [0, 3, 3, 3, 3, 3]])).tolist() == [3, 6, 1]
    agent = sender(eos=True)
    with torch.no_grad():
        agent.head.bias[0] = 2.0  # make EOS frequent
    out = agent(ObjectSpace(2, [8, 4]).encode_index(torch.arange(32)), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.length, find_lengths(out.message))
    assert (out.length < 3).any()
    after = torch.arange(3).unsqueeze(0) >= out.length.unsqueeze(1)
    assert (out.message[after] == 0).all() and (out.symbols[after] == 0).all()


def test_every_parameter_is_reset_by_its_module_or_an_ancestor():
    agent = Sender(12, 8, 2, 16, embed_size=5, learned_start=True)
    receiver = ReferentialReceiver(12, 8, 16, embed_size=5)
    for model in (agent, receiver, ReconstructionReceiver([8, 4], 8, 16)):
        for name, _ in model.named_parameters():
            owner = model.get_submodule(name.rsplit(".", 1)[0])
            assert hasattr(owner, "reset_parameters"), name
    before = agent.start.weight.clone()
    agent.start.reset_parameters()
    assert not torch.equal(before, agent.start.weight)
    assert dict(agent.named_children()).keys() >= {"encoder", "start", "cell", "head", "embedding"}
    assert not list(StartToken(4).parameters())  # the paper's zero start token is not learned


def test_referential_receiver_scores_and_choices():
    receiver = ReferentialReceiver(12, 8, 16)
    symbols = F.one_hot(torch.randint(8, (6, 2)), 8).float()
    candidates = torch.rand(6, 5, 12)
    out = receiver(symbols, candidates, generator=torch.Generator().manual_seed(0))
    assert out.logits.shape == (6, 5) and out.choice.shape == (6,) and out.choice.dtype == torch.long
    assert torch.allclose(out.entropy, -(out.logits.softmax(-1) * out.logits.log_softmax(-1)).sum(-1))
    receiver.eval()
    assert torch.equal(receiver(symbols, candidates).choice, out.logits.argmax(-1))



@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "lnlstm"])
@pytest.mark.parametrize("embed_size,max_len,eos", [(None, 2, False), (None, 3, True), (6, 3, False), (None, 1, False)])
def test_a_reader_given_the_message_indices_reads_the_same_state_and_gradients(cell, embed_size, max_len, eos,
                                                                              monkeypatch):
    """The first step looked up per vocabulary entry (`message`) gives the state, and every
    parameter's gradient, of the step taken per row; with lengths (EOS), too."""
    from emergent_frl.agents import _MessageReader

    torch.manual_seed(0)
    looked_up = []
    original = _MessageReader._first_step_by_symbol
    monkeypatch.setattr(_MessageReader, "_first_step_by_symbol",
                        lambda self, *a: looked_up.append(1) or original(self, *a))
    receiver = ReconstructionReceiver([3, 4], 5, 16, cell=cell, embed_size=embed_size)
    message = torch.randint(5, (24, max_len), generator=torch.Generator().manual_seed(1))
    length = None
    if eos:
        length = find_lengths(message)
        message = message * (torch.arange(max_len) < length.unsqueeze(1))
    symbols = F.one_hot(message, 5).float()
    if eos:
        symbols = symbols * (torch.arange(max_len) < length.unsqueeze(1)).unsqueeze(-1)
    results = []
    for given in (None, message):
        receiver.zero_grad(set_to_none=True)
        logits = receiver(symbols, length, message=given).logits
        (logits * torch.linspace(-1, 1, logits.shape[-1])).sum().backward()
        results.append((logits.detach(), {n: p.grad for n, p in receiver.named_parameters()}))
    assert len(looked_up) == 1  # only the call given the indices looked its first step up
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, grad in results[0][1].items():  # one symbol: W_hh has no gradient either way
        assert (grad is None) == (results[1][1][name] is None) == (max_len == 1 and name in ("cell.weight_hh", "cell.norm_hh.weight")), name
        if grad is not None:
            torch.testing.assert_close(results[1][1][name], grad, msg=name)
    # With more vocabulary entries than rows, the table would not pay: the step is taken per row.
    ReconstructionReceiver([3, 4], 30, 16, cell=cell)(F.one_hot(message, 30).float(), length, message=message)
    assert len(looked_up) == 1


def test_the_sender_vouches_for_exact_one_hots_without_gradient_only():
    x = ObjectSpace(2, [8, 4]).encode_index(torch.arange(6))
    for channel, training, discrete in (("reinforce", True, True), ("reinforce", False, True),
                                        ("gumbel", True, False), ("gumbel", False, True)):
        agent = sender(channel=channel, eos=channel == "reinforce")
        agent.train(training)
        out = agent(x, generator=torch.Generator().manual_seed(0))
        assert out.discrete is discrete, (channel, training)
        if discrete:
            expected = F.one_hot(out.message, 8).float() * (torch.arange(3) < out.length.unsqueeze(1)).unsqueeze(-1)
            assert torch.equal(out.symbols, expected) and not out.symbols.requires_grad


def test_the_game_hands_the_indices_only_to_a_receiver_that_reads_them_and_only_when_vouched():
    seen = []

    class Recording(ReferentialReceiver):
        def forward(self, symbols, candidates, length=None, generator=None, **kwargs):
            seen.append(sorted(kwargs))
            return super().forward(symbols, candidates, length, generator, **kwargs)

    class Plain(Recording):
        reads_message = False

    for channel, receiver_class, expected in (("reinforce", Recording, ["message"]), ("gumbel", Recording, []),
                                              ("reinforce", Plain, [])):
        game = build_game(tiny_config(channel=channel))
        receiver = receiver_class(game.receiver.candidate_encoder.in_features, 10, 64)
        game.receiver = receiver
        generator = make_generator(tiny_config())
        game.play(game.sample_batch(32, generator), generator).loss.backward()
        assert seen.pop() == expected, (channel, receiver_class.__name__)


# -- games -------------------------------------------------------------------------------------
def test_gradients_reach_both_agents():
    for game_kind in ("referential", "reconstruction"):
        for channel in ("reinforce", "gumbel"):
            game = build_game(tiny_config(game=game_kind, channel=channel))
            generator = make_generator(tiny_config())
            out = game.play(game.sample_batch(32, generator), generator)
            out.loss.backward()
            for name, agent in (("sender", game.sender), ("receiver", game.receiver)):
                grads = [p.grad for p in agent.parameters()]
                assert all(g is not None for g in grads), (game_kind, channel, name)
                assert sum(g.abs().sum() for g in grads) > 0, (game_kind, channel, name)


def test_reinforce_loss_is_the_paper_objective():
    """loss = mean(-R * (logp_s + logp_r)) - 0.1 H_s - 0.1 H_r (+ mean(-R), constant in theta)."""
    game = build_game(tiny_config(receiver_training="reinforce"))
    generator = make_generator(tiny_config())
    batch = game.sample_batch(16, generator)
    out = game.play(batch, torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    s = game.sender(batch.sender_input, generator=replay)
    r = game.receiver(s.symbols, batch.receiver_input, generator=replay)
    # Replaying with the same generator reproduces the same decisions.
    assert torch.equal(s.message, out.message)
    reward = (r.choice == batch.labels).float()
    expected = (-reward * (s.log_prob + r.log_prob)).mean() - 0.1 * s.entropy.mean() - 0.1 * r.entropy.mean() - reward.mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.equal(out.reward, reward) and torch.equal(out.accuracy, reward)


def test_a_cross_entropy_receiver_is_egg_s_deterministic_receiver():
    """The default referential receiver: no sampled choice, no policy term, no entropy bonus;
    loss = mean(CE * logp_s) - 0.1 H_s + mean(CE), so the receiver learns from the CE gradient."""
    game = build_game(tiny_config(baseline=False))
    assert game.receiver_training == "cross_entropy" and game.receiver.deterministic
    generator = make_generator(tiny_config())
    batch = game.sample_batch(16, generator)
    out = game.play(batch, torch.Generator().manual_seed(5))
    replay = torch.Generator().manual_seed(5)
    s = game.sender(batch.sender_input, generator=replay)
    state = replay.get_state()
    r = game.receiver(s.symbols, batch.receiver_input, generator=replay)
    assert torch.equal(replay.get_state(), state)  # the receiver drew nothing
    assert torch.equal(r.choice, r.logits.argmax(-1))  # in training too
    ce = F.cross_entropy(r.logits, batch.labels, reduction="none")
    expected = (ce.detach() * s.log_prob).mean() - 0.1 * s.entropy.mean() + ce.mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.allclose(out.task_loss, ce.detach())
    assert torch.equal(out.accuracy, (r.logits.argmax(-1) == batch.labels).float())
    game.zero_grad()
    out.loss.backward()
    by_hand = torch.autograd.grad(ce.mean(), list(game.receiver.parameters()))
    for param, grad in zip(game.receiver.parameters(), by_hand):
        assert torch.allclose(param.grad, grad, atol=1e-6)


def test_the_default_listener_has_no_message_head_and_the_paper_s_has_one():
    """Default: the RNN state is dotted with the candidate encodings (EGG); receiver_head adds the
    paper's Linear(hidden -> hidden) on it, and the scores go through it."""
    plain = build_game(tiny_config()).receiver
    paper = build_game(tiny_config(receiver_head=True)).receiver
    assert isinstance(plain.head, torch.nn.Identity) and isinstance(paper.head, torch.nn.Linear)
    assert {n for n, _ in paper.named_parameters()} - {n for n, _ in plain.named_parameters()} == {
        "head.weight", "head.bias"}
    symbols = torch.eye(plain.vocab_size)[torch.tensor([[0, 1], [2, 3]])]
    candidates = torch.rand(2, 3, plain.candidate_encoder.in_features, generator=torch.Generator().manual_seed(0))
    plain.eval()
    state = plain.read(symbols)
    encoded = plain.candidate_encoder(candidates)  # [B, K, H]
    expected = (encoded * state.unsqueeze(1)).sum(-1)
    torch.testing.assert_close(plain(symbols, candidates).logits, expected)


def test_a_game_built_directly_trains_its_receiver_as_its_channel_does_by_default():
    """The classes keep the paper's game (a sampling listener) on the reinforce channel, and the
    cross-entropy of the scores on the gumbel channel, without naming receiver_training."""
    from emergent_frl.games import ReferentialGame

    space = ObjectSpace(2, [2, 3])
    for channel, expected in (("reinforce", "reinforce"), ("gumbel", "cross_entropy")):
        sender = Sender(space.input_size, vocab_size=4, max_len=2, hidden_size=8, channel=channel)
        game = ReferentialGame(space, sender, ReferentialReceiver(space.input_size, 4, 8), channel=channel,
                               n_candidates=3)
        assert game.receiver_training == expected, channel


def test_the_gumbel_channel_refuses_a_reinforce_trained_receiver_before_any_work():
    with pytest.raises(ValueError, match=r"receiver_training='reinforce': the gumbel channel trains the receiver"):
        tiny_config(channel="gumbel", receiver_training="reinforce").validate()
    with pytest.raises(ValueError, match=r"receiver_training='sampled': must be one of"):
        tiny_config(receiver_training="sampled").validate()


def test_running_mean_baseline_is_subtracted_and_updated():
    game = build_game(tiny_config(baseline=True))
    generator = make_generator(tiny_config())
    rewards = []
    for _ in range(3):
        rewards.append(game.play(game.sample_batch(16, generator), generator).reward.mean())
    assert torch.allclose(game.baseline.mean, -torch.stack(rewards).mean())
    with torch.no_grad():
        game.play(game.sample_batch(16, generator), generator)
    assert game.baseline.count == 3  # evaluation (no grad) leaves the baseline alone


def test_user_loss_with_egg_signature_is_used():
    seen = {}

    def loss(sender_input, message, receiver_input, receiver_output, labels, aux_input):
        seen.update(sender_input=sender_input.shape, message=message.shape, receiver_input=receiver_input,
                    receiver_output=receiver_output.shape, labels=labels.shape, aux_input=aux_input)
        per_sample = F.cross_entropy(receiver_output, labels[:, 0], reduction="none")
        return per_sample, {"first_attribute_loss": per_sample}

    game = build_game(tiny_config(game="reconstruction"), loss=loss)
    generator = make_generator(tiny_config())
    out = game.play(game.sample_batch(8, generator), generator)
    assert seen == dict(sender_input=(8, 5), message=(8, 2), receiver_input=None, receiver_output=(8, 5),
                        labels=(8, 2), aux_input=None)
    assert torch.equal(out.aux["first_attribute_loss"], out.task_loss)

    def aggregated(*args):
        return torch.tensor(1.0, requires_grad=True), {}

    bad = build_game(tiny_config(), loss=aggregated)
    with pytest.raises(ValueError, match="per-sample loss of shape \\(8,\\)"):
        bad.play(bad.sample_batch(8, generator), generator)


def test_game_batches_encode_targets_and_candidates():
    game = build_game(tiny_config())
    batch = game.sample_batch(10, make_generator(tiny_config()))
    assert batch.receiver_input.shape == (10, 3, 5) and batch.labels.shape == (10,)
    target_vectors = batch.receiver_input[torch.arange(10), batch.labels]
    assert torch.equal(target_vectors, batch.sender_input)
    assert torch.equal(game.space.decode(batch.sender_input), game.space.attributes_of(batch.objects))


# -- trainer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("game_kind, chance", [("referential", 1 / 3), ("reconstruction", 1 / 6)])
def test_learns_a_tiny_space(game_kind, chance):
    config = tiny_config(game=game_kind)
    game = build_game(config)
    before = evaluate(game)["accuracy"]
    train_iterations(game, build_optimizers(game, config), 400, generator=make_generator(config),
                     progress=False)
    after = evaluate(game)
    assert before < 0.7 and after["accuracy"] >= 0.8 > 2 * chance
    assert after["messages"].shape == (6, 2)


@pytest.mark.parametrize("game_kind", ["referential", "reconstruction"])
def test_gumbel_channel_trains(game_kind):
    # Soft relaxation and a small entropy bonus: hard straight-through symbols with no bonus can
    # settle with two objects on one message (seen on reconstruction, seed 0).
    config = tiny_config(game=game_kind, channel="gumbel", straight_through=False,
                         sender_entropy_coeff=0.01, receiver_entropy_coeff=0.0,
                         lr_sender=1e-2, lr_receiver=1e-2)
    game = build_game(config)
    before = evaluate(game)["accuracy"]
    train_iterations(game, build_optimizers(game, config), 300, generator=make_generator(config),
                     progress=False)
    assert before < 0.7 and evaluate(game)["accuracy"] >= 0.9


def test_same_seed_same_run_and_modes_untouched():
    def run(seed):
        config = tiny_config(seed=seed)
        game = build_game(config)
        game.receiver.eval()  # a caller's choice of modes survives training and evaluation
        summary = train_iterations(game, build_optimizers(game, config), 30,
                                   generator=make_generator(config), eval_every=10, progress=False)
        assert game.sender.training and not game.receiver.training
        return [p.detach().clone() for p in game.parameters()], summary

    (p1, s1), (p2, s2), (p3, _) = run(0), run(0), run(1)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert s1 == s2
    assert not all(torch.equal(a, b) for a, b in zip(p1, p3))
    assert [r["iteration"] for r in s1["evaluations"]] == [10, 20, 30]


def test_only_given_optimizers_step_and_on_eval_can_stop():
    config = tiny_config()
    game = build_game(config)
    sender_before = [p.detach().clone() for p in game.sender.parameters()]
    optimizers = build_optimizers(game, config)
    records = []
    summary = train_iterations(game, {"receiver": optimizers["receiver"]}, 50,
                               generator=make_generator(config), eval_every=5,
                               on_eval=lambda r: records.append(r) or len(records) == 2, progress=False)
    assert summary["iterations"] == 10 and len(records) == 2
    assert all(torch.equal(a, b) for a, b in zip(sender_before, game.sender.parameters()))
    assert {"iteration", "train_accuracy", "accuracy", "topsim", "sender_entropy"} <= records[0].keys()
    assert "messages" not in records[0]


def test_evaluate_scores_a_perfect_compositional_language():
    config = tiny_config(game="reconstruction", vocab_size=4)
    game = build_game(config)
    objects = game.space.objects()
    # Force the sender to say (color, shape): each position names one attribute.
    with torch.no_grad():
        game.sender.head.weight.zero_()
    game.sender.forward = lambda x, generator=None: _fixed_language(game.sender, objects, x)
    metrics = evaluate(game)
    assert metrics["topsim"] == pytest.approx(1.0)
    assert metrics["posdis"] == pytest.approx(1.0)
    assert metrics["distinct_messages"] == 6
    assert metrics["holdout_accuracy"] is None
    assert torch.equal(metrics["messages"], objects)


def _fixed_language(agent, objects, x):
    from emergent_frl.agents import SenderOutput

    message = ObjectSpace(2, [2, 3]).decode(x)
    symbols = F.one_hot(message, agent.vocab_size).float()
    zeros = torch.zeros(x.shape[0])
    return SenderOutput(message, symbols, zeros, zeros, torch.full((x.shape[0],), 2))


def test_evaluate_with_holdout_and_greedy_messages():
    config = tiny_config(n_values=[3, 3], holdout="systematic", holdout_fraction=0.3)
    game = build_game(config)
    metrics = evaluate(game)
    assert 0.0 <= metrics["holdout_accuracy"] <= 1.0
    assert torch.equal(greedy_messages(game).cpu(), metrics["messages"])
    assert game.eval_holdout_candidates.shape == (3 * config.eval_repeats, 3)


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, pattern",
    [("vocab_size", 1, "vocab_size=1: must be >= 2"), ("max_len", 0, "max_len=0: must be >= 1"),
     ("n_candidates", 7, r"n_candidates=7: must be in \[2, 6\]"), ("cell", "transformer", "cell='transformer'"),
     ("holdout", "some", "holdout='some'"), ("n_values", [2], "n_values"), ("device", "tpu:x", "device"),
     ("easy_limit", 3, r"easy_limit=3: must be in \[0, 2\]")],
)
def test_config_validation_names_field_value_and_range(field, value, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        tiny_config(**{field: value}).validate()
    assert info.value.field == field


def test_config_round_trips_through_a_dict():
    config = tiny_config(n_values=[2, 3], easy_limit=1)
    assert LanguageGameConfig.from_dict(config.to_dict()) == config
    assert dataclasses.asdict(config) == config.to_dict()
    with pytest.raises(ValueError, match="unknown config keys \\['colour'\\]"):
        LanguageGameConfig.from_dict({"colour": 3})
