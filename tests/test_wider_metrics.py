"""The wider metric set (issue 16): mutual information and conditional entropies, context
independence, HAS segments, Zipf's law of abbreviation, the one-call ``language_metrics`` and
``python -m analysis.language_scores --metric``. Each is pinned by hand-computed cases and, where
emlangkit implements the same quantity, against emlangkit; each named convention against its
outside definition."""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter

import numpy as np
import pytest
from scipy.stats import ConstantInputWarning

from analysis.abbreviation import message_types, zla_correlation
from analysis.context_independence import CI_CONVENTIONS, concept_symbol_counts, context_independence
from analysis.information import (
    INFORMATION_CONVENTIONS,
    entropy_messages_given_objects,
    entropy_objects_given_messages,
    information_scores,
    mutual_information,
)
from analysis.language_metrics import METRIC_CONVENTIONS, WIDER_METRICS, language_metrics, score_language
from analysis.segments import HAS_CONVENTIONS, branching_entropies, conditional_entropies, has_segmentation

GRID = np.array([(a, b) for a in range(4) for b in range(4)])


def _eos_language(seed, n=48, length=5, vocab=4, attributes=3, values=3):
    """Random objects (repeats allowed) and messages whose symbols after the first 0 are 0."""
    rng = np.random.default_rng(seed)
    objects = rng.integers(0, values, (n, attributes))
    messages = rng.integers(0, vocab, (n, length))
    messages[np.cumsum(messages == 0, axis=1) > 0] = 0
    return objects, messages


def _cut(messages, eos=0, keep_eos=True):
    """Each message as a list, cut at its first EOS (kept or dropped)."""
    out = []
    for m in np.asarray(messages).tolist():
        end = m.index(eos) + (1 if keep_eos else 0) if eos in m else len(m)
        out.append(m[:end])
    return out


# ------------------------------------------------------------------------ information, by hand
def test_information_on_a_hand_computed_language():
    # Four objects once each; messages a, a, b, c: H(M) = 1.5, H(O) = 2, H(M, O) = 2.
    objects = [[0], [1], [2], [3]]
    messages = [[1], [1], [2], [3]]
    scores = information_scores(objects, messages)
    assert (scores.message_entropy, scores.object_entropy, scores.joint_entropy) == pytest.approx((1.5, 2.0, 2.0))
    assert mutual_information(objects, messages) == pytest.approx(1.5)
    assert entropy_messages_given_objects(objects, messages) == pytest.approx(0.0)
    assert entropy_objects_given_messages(objects, messages) == pytest.approx(0.5)  # a names two objects


def test_synonymy_shows_in_messages_given_objects():
    # Object 0 said two ways, object 1 one way (twice): H(O) = 1, H(M) = 1.5, H(M, O) = 1.5.
    objects, messages = [[0], [0], [1], [1]], [[1], [2], [3], [3]]
    assert mutual_information(objects, messages) == pytest.approx(1.0)
    assert entropy_messages_given_objects(objects, messages) == pytest.approx(0.5)
    assert entropy_objects_given_messages(objects, messages) == pytest.approx(0.0)


def test_information_conventions_differ_only_by_post_eos_symbols():
    objects = [[0], [1]]
    noisy = [[1, 0, 2], [1, 0, 3]]  # the same message [1, EOS] with different noise after it
    assert mutual_information(objects, noisy, convention="egg") == pytest.approx(1.0)
    assert mutual_information(objects, noisy) == pytest.approx(1.0)
    assert mutual_information(objects, noisy, convention="egg_eos") == pytest.approx(0.0)
    assert mutual_information(objects, noisy, eos=0) == pytest.approx(0.0)
    assert entropy_objects_given_messages(objects, noisy, convention="egg_eos") == pytest.approx(1.0)
    # A message is its symbols and its length: [1] and [1, 0] (ragged input) are two messages.
    assert mutual_information(objects, [[1], [1, 0]]) == pytest.approx(1.0)
    assert set(INFORMATION_CONVENTIONS) == {"egg", "egg_eos"}


