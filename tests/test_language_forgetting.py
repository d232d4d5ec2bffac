"""The language-forgetting experiment: target languages, exact match, the copy/apply protocol, the
relearn variant, and the script (end to end, resume, bad input)."""

import json

import pytest
import torch

from analysis.compositionality import posdis
from emergent_frl.agents import Sender
from emergent_frl.mixed_language import (
    LanguageForgettingConfig,
    LanguageForgettingRun,
    compositional_messages,
    derangement,
    exact_match,
    mixed_language,
    per_object,
)
from emergent_frl.mixed_language.languages import share_nothing
from emergent_frl.mixed_language.report import seed_summary
from emergent_frl.objects import ObjectSpace
from games import language_forgetting as script

TINY = dict(iterations=40, measure_every=10, draws=2, hidden_size=16)


# -- target languages -------------------------------------------------------------------------------
def test_direct_code_names_each_attribute_by_one_symbol():
    space = ObjectSpace(2, [8, 4])
    messages = compositional_messages(space, vocab_size=8, max_len=2)
    assert messages.shape == (32, 2)
    assert torch.equal(messages, space.objects())  # symbol i = value of attribute i
    assert messages[space.index_of(torch.tensor([5, 3]))].tolist() == [5, 3]


def test_direct_code_says_what_it_needs_and_offers_mixed_radix():
    space = ObjectSpace(2, [8, 4])
    with pytest.raises(ValueError, match=r"max_len == n_attributes \(2\), got max_len=3.*mixed_radix' fits"):
        compositional_messages(space, vocab_size=8, max_len=3)
    with pytest.raises(ValueError, match=r"vocab_size >= max\(n_values\) \(8\), got vocab_size=4.*need max_len >= 3"):
        compositional_messages(space, vocab_size=4, max_len=2)


def test_mixed_radix_code_writes_each_attribute_in_base_vocab_digits():
    space = ObjectSpace(2, [8, 4])
    messages = compositional_messages(space, vocab_size=4, max_len=4, code="mixed_radix")
    # color 7 = "13" in base 4 (two digits), shape 2 = "2" (one digit), then a padding 0
    assert messages[space.index_of(torch.tensor([7, 2]))].tolist() == [1, 3, 2, 0]
    assert len({tuple(m) for m in messages.tolist()}) == 32  # one-to-one
    direct = compositional_messages(space, vocab_size=8, max_len=2, code="direct")
    assert torch.equal(compositional_messages(space, 8, 2, code="mixed_radix"), direct)  # same where direct fits
    with pytest.raises(ValueError, match="3 base-4 digits, more than max_len=2"):
        compositional_messages(space, vocab_size=4, max_len=2, code="mixed_radix")


@pytest.mark.parametrize("n_attributes,n_values,vocab,max_len", [(2, [8, 4], 8, 2), (3, 4, 4, 3)])
def test_permuted_half_shares_no_attribute_to_symbol_structure(n_attributes, n_values, vocab, max_len):
    space = ObjectSpace(n_attributes, n_values)
    language = mixed_language(space, vocab, max_len, 0.5, torch.Generator().manual_seed(3))
    comp, perm = language.halves["compositional"], language.halves["permuted"]
    assert comp.numel() == perm.numel() == space.n_objects // 2
    code = compositional_messages(space, vocab, max_len)
    assert torch.equal(language.messages[comp], code[comp])
    # the permuted objects speak each other's messages, each exactly once: still one-to-one
    assert sorted(map(tuple, language.messages[perm].tolist())) == sorted(map(tuple, code[perm].tolist()))
    # and no permuted object keeps any of its own attribute symbols at any position
    assert not (language.messages[perm] == code[perm]).any()
    # on the permuted half no position is a function of any attribute: some two objects agree on
    # the attribute and differ in the symbol
    attributes = space.objects()
    for position in range(max_len):
        for attribute in range(n_attributes):
            symbols_per_value = {}
            for o in perm.tolist():
                symbols_per_value.setdefault(int(attributes[o, attribute]), set()).add(
                    int(language.messages[o, position]))
            assert any(len(s) > 1 for s in symbols_per_value.values())
    # posdis (on the objects of each half): far lower on the permuted half
    a = attributes.numpy()
    comp_posdis = posdis(a[comp], language.messages[comp].numpy())
    perm_posdis = posdis(a[perm], language.messages[perm].numpy())
    assert perm_posdis < 0.35 < 0.6 < comp_posdis


