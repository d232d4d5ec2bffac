"""Object spaces: enumeration, one-hot round trips, splits, candidate sampling."""

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from emergent_frl.objects import CandidateSampler, ObjectSpace, sample_objects


@pytest.fixture
def paper_space():
    return ObjectSpace(2, [8, 4])


def test_enumerates_every_tuple_once_in_lexicographic_order(paper_space):
    objects = paper_space.objects()
    assert objects.shape == (32, 2) and objects.dtype == torch.long
    assert [tuple(o) for o in objects.tolist()] == list(itertools.product(range(8), range(4)))
    assert paper_space.input_size == 12


def test_int_n_values_means_same_count_for_every_attribute():
    space = ObjectSpace(3, 4)
    assert space.n_values == (4, 4, 4) and space.n_objects == 64 and space.input_size == 12


def test_encode_decode_round_trip(paper_space):
    objects = paper_space.objects()
    vectors = paper_space.encode(objects)
    assert vectors.shape == (32, 12) and vectors.dtype == torch.float32
    assert torch.equal(vectors.sum(1), torch.full((32,), 2.0))
    # The color block is the first 8 columns, the shape block the last 4.
    assert torch.equal(vectors[:, :8].argmax(1), objects[:, 0])
    assert torch.equal(vectors[:, 8:].argmax(1), objects[:, 1])
    assert torch.equal(paper_space.decode(vectors), objects)
    assert torch.equal(paper_space.index_of(objects), torch.arange(32))
    assert torch.equal(paper_space.encode_index(torch.tensor([[5, 6]])), vectors[[5, 6]].unsqueeze(0))


@pytest.mark.parametrize("bad", [dict(n_attributes=0, n_values=3), dict(n_attributes=2, n_values=[3]),
                                 dict(n_attributes=2, n_values=[3, 0])])
def test_invalid_spaces_name_the_field(bad):
    with pytest.raises(ValueError, match="n_attributes|n_values"):
        ObjectSpace(**bad)


@pytest.mark.parametrize("kind", ["random", "systematic"])
def test_split_sizes_disjoint_and_deterministic(paper_space, kind):
    split = paper_space.split(kind, 0.25, seed=3)
    train, holdout = set(split.train.tolist()), set(split.holdout.tolist())
    assert len(holdout) == 8 and len(train) == 24
    assert not train & holdout and train | holdout == set(range(32))
    again = paper_space.split(kind, 0.25, seed=3)
    assert torch.equal(again.holdout, split.holdout)
    other = [paper_space.split(kind, 0.25, seed=s).holdout.tolist() for s in range(4, 8)]
    assert any(o != split.holdout.tolist() for o in other)


def test_systematic_split_keeps_every_value_in_training():
    space = ObjectSpace(3, [4, 3, 5])
    for seed in range(5):
        split = space.systematic_split(0.4, seed)
        train = space.attributes_of(split.train)
        held = space.attributes_of(split.holdout)
        assert len(held) == round(0.4 * 60)
        for i, n in enumerate(space.n_values):
            assert set(train[:, i].tolist()) == set(range(n))
        # Held-out objects are unseen combinations of seen values.
        assert not set(map(tuple, held.tolist())) & set(map(tuple, train.tolist()))


def test_systematic_split_refuses_impossible_requests():
    with pytest.raises(ValueError, match="at most"):
        ObjectSpace(2, 3).systematic_split(0.8, 0)  # 2 training objects cannot show 3 values
    with pytest.raises(ValueError, match="n_attributes >= 2"):
        ObjectSpace(1, 6).systematic_split(0.5, 0)
    with pytest.raises(ValueError, match="fraction"):
        ObjectSpace(2, 3).random_split(1.0, 0)


def test_candidates_are_distinct_and_hold_the_target(paper_space):
    sampler = CandidateSampler(paper_space, 5)
    candidates, position = sampler.sample(2000, torch.Generator().manual_seed(0))
    assert candidates.shape == (2000, 5) and position.shape == (2000,)
    assert all(len(set(row)) == 5 for row in candidates.tolist())
    assert candidates.min() >= 0 and candidates.max() < 32
    # Targets are drawn uniformly over objects.
    targets = candidates.gather(1, position.unsqueeze(1)).squeeze(1)
    assert stats.chisquare(np.bincount(targets.numpy(), minlength=32)).pvalue > 1e-3