def test_information_refuses_conflicts_and_bad_input():
    with pytest.raises(ValueError, match="eos=0 conflicts with convention='egg'"):
        mutual_information([[0]], [[1]], convention="egg", eos=0)
    with pytest.raises(ValueError, match="eos=1 conflicts with convention='egg_eos'"):
        mutual_information([[0]], [[1]], convention="egg_eos", eos=1)
    with pytest.raises(ValueError, match="convention must be None or one of"):
        mutual_information([[0]], [[1]], convention="nats")
    with pytest.raises(ValueError, match="objects and messages must have the same number of rows"):
        mutual_information([[0], [1]], [[1]])
    with pytest.raises(ValueError, match="objects must be 2-D"):
        mutual_information([0, 1], [[1], [2]])


# ------------------------------------------------------------------- information, emlangkit oracle
@pytest.mark.parametrize("seed", range(4))
def test_egg_information_equals_emlangkit(seed):
    metrics = pytest.importorskip("emlangkit.metrics")
    objects, messages = _eos_language(seed)
    messages[::3, -1] = 3  # post-EOS noise: "egg" scores it, as emlangkit does
    h_m, h_o = metrics.compute_entropy(messages), metrics.compute_entropy(objects)
    scores = information_scores(objects, messages, convention="egg")
    assert scores.message_entropy == pytest.approx(h_m, abs=1e-12)
    assert scores.object_entropy == pytest.approx(h_o, abs=1e-12)
    assert scores.mutual_information == pytest.approx(metrics.compute_mutual_information(messages, objects), abs=1e-12)
    joint = metrics.compute_entropy(np.concatenate([objects, messages], axis=1))
    assert scores.messages_given_objects == pytest.approx(joint - h_o, abs=1e-12)
    assert scores.objects_given_messages == pytest.approx(joint - h_m, abs=1e-12)
    # "egg_eos" is emlangkit on the messages with everything after the first EOS zeroed.
    zeroed = messages.copy()
    zeroed[np.cumsum(zeroed == 0, axis=1) > 0] = 0
    assert mutual_information(objects, messages, convention="egg_eos") == pytest.approx(
        metrics.compute_mutual_information(zeroed, objects), abs=1e-12)
    assert mutual_information(objects, messages, convention="egg") != pytest.approx(
        mutual_information(objects, messages, convention="egg_eos"))


# --------------------------------------------------------------------------- context independence
def test_context_independence_of_a_compositional_language_is_one_over_k_squared():
    # Message [a + 1, b + 5]: every symbol names one concept, but co-occurs with the other
    # attribute's 4 values as often as with its own: p(v | c) = p(c | v) = 1/2.
    messages = np.stack([GRID[:, 0] + 1, GRID[:, 1] + 5], axis=1)
    for convention in CI_CONVENTIONS:
        assert context_independence(GRID, messages, 9, convention=convention) == pytest.approx(0.25)
    three = np.array([(a, b, c) for a in range(2) for b in range(2) for c in range(2)])
    assert context_independence(three, three + [1, 3, 5], 7) == pytest.approx(1 / 9)


def test_ci_conventions_choose_different_symbols():
    # Concepts c0, c1, c2 (one attribute); x = 1 is used with every concept, y = 2 only with c0.
    attributes = [[0], [1], [2]]
    messages = [[1, 1, 2], [1, 1, 1], [1, 1, 1]]
    counts, concepts = concept_symbol_counts(attributes, messages, 3)
    assert concepts == [(0, 0), (0, 1), (0, 2)]
    assert counts.tolist() == [[0, 2, 1], [0, 3, 0], [0, 3, 0]]
    # bogin: c0 -> y (p(c0 | y) = 1): 1/3 * 1; c1, c2 -> x: 1 * 3/8.  CI = (1/3 + 3/4) / 3 = 13/36.
    assert context_independence(attributes, messages, 3, convention="bogin") == pytest.approx(13 / 36)
    # korbak: c0 -> x (its most frequent symbol): 2/3 * 2/8.  CI = (1/6 + 3/4) / 3 = 11/36.
    assert context_independence(attributes, messages, 3, convention="korbak") == pytest.approx(11 / 36)