def test_derangement_refuses_what_cannot_exist():
    space = ObjectSpace(2, [2, 2])
    with pytest.raises(ValueError, match="cannot swap messages"):
        derangement(space, torch.tensor([0, 1]), torch.Generator().manual_seed(0))  # (0,0),(0,1) share a value
    source = derangement(space, torch.tensor([0, 3]), torch.Generator().manual_seed(0))  # (0,0),(1,1)
    assert source.tolist() == [3, 0]
    assert share_nothing(space, torch.tensor([0]), torch.tensor([3])).item()


def test_fractions_zero_and_one():
    space = ObjectSpace(2, [8, 4])
    full = mixed_language(space, 8, 2, 1.0, torch.Generator().manual_seed(0))
    assert bool(full.compositional.all()) and full.halves["permuted"].numel() == 0
    none = mixed_language(space, 8, 2, 0.0, torch.Generator().manual_seed(0))
    assert not bool(none.compositional.any())
    quarter = mixed_language(space, 8, 2, 0.25, torch.Generator().manual_seed(0))
    assert int(quarter.compositional.sum()) == 8


# -- measurement ----------------------------------------------------------------------------------------
def test_exact_match_on_a_hand_made_case():
    message = torch.tensor([[1, 2], [1, 2], [3, 0], [0, 0]])
    targets = torch.tensor([[1, 2], [2, 1], [3, 1], [0, 0]])
    assert exact_match(message, targets).tolist() == [True, False, False, True]


def test_readout_scores_a_speaker_that_says_one_fixed_message():
    """A speaker whose head always prefers symbol 2: its greedy message is [2, 2] for everything."""
    torch.manual_seed(0)
    sender = Sender(12, vocab_size=4, max_len=2, hidden_size=8)
    with torch.no_grad():
        sender.head.weight.zero_()
        sender.head.bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))
    x = ObjectSpace(2, [8, 4]).encode_index(torch.arange(3))
    targets = torch.tensor([[2, 2], [2, 1], [0, 0]])
    readout = per_object(sender, x, targets)
    assert readout["exact"].tolist() == [True, False, False]
    log_p = torch.log_softmax(torch.tensor([0.0, 0.0, 5.0, 0.0]), 0)
    assert readout["nll"].tolist() == pytest.approx([-log_p[2].item(), -(log_p[2] + log_p[1]).item() / 2,
                                                     -log_p[0].item()], rel=1e-5)
    entropy = -(log_p.exp() * log_p).sum().item()
    assert readout["entropy"].flatten().tolist() == pytest.approx([entropy] * 6, rel=1e-5)


