"""Difficulty probe sets for the referential game: the promised relations, skipping, and greedy
accuracy per set matching the game's own greedy play."""

import pytest
import torch

from emergent_frl.agents import ReferentialReceiver, Sender
from emergent_frl.difficulty_probes import build_probe_sets, probe_accuracies, probe_outcomes
from emergent_frl.games import ReferentialGame
from emergent_frl.objects import ObjectSpace


def shared(space, sets, name):
    """[N, K-1] Long: attributes each distractor shares with its target, [N, K-1, A] Bool per attribute."""
    rows = sets.set_index == sets.names.index(name)
    candidates, position = sets.candidates[rows], sets.position[rows]
    targets = candidates.gather(1, position.unsqueeze(1)).squeeze(1)
    others = torch.arange(candidates.shape[1]).unsqueeze(0) != position.unsqueeze(1)
    distractors = candidates[others].view(len(targets), -1)
    same = space.attributes_of(distractors) == space.attributes_of(targets).unsqueeze(1)
    return targets, distractors, same


def check_common(space, sets, n_candidates):
    for name in sets.names:
        targets, distractors, _ = shared(space, sets, name)
        assert sorted(targets.tolist()) == list(range(space.n_objects))  # each object once per set
        rows = sets.candidates[sets.set_index == sets.names.index(name)]
        assert rows.shape[1] == n_candidates
        assert all(len(set(r)) == n_candidates for r in rows.tolist())  # distinct candidates
        assert not (distractors == targets.unsqueeze(1)).any()
    # targets sit at every slot, not always the first
    assert len(set(sets.position.tolist())) == n_candidates


def test_paper_space_sets_match_the_reference_trackers():
    space = ObjectSpace(2, [8, 4])
    sets = build_probe_sets(space, 5, seed=0)
    assert sets.keys == ("probe_same_attr0", "probe_same_attr1", "probe_easy", "probe_random")
    assert sets.skipped == {} and sets.candidates.shape == (128, 5)
    check_common(space, sets, 5)
    # hard_color: only 3 other objects share a color, so 3 distractors do and the 4th shares the shape
    _, _, same = shared(space, sets, "same_attr0")
    assert (same[..., 0].sum(1) == 3).all()
    assert (same[~same[..., 0]][:, 1]).all()
    assert "3 of 4 distractors share attribute 0" in sets.notes["probe_same_attr0"]
    # hard_shape: all 4 distractors share the shape
    _, _, same = shared(space, sets, "same_attr1")
    assert same[..., 1].all()
    # easy: nothing shared
    _, _, same = shared(space, sets, "easy")
    assert not same.any()


def test_three_attributes():
    space = ObjectSpace(3, [3, 4, 5])
    sets = build_probe_sets(space, 4, seed=1, repeats=2)
    assert sets.keys == ("probe_same_attr0", "probe_same_attr1", "probe_same_attr2", "probe_easy", "probe_random")
    for a in range(3):
        _, _, same = shared(space, sets, f"same_attr{a}")
        assert same[..., a].all() and same.shape[0] == 2 * space.n_objects
    _, _, same = shared(space, sets, "easy")
    assert not same.any()
    assert sets.notes == {}
    # random distractors are not all of one kind: some share a value, some share none
    _, _, same = shared(space, sets, "random")
    assert same.any(-1).any() and (~same.any(-1)).any()


def test_built_once_from_a_seed():
    space = ObjectSpace(2, [8, 4])
    a, b, c = (build_probe_sets(space, 5, seed=s) for s in (3, 3, 4))
    assert torch.equal(a.candidates, b.candidates) and torch.equal(a.position, b.position)
    assert not torch.equal(a.candidates, c.candidates)
    assert set(a.buffers()) == {"probe_candidates", "probe_position", "probe_set_index"}


def test_sets_that_cannot_exist_are_skipped_or_refused():
    space = ObjectSpace(3, [2, 2, 2])  # 8 objects; each has exactly one sharing nothing with it
    sets = build_probe_sets(space, 5, seed=0)
    assert "probe_easy" not in sets.keys and "only 1 objects sharing no value" in sets.skipped["probe_easy"]
    with pytest.raises(ValueError, match="probe set probe_easy cannot exist"):
        build_probe_sets(space, 5, seed=0, strict=True)
    single = build_probe_sets(ObjectSpace(2, [1, 6]), 3, seed=0)
    assert "probe_same_attr0" in single.skipped and "probe_easy" in single.keys
    with pytest.raises(ValueError, match="n_candidates=9"):
        build_probe_sets(space, 9, seed=0)


def tiny_game(eos=False):
    torch.manual_seed(0)
    space = ObjectSpace(2, [4, 3])
    sender = Sender(space.input_size, 5, 2 if not eos else 3, hidden_size=16, eos=eos)
    receiver = ReferentialReceiver(space.input_size, 5, hidden_size=16)
    return ReferentialGame(space, sender, receiver, n_candidates=4)


@pytest.mark.parametrize("eos", [False, True])
def test_accuracies_are_the_games_own_greedy_accuracy_per_set(eos):
    game = tiny_game(eos)
    sets = build_probe_sets(game.space, 4, seed=0)
    game.train()
    accuracies = probe_accuracies(game, sets)
    assert game.training and game.sender.training and game.receiver.training  # modes restored
    assert list(accuracies) == list(sets.keys)
    game.eval()
    with torch.no_grad():
        for i, name in enumerate(sets.keys):
            rows = sets.set_index == i
            out = game.play(game.make_batch(sets.candidates[rows], sets.position[rows]))
            assert accuracies[name] == pytest.approx(float(out.accuracy.mean()))
    outcomes = probe_outcomes(game, sets)
    assert {k: v.shape[0] for k, v in outcomes.items()} == {k: 12 for k in sets.keys}


def test_a_speaker_with_one_message_for_everything_scores_what_the_receiver_prefers():
    """Every target gets the same message, so the receiver ranks objects the same way whatever the
    target: an instance is right exactly when its target is the receiver's favourite candidate."""
    game = tiny_game()
    with torch.no_grad():
        game.sender.head.weight.zero_()
        game.sender.head.bias.copy_(torch.tensor([0.0, 9.0, 0.0, 0.0, 0.0]))
    sets = build_probe_sets(game.space, 4, seed=0, repeats=5)
    accuracies = probe_accuracies(game, sets)
    game.eval()
    with torch.no_grad():
        symbols = game.sender(game.space.encode_index(torch.tensor([0]))).symbols
        everything = game.space.encode_index(torch.arange(game.space.n_objects)).unsqueeze(0)
        preference = game.receiver(symbols, everything).logits[0]  # one score per object
    for i, name in enumerate(sets.keys):
        rows = sets.set_index == i
        favourite = preference[sets.candidates[rows]].argmax(1)
        expected = (favourite == sets.position[rows]).float().mean().item()
        assert accuracies[name] == pytest.approx(expected)
    assert min(accuracies.values()) < 1.0 and max(accuracies.values()) > 0.0