def _korbak_reference(attributes, messages):
    """Korbak et al. 2020's procedure, rewritten from its description: concept-symbol counts
    (each message added twice) plus 1e-7 everywhere, v_c = the row's argmax over the symbols
    that occur, CI = mean over concepts of p(v_c | c) p(c | v_c)."""
    symbols = sorted({s for m in messages for s in m})
    concepts = sorted({(j, v) for row in attributes for j, v in enumerate(row)})
    table = {(c, s): 1e-7 for c in concepts for s in symbols}
    for row, message in zip(attributes, messages):
        for concept in enumerate(row):
            for symbol in list(message) * 2:
                table[concept, symbol] += 1
    scores = []
    for c in concepts:
        row = [table[c, s] for s in symbols]
        v = symbols[int(np.argmax(row))]
        scores.append(table[c, v] / sum(row) * table[c, v] / sum(table[d, v] for d in concepts))
    return float(np.mean(scores))


@pytest.mark.parametrize("seed", range(4))
def test_korbak_convention_equals_their_procedure(seed):
    objects, messages = _eos_language(seed)
    messages[::4] += 1  # some messages without EOS
    reference = _korbak_reference(objects.tolist(), messages.tolist())
    assert context_independence(objects, messages, 5, convention="korbak") == pytest.approx(reference, abs=1e-6)


def test_ci_with_eos_counts_only_the_symbols_before_it():
    objects, messages = _eos_language(7)
    messages[:, -1] = np.where(messages[:, 0] == 0, 2, messages[:, -1])  # post-EOS noise on some rows
    content = _cut(messages, keep_eos=False)
    for convention in CI_CONVENTIONS:
        assert context_independence(objects, messages, 4, eos=0, convention=convention) == pytest.approx(
            context_independence(objects, content, 4, convention=convention))
    as_given = context_independence(objects, messages, 4)
    assert context_independence(objects, messages, 4, eos=0) != pytest.approx(as_given)


def test_ci_refuses_bad_input_and_is_nan_without_symbols():
    with pytest.raises(ValueError, match="outside vocab_size=3"):
        context_independence(GRID, GRID + 1, 3)
    with pytest.raises(ValueError, match="convention must be one of"):
        context_independence(GRID, GRID, 4, convention="ibm")
    with pytest.raises(ValueError, match="attributes must hold integer symbols"):
        context_independence(GRID.astype(float), GRID, 4)
    with pytest.warns(RuntimeWarning, match="no message holds a symbol"):
        assert math.isnan(context_independence(GRID, np.zeros_like(GRID), 4, eos=0))


# ------------------------------------------------------------------------------------------ HAS
def test_branching_and_conditional_entropies_by_hand():
    messages = [[1, 2], [1, 3]]
    h = branching_entropies(messages)
    # f(empty) = 4 symbols: 1 twice, 2 and 3 once -> 1.5 bits; "1" is followed by 2 or 3 -> 1 bit.
    assert h == pytest.approx({(): 1.5, (1,): 1.0, (2,): 0.0, (3,): 0.0, (1, 2): 0.0, (1, 3): 0.0})
    # H(1) = (2 * 1 + 1 * 0 + 1 * 0) / 4.
    assert conditional_entropies(messages) == pytest.approx([1.5, 0.5, 0.0])


def test_boundaries_by_hand_and_the_threshold_is_strict():
    # "1 2" is always followed by something new: h(1 2) = 2 bits after h(1) = 0 -> a boundary at 2.
    messages = [[1, 2, 3], [1, 2, 4], [1, 2, 5], [1, 2, 6]]
    result = has_segmentation(messages)
    assert result.threshold == 0.0 and result.convention == "ueda"
    assert result.boundaries == [(2,)] * 4
    assert result.segments == [((1, 2), (x,)) for x in (3, 4, 5, 6)]
    assert result.boundaries_per_message == 1.0
    assert result.mean_segment_length == 1.5
    assert result.vocabulary_size == 5
    assert has_segmentation(messages, threshold=1.99).boundaries == [(2,)] * 4
    none = has_segmentation(messages, threshold=2.0)  # a rise of exactly 2 bits is not > 2
    assert none.boundaries == [()] * 4 and none.mean_segment_length == 3.0 and none.vocabulary_size == 4