def test_measurement_leaves_the_trained_speaker_bit_identical():
    run = LanguageForgettingRun(LanguageForgettingConfig(**TINY))
    for _ in range(15):
        run.train_step()
    before = {k: v.clone() for k, v in run.sender.state_dict().items()}
    record = run.measure()
    after = run.sender.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert record["after"]["all"]["loss"] > record["before"]["all"]["loss"]  # the copies were forgotten
    copy = run.forgotten_copy(torch.Generator().manual_seed(1))
    changed = [k for k, v in copy.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(torch.equal(before[k], run.sender.state_dict()[k]) for k in before)


def test_relearn_variant_replaces_the_speaker():
    config = LanguageForgettingConfig(**{**TINY, "relearn_every": 20})
    run = LanguageForgettingRun(config)
    first = run.advance()
    assert "relearn" not in first
    weights = {k: v.clone() for k, v in run.sender.state_dict().items()}
    second = run.advance()  # iteration 20: measured, then forgotten in place
    assert "relearn" in second and run.iteration == 20
    trained = {k: v.clone() for k, v in run.sender.state_dict().items()}
    assert any(not torch.equal(weights[k], trained[k]) for k in weights)
    # the speaker now is what its relearn record scored: the forgotten one, not the measured one
    assert run.score(run.sender)["all"] == second["relearn"]["all"]
    assert second["relearn"]["all"]["loss"] > second["before"]["all"]["loss"]
    third, fourth = run.advance(), run.advance()
    assert "relearn" not in fourth  # the last measurement ends the run: no forgetting after it


def test_zero_same_mask_forgets_the_smallest_at_init():
    config = LanguageForgettingConfig(**{**TINY, "forget_mask": "magnitude", "mask_timing": "once_init",
                                         "reset": "zero"})
    run = LanguageForgettingRun(config)
    init = {k: v.clone() for k, v in run.sender.named_parameters()}
    for _ in range(5):
        run.train_step()
    copy = run.forgotten_copy(torch.Generator().manual_seed(0))
    weight = dict(copy.named_parameters())["cell.weight_hh"]
    small = init["cell.weight_hh"].abs() <= init["cell.weight_hh"].abs().median()
    assert torch.all(weight[small] == 0)
    assert torch.equal(weight[~small], dict(run.sender.named_parameters())["cell.weight_hh"][~small])


def test_seed_summary_gap_is_permuted_drop_minus_compositional_drop():
    def half(em):
        return {"exact_match": em, "loss": 1.0 - em, "entropy": [0.0]}

    records = [{"iteration": i, "before": {"compositional": half(1.0), "permuted": half(1.0)},
                "after": {"compositional": half(0.75), "permuted": half(0.25)}} for i in (10, 20, 30, 40)]
    summary = seed_summary(records, iterations=40)
    assert summary["drop_compositional"] == pytest.approx(0.25)
    assert summary["drop_permuted"] == pytest.approx(0.75)
    assert summary["gap"] == pytest.approx(0.5)


@pytest.mark.slow
def test_speaker_learns_both_halves_and_forgetting_hurts():
    run = LanguageForgettingRun(LanguageForgettingConfig(iterations=300, measure_every=300, draws=4))
    record = run.advance()
    assert record["before"]["compositional"]["exact_match"] == 1.0
    assert record["before"]["permuted"]["exact_match"] >= 0.9
    assert record["after"]["all"]["exact_match"] < 0.6


# -- the script ------------------------------------------------------------------------------------------
ARGS = ["--iterations", "40", "--measure-every", "10", "--draws", "2", "--hidden-size", "16", "--no-progress", "--no-plot"]


def test_script_resume_gives_the_records_of_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    argv = [*ARGS, "--seeds", "0-1", "--relearn-every", "20", "--batch", "sample", "--batch-size", "8"]
    assert script.main([*argv, "--out", str(whole), "--plot"]) == 0
    assert (whole / script.PLOT_FILE).is_file() and "gap" in (whole / script.REPORT_FILE).read_text()

    calls = []

    def stop_at_third(record, seed):
        calls.append(seed)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(script, "show", stop_at_third)
    argv.remove("--no-progress")
    assert script.main([*argv, "--out", str(cut)]) == 130
    assert f"--resume {cut}" in capsys.readouterr().err
    monkeypatch.undo()
    assert script.main(["--resume", str(cut), "--no-progress", "--no-plot"]) == 0
    for seed in (0, 1):
        name = f"seed{seed}/{script.MEASUREMENTS}"
        assert (cut / name).read_text() == (whole / name).read_text()
    language = json.loads((whole / "seed0" / script.LANGUAGE_FILE).read_text())
    assert sum(o["half"] == "permuted" for o in language["objects"]) == 16


@pytest.mark.parametrize("flags,named", [
    (["--keep-fraction", "1.5"], "--keep-fraction 1.5"),
    (["--measure-every", "7"], "--measure-every 7: must divide --iterations (40)"),
    (["--relearn-every", "15"], "--relearn-every 15"),
    (["--max-len", "3"], "--code direct"),
    (["--n-values", "2", "--compositional-fraction", "0.7"], "--compositional-fraction 0.7"),
    (["--seeds", "3-1"], "--seeds 3-1"),
])
def test_bad_input_exits_2_naming_the_field_before_any_work(tmp_path, capsys, flags, named):
    out = tmp_path / "run"
    assert script.main([*ARGS, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_choice_and_resume_conflicts_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main([*ARGS, "--reset", "sometimes"])
    assert exit_info.value.code == 2 and "--reset" in capsys.readouterr().err
    assert script.main(["--resume", str(tmp_path)]) == 2
    assert "holds no config.json" in capsys.readouterr().err
    assert script.main([*ARGS, "--out", str(tmp_path / "r")]) == 0
    assert script.main(["--resume", str(tmp_path / "r"), "--keep-fraction", "0.2"]) == 2
    assert "--keep-fraction: cannot be combined with --resume" in capsys.readouterr().err
