"""Compositionality metrics: hand-computed values, agreement with scipy/sklearn, invariances, bad input."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ConstantInputWarning, entropy, pearsonr, spearmanr
from sklearn.metrics import mutual_info_score

from analysis._edit_distance import levenshtein_block
from analysis.compositionality import (
    CONVENTIONS,
    bosdis,
    message_entropy,
    pairwise_meaning_distances,
    pairwise_message_distances,
    posdis,
    symbol_counts,
    topographic_similarity,
)

# 2 attributes x 3 values; the compositional language says value+1 at the attribute's position.
ATTRIBUTES = np.array([(a, b) for a in range(3) for b in range(3)])
COMPOSITIONAL = ATTRIBUTES + 1
# The same nine strings shuffled: this permutation reproduces all three numbers that EGG's own
# functions gave for "permuted" in the reference table (egg.md section 2): topsim -0.3333,
# posdis 0.1402, bosdis 0.3263.
PERMUTED = np.array([[1, 1], [1, 2], [2, 2], [2, 3], [1, 3], [3, 1], [3, 2], [2, 1], [3, 3]])


def reference_levenshtein(x, y) -> int:
    """Plain Wagner-Fischer DP, one pair at a time."""
    x, y = list(x), list(y)
    table = np.zeros((len(x) + 1, len(y) + 1), dtype=int)
    table[:, 0] = np.arange(len(x) + 1)
    table[0, :] = np.arange(len(y) + 1)
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i, j] = min(table[i - 1, j] + 1, table[i, j - 1] + 1, table[i - 1, j - 1] + (x[i - 1] != y[j - 1]))
    return int(table[-1, -1])


def egg_edit(x, y) -> float:
    return reference_levenshtein(x, y) / ((len(x) + len(y)) / 2)


def random_language(rng, n=40, n_attributes=3, n_values=4, length=5, vocab=4):
    return rng.integers(0, n_values, (n, n_attributes)), rng.integers(0, vocab, (n, length))


def one_hot(attributes, n_values):
    return np.concatenate([np.eye(n_values)[attributes[:, k]] for k in range(attributes.shape[1])], axis=1)


# ----------------------------------------------------------------------------- hand-computed
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_compositional_language_has_topsim_one_under_every_convention(convention):
    assert topographic_similarity(ATTRIBUTES, COMPOSITIONAL, convention=convention) == pytest.approx(1.0, abs=1e-12)


def test_egg_reference_table_compositional_and_permuted():
    assert posdis(ATTRIBUTES, COMPOSITIONAL) == pytest.approx(1.0, abs=1e-12)
    assert bosdis(ATTRIBUTES, COMPOSITIONAL, vocab_size=4) == pytest.approx(0.0, abs=1e-12)
    assert topographic_similarity(ATTRIBUTES, PERMUTED) == pytest.approx(-1 / 3, abs=1e-12)
    assert posdis(ATTRIBUTES, PERMUTED) == pytest.approx(0.1402, abs=5e-5)
    assert bosdis(ATTRIBUTES, PERMUTED, vocab_size=4) == pytest.approx(0.3263, abs=5e-5)


def test_permuting_a_compositional_language_lowers_topsim():
    rng = np.random.default_rng(0)
    attributes = np.array([(a, b, c) for a in range(4) for b in range(4) for c in range(4)])
    messages = attributes + [1, 5, 9]  # one alphabet per position: Levenshtein = Hamming
    shuffled = messages[rng.permutation(len(messages))]
    assert topographic_similarity(attributes, messages) == pytest.approx(1.0)
    assert topographic_similarity(attributes, shuffled) < 0.3


def test_constant_eos_column_and_extra_vocab_do_not_change_disentanglement():
    with_eos = np.concatenate([PERMUTED, np.zeros((9, 1), dtype=int)], axis=1)
    assert posdis(ATTRIBUTES, with_eos) == pytest.approx(posdis(ATTRIBUTES, PERMUTED))
    assert bosdis(ATTRIBUTES, with_eos, vocab_size=10) == pytest.approx(bosdis(ATTRIBUTES, PERMUTED, vocab_size=4))


def _reference_mi_gap(attributes, features):
    gaps = []
    for column in features.T:
        h = entropy(np.unique(column, return_counts=True)[1], base=2)
        if h > 0:
            infos = sorted((mutual_info_score(a, column) / np.log(2) for a in attributes.T), reverse=True)
            gaps.append((infos[0] - infos[1]) / h)
    return np.mean(gaps)


def test_posdis_and_bosdis_match_an_sklearn_mutual_information_reference():
    rng = np.random.default_rng(3)
    attributes, messages = random_language(rng, n=200, n_attributes=3, n_values=3, length=4, vocab=5)
    assert posdis(attributes, messages) == pytest.approx(_reference_mi_gap(attributes, messages), abs=1e-12)
    counts = np.stack([(messages == v).sum(1) for v in range(1, 5)], axis=1)
    assert np.array_equal(symbol_counts(messages, 5), counts)
    assert bosdis(attributes, messages, 5) == pytest.approx(_reference_mi_gap(attributes, counts), abs=1e-12)


def test_bosdis_accepts_ragged_messages_as_bags():
    ragged = [[1, 2], [2], [1, 1, 2], [2, 2]]
    assert np.array_equal(symbol_counts(ragged, 3), [[1, 1], [0, 1], [2, 1], [0, 2]])


def test_message_entropy_counts_whole_messages_in_bits():
    assert message_entropy([[1, 2], [1, 3], [2, 2], [3, 3]]) == pytest.approx(2.0)
    assert message_entropy([[1, 2], [1, 2], [2, 2], [2, 2]]) == pytest.approx(1.0)
    assert message_entropy(np.ones((5, 3), dtype=int)) == 0.0
    # Post-EOS noise makes these 2 messages look like 2 distinct ones, unless eos is given.
    noisy = [[1, 0, 5], [1, 0, 7]]
    assert message_entropy(noisy) == pytest.approx(1.0)
    assert message_entropy(noisy, eos=0) == 0.0


# --------------------------------------------------------------- agreement with scipy on pairs
def test_default_topsim_equals_scipy_spearman_of_egg_pair_distances():
    rng = np.random.default_rng(1)
    attributes, messages = random_language(rng)
    meaning_pairs = pdist(attributes, "hamming")
    message_pairs = pdist(messages, egg_edit)
    assert np.array_equal(pairwise_meaning_distances(attributes), meaning_pairs)
    assert np.array_equal(pairwise_message_distances(messages), message_pairs)
    expected = spearmanr(meaning_pairs, message_pairs).correlation
    assert topographic_similarity(attributes, messages) == pytest.approx(expected, abs=1e-12)
    assert topographic_similarity(attributes, messages, correlation="pearson") == pytest.approx(
        pearsonr(meaning_pairs, message_pairs)[0], abs=1e-12
    )


def test_all_pairs_conventions_equal_scipy_on_the_full_n_by_n_matrices():
    rng = np.random.default_rng(2)
    attributes, messages = random_language(rng)
    lev = squareform(pdist(messages, reference_levenshtein)).ravel()
    cosine_similarity = 1 - squareform(pdist(one_hot(attributes, 4), "cosine")).ravel()
    hamming = squareform(pdist(attributes, "hamming")).ravel()
    # Li & Bowling report -Spearman(Levenshtein, cosine similarity) over all N x N pairs.
    li_bowling = -spearmanr(lev, cosine_similarity).correlation
    assert topographic_similarity(attributes, messages, convention="li_bowling") == pytest.approx(li_bowling, abs=1e-12)
    assert topographic_similarity(one_hot(attributes, 4), messages, convention="li_bowling") == pytest.approx(
        li_bowling, abs=1e-12
    )
    ren = pearsonr(hamming, lev)[0]
    assert topographic_similarity(attributes, messages, convention="ren") == pytest.approx(ren, abs=1e-12)


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "hamming"])
def test_float_meaning_vectors_match_scipy_pdist(distance):
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(30, 5))
    if distance == "hamming":
        vectors = rng.integers(0, 2, (30, 6)).astype(float)
    _, messages = random_language(rng, n=30)
    expected_pairs = pdist(vectors, distance)
    assert np.allclose(pairwise_meaning_distances(vectors, distance), expected_pairs, atol=1e-12)
    expected = spearmanr(expected_pairs, pdist(messages, egg_edit)).correlation
    assert topographic_similarity(vectors, messages, meaning_distance=distance) == pytest.approx(expected, abs=1e-10)


def test_categorical_cosine_and_euclidean_are_taken_on_one_hot():
    rng = np.random.default_rng(5)
    attributes, _ = random_language(rng, n=25)
    encoded = one_hot(attributes, 4)
    for distance in ("cosine", "euclidean"):
        assert np.allclose(pairwise_meaning_distances(attributes, distance), pdist(encoded, distance), atol=1e-12)


def test_callable_distances_get_rows_and_truncated_messages():
    rng = np.random.default_rng(6)
    attributes, messages = random_language(rng, n=20)
    messages[:, 2] = 0  # EOS at position 2 or earlier
    meaning_fn = lambda u, v: float(np.abs(u - v).sum())  # noqa: E731
    length_gap = lambda x, y: float(abs(len(x) - len(y)))  # noqa: E731
    got = topographic_similarity(attributes, messages, meaning_distance=meaning_fn, message_distance=length_gap, eos=0)
    lengths = np.argmax(messages == 0, axis=1) + 1
    expected = spearmanr(pdist(attributes, "cityblock"), pdist(lengths[:, None], "cityblock")).correlation
    assert got == pytest.approx(expected, abs=1e-12)


def test_eos_truncates_before_edit_distance():
    messages = np.array([[1, 2, 0, 3, 3], [1, 0, 4, 4, 4], [1, 2, 0, 5, 6]])
    truncated = [[1, 2, 0], [1, 0], [1, 2, 0]]
    expected = pdist(np.array([0, 1, 2])[:, None], lambda i, j: egg_edit(truncated[int(i[0])], truncated[int(j[0])]))
    assert np.array_equal(pairwise_message_distances(messages, eos=0), expected)
    assert np.array_equal(pairwise_message_distances(truncated), expected)
    # Positions past the shorter message's end count as differing for message hamming.
    assert np.array_equal(pairwise_message_distances([[1, 2], [1], [1, 3, 3]], "hamming"), [1 / 3, 2 / 3, 2 / 3])
    # Without eos the post-EOS symbols count, as in EGG.
    assert pairwise_message_distances(messages)[1] == pytest.approx(egg_edit(messages[0], messages[2]))


# ------------------------------------------------------ vectorised edit distance vs plain DP
@pytest.mark.parametrize("max_length", [1, 3, 16, 17, 40, 70])
def test_vectorised_levenshtein_equals_plain_dp_on_ragged_and_fixed(max_length):
    rng = np.random.default_rng(max_length)
    n = 12 if max_length < 40 else 6
    for ragged in (False, True):
        lengths = rng.integers(0, max_length + 1, n) if ragged else np.full(n, max_length)
        messages = [rng.integers(0, 3, int(k)) for k in lengths]
        got = pairwise_message_distances(messages, "levenshtein")
        expected = [reference_levenshtein(messages[i], messages[j]) for i in range(n) for j in range(i + 1, n)]
        assert np.array_equal(got, expected)


def test_levenshtein_block_handles_rectangles_of_different_lengths():
    rng = np.random.default_rng(7)
    xs, ys = rng.integers(0, 4, (5, 9)), rng.integers(0, 4, (7, 20))
    x_len, y_len = rng.integers(0, 10, 5), rng.integers(0, 21, 7)
    got = levenshtein_block(xs, x_len, ys, y_len)
    expected = [[reference_levenshtein(xs[i, : x_len[i]], ys[j, : y_len[j]]) for j in range(7)] for i in range(5)]
    assert np.array_equal(got, expected)


def test_blocked_computation_matches_scipy_on_a_larger_language():
    """Several row blocks (and the uneven leading squares between them) are stitched correctly."""
    rng = np.random.default_rng(8)
    attributes, messages = random_language(rng, n=600, n_attributes=4, n_values=5, length=3, vocab=5)
    got = pairwise_message_distances(messages, "hamming")
    assert np.array_equal(got, pdist(messages, "hamming"))
    expected = spearmanr(pdist(attributes, "hamming"), got).correlation
    got = topographic_similarity(attributes, messages, message_distance="hamming")
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_count_table_and_pair_vector_paths_agree(convention, monkeypatch):
    """Discrete distances are correlated through a joint count table; forcing the general
    pair-vector path (used for float vectors and callables) must give the same number."""
    import analysis.compositionality as compositionality

    rng = np.random.default_rng(9)
    attributes, messages = random_language(rng, n=300, length=6)
    ragged = [m[: rng.integers(1, 7)] for m in messages]
    for language in (messages, ragged):
        by_table = topographic_similarity(attributes, language, convention=convention)
        monkeypatch.setattr(compositionality, "_MAX_TABLE", 0)
        by_vectors = topographic_similarity(attributes, language, convention=convention)
        monkeypatch.undo()
        assert by_table == pytest.approx(by_vectors, abs=1e-12)


# --------------------------------------------------------------------------- invariances
languages = st.integers(min_value=3, max_value=14).flatmap(
    lambda n: st.tuples(
        st.lists(st.lists(st.integers(0, 3), min_size=2, max_size=2), min_size=n, max_size=n),
        st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=6), min_size=n, max_size=n),
        st.randoms(use_true_random=False),
    )
)


def _topsim_or_nan(meanings, messages, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return topographic_similarity(meanings, messages, **kwargs)


def _same(a, b):
    return (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# Relabelling symbols moves the EOS symbol, so conventions that cut at EOS are not invariant to it.
AS_GIVEN = sorted(name for name, preset in CONVENTIONS.items() if preset.eos is None)


@settings(max_examples=40, deadline=None)
@given(languages, st.sampled_from(AS_GIVEN))
def test_topsim_is_invariant_to_relabelling_symbols_values_and_objects(language, convention):
    meanings, messages, random = language
    assume(any(messages))
    meanings = np.array(meanings)
    base = _topsim_or_nan(meanings, messages, convention=convention)

    symbol_map = list(range(5))
    random.shuffle(symbol_map)
    relabelled = [[symbol_map[s] + 10 for s in m] for m in messages]
    assert _same(_topsim_or_nan(meanings, relabelled, convention=convention), base)

    value_map = np.array(random.sample(range(100), 4))
    assert _same(_topsim_or_nan(value_map[meanings], messages, convention=convention), base)

    order = list(range(len(messages)))
    random.shuffle(order)
    assert _same(_topsim_or_nan(meanings[order], [messages[i] for i in order], convention=convention), base)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), max_size=8), min_size=1, max_size=6),
    st.lists(st.lists(st.integers(0, 3), max_size=8), min_size=1, max_size=6),
)
def test_levenshtein_is_symmetric_and_zero_on_the_diagonal(xs, ys):
    def pack(rows):
        lengths = np.array([len(r) for r in rows])
        padded = np.zeros((len(rows), max(1, lengths.max())), dtype=int)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        return padded, lengths

    (x, x_len), (y, y_len) = pack(xs), pack(ys)
    forward = levenshtein_block(x, x_len, y, y_len)
    assert np.array_equal(forward, levenshtein_block(y, y_len, x, x_len).T)
    assert np.all(np.diag(levenshtein_block(x, x_len, x, x_len)) == 0)
    assert np.array_equal(forward, [[reference_levenshtein(a, b) for b in ys] for a in xs])


# ---------------------------------------------------------------------- degenerate input
def test_constant_language_or_meanings_give_nan_with_a_warning():
    with pytest.warns(ConstantInputWarning, match="message"):
        assert np.isnan(topographic_similarity(ATTRIBUTES, np.ones((9, 2), dtype=int)))
    with pytest.warns(ConstantInputWarning, match="meaning"):
        assert np.isnan(topographic_similarity(np.zeros((9, 2), dtype=int), PERMUTED, convention="ren"))
    with pytest.warns(RuntimeWarning, match="constant"):
        assert np.isnan(posdis(ATTRIBUTES, np.ones((9, 3), dtype=int)))


def _raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_bad_input_raises_value_errors_that_name_the_argument():
    good_meanings, good_messages = ATTRIBUTES, COMPOSITIONAL
    ts = topographic_similarity
    _raises("same number of rows", ts, good_meanings[:5], good_messages)
    _raises("messages is empty", ts, good_meanings, np.zeros((0, 2), dtype=int))
    _raises("meanings is empty", ts, np.zeros((0, 2), dtype=int), good_messages)
    _raises("messages is empty", ts, good_meanings, [])
    _raises("negative symbols", ts, good_meanings, -good_messages)
    _raises("messages must hold integer symbols.*float", ts, good_meanings, good_messages.astype(float))
    _raises(r"messages\[1\] must hold integer", ts, good_meanings[:2], [[1, 2], [1.5]])
    _raises("meanings must be 2-D", ts, good_meanings[:, 0], good_messages)
    _raises("meanings holds NaN", ts, np.full((9, 2), np.nan), good_messages)
    _raises("meaning_distance must be one of", ts, good_meanings, good_messages, meaning_distance="manhattan")
    _raises("message_distance must be one of", ts, good_meanings, good_messages, message_distance="jaro")
    _raises("correlation must be one of", ts, good_meanings, good_messages, correlation="kendall")
    _raises("pairs must be one of", ts, good_meanings, good_messages, pairs="upper")
    _raises("convention must be None or one of", ts, good_meanings, good_messages, convention="chaabouni")
    _raises("correlation='spearman' conflicts with convention='ren'", ts, good_meanings, good_messages,
            convention="ren", correlation="spearman")
    _raises("eos must be None or a non-negative int", ts, good_meanings, good_messages, eos=-1)
    _raises("at least 2 objects", ts, good_meanings[:1], good_messages[:1])
    _raises("all-zero row", ts, np.zeros((9, 3)), good_messages, meaning_distance="cosine")
    _raises("distance must be one of", pairwise_message_distances, good_messages, "cosine")
    _raises("attributes must have at least 2 columns", posdis, good_meanings[:, :1], good_messages)
    _raises("same number of rows", posdis, good_meanings, good_messages[:4])
    _raises("same length for posdis", posdis, good_meanings[:2], [[1, 2], [1]])
    _raises("outside vocab_size=3", bosdis, good_meanings, good_messages, 3)
    _raises("vocab_size must be an int >= 2", bosdis, good_meanings, good_messages, 1.5)


def test_matching_explicit_choice_and_convention_is_accepted():
    explicit = topographic_similarity(ATTRIBUTES, PERMUTED, correlation="pearson", convention="ren")
    assert explicit == topographic_similarity(ATTRIBUTES, PERMUTED, convention="ren")


def test_importing_the_metrics_does_not_import_torch():
    code = "import analysis.compositionality, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