def test_target_position_is_uniform(paper_space):
    sampler = CandidateSampler(paper_space, 5)
    _, position = sampler.sample(5000, torch.Generator().manual_seed(1))
    counts = np.bincount(position.numpy(), minlength=5)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert counts.min() > 850  # 1000 expected per slot


def test_sampling_is_seeded(paper_space):
    sampler = CandidateSampler(paper_space, 5, easy_limit=1)
    a = sampler.sample(50, torch.Generator().manual_seed(7))
    b = sampler.sample(50, torch.Generator().manual_seed(7))
    c = sampler.sample(50, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("limit", [0, 1, 2])
def test_easy_distractor_cap(paper_space, limit):
    sampler = CandidateSampler(paper_space, 5, easy_limit=limit)
    candidates, position = sampler.sample(3000, torch.Generator().manual_seed(2))
    target = candidates.gather(1, position.unsqueeze(1))
    shared = paper_space.shared_attributes(candidates, target)  # [B, 5], 2 at the target
    easy = (shared == 0).sum(1)
    assert easy.max() <= limit
    # Without a cap, most instances of the 8 x 4 space hold more easy distractors than that.
    free, free_pos = CandidateSampler(paper_space, 5).sample(3000, torch.Generator().manual_seed(2))
    free_shared = paper_space.shared_attributes(free, free.gather(1, free_pos.unsqueeze(1)))
    assert (free_shared == 0).sum(1).max() > limit
    if limit > 0:
        assert easy.max() == limit  # the cap is reached, not replaced by "never easy"
    assert all(len(set(row)) == 5 for row in candidates.tolist())


def test_candidate_pools_and_errors(paper_space):
    split = paper_space.random_split(0.25, 0)
    sampler = CandidateSampler(paper_space, 4, targets=split.train)
    candidates, _ = sampler.sample(500, torch.Generator().manual_seed(0))
    assert set(candidates.flatten().tolist()) <= set(split.train.tolist())
    with pytest.raises(ValueError, match="n_candidates=33"):
        CandidateSampler(paper_space, 33)
    with pytest.raises(ValueError, match="easy_limit=5"):
        CandidateSampler(paper_space, 5, easy_limit=5)
    # 2 x 2 space: each object shares an attribute with only 2 others, so 3 hard distractors fail.
    with pytest.raises(ValueError, match="admissible distractors"):
        CandidateSampler(ObjectSpace(2, 2), 4, easy_limit=0)


def test_sample_for_given_targets(paper_space):
    sampler = CandidateSampler(paper_space, 5)
    targets = torch.arange(32).repeat(3)
    candidates, position = sampler.sample_for(targets, torch.Generator().manual_seed(0))
    assert torch.equal(candidates.gather(1, position.unsqueeze(1)).squeeze(1), targets)


def test_sample_objects_draws_from_pool():
    pool = torch.tensor([3, 9, 11])
    drawn = sample_objects(pool, 300, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == {3, 9, 11}


def test_kept_tables_give_the_computed_codes_and_attributes():
    """`keep_tables` replaces arithmetic by lookups; the values must not change, and a space too
    large for a table keeps computing."""
    space, plain = ObjectSpace(3, [5, 2, 7]), ObjectSpace(3, [5, 2, 7])
    space.keep_tables("cpu")
    index = torch.randint(space.n_objects, (4, 9), generator=torch.Generator().manual_seed(0))
    assert torch.equal(space.encode_index(index), plain.encode_index(index))
    assert torch.equal(space.attributes_of(index), plain.attributes_of(index))
    assert space.encode_index(index).shape == (4, 9, space.input_size)
    assert torch.equal(space.encode_index(index).sum(-1), torch.full((4, 9), 3.0))
    huge = ObjectSpace(4, 100)  # 10^8 objects x 400 code entries
    huge.keep_tables("cpu")
    assert huge._tables == {} and huge.encode_index(torch.tensor([123456])).sum().item() == 4.0


@pytest.mark.parametrize("limit", [None, 1])
def test_candidate_sets_are_the_same_with_and_without_the_relations_table(paper_space, limit):
    sampler = CandidateSampler(paper_space, 5, easy_limit=limit)
    assert sampler._relations is not None  # 32 x 32: small enough for a table
    draws = sampler.draw(64, torch.Generator().manual_seed(3))
    with_table = sampler.arrange(*draws)
    sampler._relations = None
    assert all(torch.equal(a, b) for a, b in zip(with_table, sampler.arrange(*draws)))