def test_emlangkit_convention_also_tests_the_last_two_starts():
    messages = [[1, 2, 3], [1, 2, 4], [1, 2, 5], [1, 2, 6]]
    # Start 1: h(2 x) - h(2) = 0 - 2; start 2: h(x) - h(empty) = 0 - 2.25 (unigram entropy).
    # A threshold of -3 lets both through: boundaries at n = 3 and n + 1 = 4, and an empty segment.
    emlangkit = has_segmentation(messages, threshold=-3, convention="emlangkit")
    assert emlangkit.boundaries == [(2, 3, 4)] * 4
    assert emlangkit.segments == [((1, 2), (x,), ()) for x in (3, 4, 5, 6)]
    assert emlangkit.mean_segment_length == 1.0 and emlangkit.vocabulary_size == 6
    assert has_segmentation(messages, threshold=-3, convention="ueda").boundaries == [(2,)] * 4
    assert has_segmentation(messages, convention="emlangkit").threshold == 0.8  # emlangkit's Language default
    assert set(HAS_CONVENTIONS) == {"ueda", "emlangkit"}


@pytest.mark.parametrize("seed", range(3))
def test_has_equals_emlangkit(seed):
    metrics = pytest.importorskip("emlangkit.metrics")
    emlangkit = pytest.importorskip("emlangkit")
    rng = np.random.default_rng(seed)
    messages = rng.integers(1, 4, (40, 6))
    alpha, freq = metrics.has_init(messages)
    reference = metrics.compute_branching_entropy(alpha, freq)
    ours = branching_entropies(messages)
    assert set(ours) == {tuple(int(x) for x in key) for key in reference}
    assert all(ours[tuple(int(x) for x in key)] == pytest.approx(value, abs=1e-12) for key, value in reference.items())
    conditional = metrics.compute_conditional_entropy(reference, freq)
    assert conditional_entropies(messages) == pytest.approx([conditional[n] for n in range(7)], abs=1e-12)
    for threshold in (0.0, 0.25, 0.8):
        boundaries = metrics.compute_boundaries(messages, reference, threshold)
        result = has_segmentation(messages, threshold=threshold, convention="emlangkit")
        assert [set(b) for b in result.boundaries] == boundaries
        segments, segment_ids, _ = metrics.compute_segments(messages, boundaries)
        assert result.segments == [tuple(tuple(int(x) for x in s) for s in m) for m in segments]
        assert result.vocabulary_size == len(segment_ids)
        # The paper's Algorithm 1 keeps the boundaries strictly inside the message.
        ueda = has_segmentation(messages, threshold=threshold)
        assert [set(b) for b in ueda.boundaries] == [{p for p in b if p < 6} for b in boundaries]
    language = emlangkit.Language(messages)  # has_threshold=0.8
    _, _, mean = language.boundaries(return_mean=True)
    assert has_segmentation(messages, convention="emlangkit").boundaries_per_message == pytest.approx(mean)


def test_has_with_eos_segments_what_was_said():
    _, messages = _eos_language(3, n=60, length=6)
    content = _cut(messages, keep_eos=False)
    for convention in HAS_CONVENTIONS:
        with_eos = has_segmentation(messages, eos=0, convention=convention)
        by_hand = has_segmentation(content, convention=convention)
        assert with_eos.boundaries == by_hand.boundaries and with_eos.segments == by_hand.segments
    # An empty ragged message stays empty (length 0, not -1) when its EOS is dropped.
    assert has_segmentation([[], [1, 2, 0]], eos=0).segments == [(), ((1, 2),)]
    empty = sum(len(m) == 0 for m in content)
    assert empty > 0  # messages that are just EOS: no segment under ueda
    assert sum(len(s) == 0 for s in has_segmentation(messages, eos=0).segments) == empty
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        has_segmentation(messages, threshold=float("nan"))
    with pytest.raises(ValueError, match="convention must be one of"):
        has_segmentation(messages, convention="tanaka")


