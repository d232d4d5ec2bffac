"""Named conventions of topsim and bosdis, pinned against their outside definitions, and the
training records reproduced by rescoring their language with the documented convention."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from analysis.compositionality import BOSDIS_CONVENTIONS, bosdis, posdis, topographic_similarity
from emergent_frl.training import (
    RECORD_CONVENTIONS,
    LanguageGameConfig,
    build_game,
    build_optimizers,
    evaluate,
    make_generator,
    train_iterations,
)

BINARY = np.array([(a, b) for a in range(2) for b in range(2)])


def _random_language(seed, n=60, length=4, vocab=4, zero_padded=False):
    rng = np.random.default_rng(seed)
    attributes = rng.integers(0, 3, (n, 3))
    messages = rng.integers(0, vocab, (n, length))
    if zero_padded:  # an EOS language: everything after the first 0 is 0
        messages[np.cumsum(messages == 0, axis=1) > 0] = 0
    return attributes, messages


# ------------------------------------------------------------------- hand-computed, from EGG's docs
def test_bosdis_conventions_differ_only_by_the_count_of_symbol_zero():
    # Message [a, 2b]: symbol 1 names a, symbol 2 names b, symbol 0 fills the other places.
    messages = np.stack([BINARY[:, 0], 2 * BINARY[:, 1]], axis=1)
    # EGG drops symbol 0: counts n1 = a and n2 = b each have gap 1.
    assert bosdis(BINARY, messages, 3, convention="egg") == pytest.approx(1.0, abs=1e-12)
    assert bosdis(BINARY, messages, 3) == bosdis(BINARY, messages, 3, convention="egg")
    # emlangkit also counts n0 = 2 - a - b: H = 1.5 bits, MI 0.5 with each attribute, gap 0.
    assert bosdis(BINARY, messages, 3, convention="emlangkit") == pytest.approx(2 / 3, abs=1e-12)


def test_topsim_egg_scores_padded_messages_as_given_and_egg_eos_cuts_them():
    meanings = np.array([[0, 0], [0, 1], [1, 1]])  # hamming of pairs (01, 02, 12): 0.5, 1, 0.5
    messages = np.array([[1, 0, 0], [1, 2, 0], [3, 3, 3]])
    # As given (EGG's callback): Levenshtein 1, 3, 3 over mean length 3 -> ranks 1, 2.5, 2.5.
    assert topographic_similarity(meanings, messages, convention="egg") == pytest.approx(0.5, abs=1e-12)
    assert topographic_similarity(meanings, messages) == pytest.approx(0.5, abs=1e-12)
    # Cut after the first 0: [1, 0], [1, 2, 0], [3, 3, 3] -> 1/2.5, 3/2.5, 3/3 -> ranks 1, 3, 2.
    expected = np.sqrt(3) / 2
    assert topographic_similarity(meanings, messages, convention="egg_eos") == pytest.approx(expected, abs=1e-12)
    assert topographic_similarity(meanings, messages, convention="egg_eos", eos=0) == pytest.approx(expected)
    assert topographic_similarity(meanings, messages, eos=0) == pytest.approx(expected)


def test_egg_eos_refuses_a_different_eos_and_bosdis_an_unknown_convention():
    with pytest.raises(ValueError, match="eos=1 conflicts with convention='egg_eos'"):
        topographic_similarity(BINARY, BINARY, convention="egg_eos", eos=1)
    with pytest.raises(ValueError, match="convention must be one of"):
        bosdis(BINARY, BINARY, 2, convention="chaabouni")
    assert set(BOSDIS_CONVENTIONS) == {"egg", "emlangkit"}


# ------------------------------------------------------------------------ emlangkit as an oracle
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zero_padded", [False, True])
def test_emlangkit_conventions_equal_emlangkit(seed, zero_padded):
    metrics = pytest.importorskip("emlangkit.metrics")
    attributes, messages = _random_language(seed, zero_padded=zero_padded)
    assert bosdis(attributes, messages, 4, convention="emlangkit") == pytest.approx(
        metrics.compute_bosdis(messages, attributes), abs=1e-12)
    assert posdis(attributes, messages) == pytest.approx(metrics.compute_posdis(messages, attributes), abs=1e-12)
    # emlangkit's topsim is EGG's: hamming vs edit / mean length, Spearman, messages as given.
    topsim, _ = metrics.compute_topographic_similarity(messages, attributes)
    assert topographic_similarity(attributes, messages, convention="egg") == pytest.approx(topsim, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_egg_eos_equals_scipy_on_messages_cut_by_hand(seed):
    attributes, messages = _random_language(seed, zero_padded=True)
    cut = [list(m[: list(m).index(0) + 1]) if 0 in m else list(m) for m in messages]

    def edit(i, j):
        x, y = cut[int(i[0])], cut[int(j[0])]
        table = np.arange(len(y) + 1)
        for a in x:  # one-row Wagner-Fischer
            row = [table[0] + 1]
            for k, b in enumerate(y):
                row.append(min(table[k + 1] + 1, row[k] + 1, table[k] + (a != b)))
            table = np.array(row)
        return table[-1] / ((len(x) + len(y)) / 2)

    expected = spearmanr(pdist(attributes, "hamming"), pdist(np.arange(len(cut))[:, None], edit)).correlation
    assert topographic_similarity(attributes, messages, convention="egg_eos") == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------- records reproduced by rescoring them
@pytest.mark.parametrize("eos", [False, True])
def test_recorded_metrics_are_the_public_functions_under_the_documented_conventions(eos):
    assert dict(RECORD_CONVENTIONS) == {"topsim": "egg", "bosdis": "emlangkit"}
    config = LanguageGameConfig(n_attributes=2, n_values=[3, 3], vocab_size=3, max_len=3, eos=eos, seed=2,
                                hidden_size=32, batch_size=32, lr_sender=5e-3, lr_receiver=5e-3,
                                eval_every=0, eval_repeats=2)
    game = build_game(config)
    train_iterations(game, build_optimizers(game, config), 200, generator=make_generator(config), progress=False)
    record = evaluate(game)
    # What language.json holds (RelearnRun._language_table), through a JSON round trip.
    language = json.loads(json.dumps({"objects": game.space.objects().tolist(),
                                      "messages": record["messages"].tolist(),
                                      "vocab_size": config.vocab_size, "eos": eos}))
    objects, messages = np.asarray(language["objects"]), np.asarray(language["messages"])
    assert len(np.unique(messages, axis=0)) > 1  # a language the metrics are defined on
    assert (messages == 0).any()  # symbol 0 (content, or EOS and padding) is where conventions part
    assert record["topsim"] == topographic_similarity(objects, messages, convention=RECORD_CONVENTIONS["topsim"])
    assert record["posdis"] == posdis(objects, messages)
    assert record["bosdis"] == bosdis(objects, messages, language["vocab_size"],
                                      convention=RECORD_CONVENTIONS["bosdis"])