# ------------------------------------------------------------------------------------------ ZLA
def test_zla_by_hand():
    # Types with EOS: [1 EOS] x3 (length 2), [2 3 EOS] x2 (length 3), [2 3 4] x1 (no EOS, length 3).
    messages = [[1, 0, 0]] * 3 + [[2, 3, 0]] * 2 + [[2, 3, 4]]
    types, frequency, length = message_types(messages, eos=0)
    assert sorted(zip(frequency.tolist(), length.tolist())) == [(1.0, 3), (2.0, 3), (3.0, 2)]
    # Kendall tau-b: 2 discordant pairs, 1 tied in length: (0 - 2) / sqrt(3 * 2).
    assert zla_correlation(messages, eos=0) == pytest.approx(-2 / math.sqrt(6))
    # Spearman: ranks (3, 2, 1) against (1, 2.5, 2.5): covariance -1.5 over sqrt(2 * 1.5).
    assert zla_correlation(messages, eos=0, correlation="spearman") == pytest.approx(-math.sqrt(3) / 2)
    # Without eos the messages are fixed-length: the correlation is undefined.
    with pytest.warns(ConstantInputWarning, match="same lengths"):
        assert math.isnan(zla_correlation(messages))


def test_zla_frequencies_weight_the_rows():
    # Chaabouni et al.'s setting: one message per input, inputs of unequal frequency.
    messages = [[1, 0, 0, 0, 0], [2, 2, 0, 0, 0], [3, 3, 3, 0, 0], [4, 4, 4, 4, 0]]  # lengths 2..5
    assert zla_correlation(messages, eos=0, frequencies=[40, 30, 20, 10]) == pytest.approx(-1.0)
    assert zla_correlation(messages, eos=0, frequencies=[10, 20, 30, 40]) == pytest.approx(1.0)  # anti-efficient
    with pytest.raises(ValueError, match="frequencies must be a 1-D array of 4 numbers"):
        zla_correlation(messages, eos=0, frequencies=[1, 2])
    with pytest.raises(ValueError, match="frequencies must be finite and >= 0"):
        zla_correlation(messages, eos=0, frequencies=[1, -2, 3, 4])
    with pytest.raises(ValueError, match="correlation must be one of"):
        zla_correlation(messages, eos=0, correlation="pearson")


# ------------------------------------------------------------------------------ language_metrics
@pytest.mark.parametrize("eos", [None, 0])
def test_language_metrics_is_each_function_under_its_default(eos):
    objects, messages = _eos_language(11, n=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # undefined values are nan without a warning
        scores = language_metrics(objects, messages, 4, eos=eos)
    assert list(scores) == list(WIDER_METRICS)
    info = information_scores(objects, messages, eos=eos)
    segmentation = has_segmentation(messages, eos=eos)
    expected = {
        "mutual_information": info.mutual_information,
        "entropy_messages_given_objects": info.messages_given_objects,
        "entropy_objects_given_messages": info.objects_given_messages,
        "context_independence": context_independence(objects, messages, 4, eos=eos),
        "has_boundaries_per_message": segmentation.boundaries_per_message,
        "has_mean_segment_length": segmentation.mean_segment_length,
        "has_vocabulary_size": segmentation.vocabulary_size,
        "mean_message_length": 5.0 if eos is None else np.mean([len(m) for m in _cut(messages)]),
    }
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value), name
        assert score_language(objects, messages, 4, name, eos=eos) == pytest.approx(value), name
    if eos is None:
        assert math.isnan(scores["zla"])
    else:
        assert scores["zla"] == pytest.approx(zla_correlation(messages, eos=0))
    assert 0 < scores["context_independence"] < 1 and scores["mutual_information"] > 0


def test_language_metrics_checks_every_argument_first():
    objects, messages = _eos_language(0)
    with pytest.raises(ValueError, match="outside vocab_size=3"):
        language_metrics(objects, messages, 3)
    with pytest.raises(ValueError, match="objects and messages must have the same number of rows"):
        language_metrics(objects[:-1], messages, 4)
    with pytest.raises(ValueError, match="convention 'ibm' does not apply to context_independence"):
        language_metrics(objects, messages, 4, ci_convention="ibm")
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        language_metrics(objects, messages, 4, has_threshold=float("inf"))
    with pytest.raises(ValueError, match="eos must be None or a non-negative int"):
        language_metrics(objects, messages, 4, eos=-1)
    with pytest.raises(ValueError, match="metric must be one of"):
        score_language(objects, messages, 4, "topsim")
    with pytest.raises(ValueError, match="does not apply to mean_message_length"):
        score_language(objects, messages, 4, "mean_message_length", convention="egg")
    assert set(METRIC_CONVENTIONS) == set(WIDER_METRICS)


# ------------------------------------------------------------------------------ language_scores
def _write_run(path, strategy, seed, objects, messages, eos, vocab_size=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"strategy": strategy, "seed": seed}))
    (path / "generations.jsonl").write_text(json.dumps({"generation": 0, "strategy": strategy, "seed": seed,
                                                        "topsim": 0.1}) + "\n")
    language = {"objects": np.asarray(objects).tolist(), "messages": np.asarray(messages).tolist(), "eos": eos}
    if vocab_size is not None:
        language["vocab_size"] = vocab_size
    (path / "language.json").write_text(json.dumps(language))


def test_language_scores_rescores_any_wider_metric(tmp_path, capsys):
    from analysis import language_scores
    from analysis.runs import find_runs

    for seed in range(2):
        objects, messages = _eos_language(seed, n=30)
        _write_run(tmp_path / f"e{seed}", "pbf", seed, objects, messages, eos=True, vocab_size=4)
    runs = find_runs([tmp_path])
    per_run = [language_metrics(*_eos_language(seed, n=30), 4, eos=0) for seed in range(2)]
    for metric in WIDER_METRICS:
        rows = language_scores.language_table(runs, metric=metric).splitlines()
        values = " ".join(f"{r[metric]:.2f}" for r in per_run)
        assert rows[2].startswith("| pbf | 2 | ") and rows[2].endswith(f" | {values} |"), metric
    header = language_scores.language_table(runs, metric="mutual_information").splitlines()[0]
    assert "mutual_information (egg, or egg_eos with eos=0)" in header
    assert language_scores.main([str(tmp_path), "--metric", "context_independence", "--convention", "korbak"]) == 0
    table = capsys.readouterr().out
    korbak = [context_independence(*_eos_language(s, n=30), 4, eos=0, convention="korbak") for s in range(2)]
    assert f"| {' '.join(f'{k:.2f}' for k in korbak)} |" in table and "(korbak)" in table
    assert language_scores.main([str(tmp_path), "--metric", "has_mean_segment_length", "--threshold", "0.5"]) == 0
    assert "| pbf | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (("--metric", "zla", "--convention", "bogin"),
     "--convention bogin: --metric zla takes one of ['kendall', 'spearman']"),
    (("--metric", "zla", "--threshold", "1"), "--threshold applies to the has_* metrics only"),
    (("--metric", "topsim", "--convention", "korbak"), "--convention korbak: --metric topsim takes one of"),
    (("--metric", "entropy"), "argument --metric: invalid choice: 'entropy'"),
])
def test_language_scores_flag_errors_are_one_line(tmp_path, capsys, argv, message):
    from analysis import language_scores

    _write_run(tmp_path / "r", "pbf", 0, GRID, GRID + 1, eos=False)
    try:
        code = language_scores.main([str(tmp_path), *argv])
    except SystemExit as stop:  # argparse's own errors exit from parse_args
        code = stop.code
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_language_scores_on_a_fixed_length_run_without_vocab_size(tmp_path, capsys):
    from analysis import language_scores

    messages = np.stack([GRID[:, 0] + 1, GRID[:, 1] + 5], axis=1)
    _write_run(tmp_path / "r", "no_reset", 0, GRID, messages, eos=False)  # vocab_size: max symbol + 1
    assert language_scores.main([str(tmp_path), "--metric", "context_independence"]) == 0
    assert "| no_reset | 1 | 0.250 | 0.25 |" in capsys.readouterr().out
    assert language_scores.main([str(tmp_path), "--metric", "mutual_information"]) == 0
    assert "| no_reset | 1 | 4.000 | 4.00 |" in capsys.readouterr().out
    assert language_scores.main([str(tmp_path), "--metric", "zla"]) == 0  # undefined: nan, no mean
    assert "| no_reset | 1 | - | nan |" in capsys.readouterr().out


def test_counter_helper_is_consistent_with_message_types():
    # message_types counts each (length, symbols) once: the same as counting the cut lists.
    _, messages = _eos_language(5)
    _, frequency, length = message_types(messages, eos=0)
    counted = Counter(tuple(m) for m in _cut(messages))
    assert sorted(frequency.tolist()) == sorted(float(c) for c in counted.values())
    assert sorted(length.tolist()) == sorted(len(m) for m in counted)
