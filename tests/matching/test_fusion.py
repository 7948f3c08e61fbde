"""Score normalisation and fusion."""

from __future__ import annotations

import numpy as np
import pytest

from matching.fusion import Candidates, FusionConfig, fuse, normalise, order


def _cands() -> Candidates:
    # Three candidates: 0 is lexically best, 2 densely best, 1 in between on both.
    return Candidates(
        positions=np.array([10, 11, 12]),
        raw={
            "words": np.array([9.0, 5.0, 1.0]),
            "chars": np.array([6.0, 4.0, 2.0]),
            "dense": np.array([0.7, 0.8, 0.9]),
        },
        ranks={"words": np.array([1, 2, 3]), "chars": np.array([1, 2, 3]), "dense": np.array([3, 2, 1])},
        top={
            "words": np.array([9.0, 5.0, 1.0]),
            "chars": np.array([6.0, 4.0, 2.0]),
            "dense": np.array([0.9, 0.8, 0.7]),
        },
    )


def test_minmax_maps_top_candidates_to_unit_range_and_clips_outsiders():
    out = normalise(np.array([10.0, 5.0, 0.0, -3.0]), np.array([10.0, 5.0, 0.0]), "minmax")
    assert np.allclose(out, [1.0, 0.5, 0.0, 0.0])


def test_zscore_centres_on_the_top_candidates():
    out = normalise(np.array([3.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0]), "zscore")
    assert out[2] == pytest.approx(0.0) and out[0] > 0 > out[1]


def test_degenerate_lists_do_not_divide_by_zero():
    assert np.allclose(normalise(np.array([2.0, 1.0]), np.array([2.0]), "minmax"), [1.0, 0.0])
    assert not normalise(np.array([0.0]), np.array([0.0]), "minmax").any()
    assert not normalise(np.array([1.0]), np.zeros(0), "zscore").any()


def test_weights_decide_between_lexical_and_dense():
    lexical = FusionConfig(weight_words=0.5, weight_chars=0.5, weight_dense=0.0)
    dense = FusionConfig(weight_words=0.0, weight_chars=0.0, weight_dense=1.0)
    c = _cands()
    for config, best in ((lexical, 10), (dense, 12)):
        scores, parts = fuse(c, config)
        assert c.positions[order(scores, c.positions)[0]] == best
        assert np.allclose(sum(parts.values()), scores)
    _, parts = fuse(c, lexical)
    assert "dense" not in parts  # a zero weight contributes nothing at all


def test_rrf_uses_ranks_only():
    c = _cands()
    scores, _ = fuse(c, FusionConfig(method="rrf", weight_words=1, weight_chars=1, weight_dense=1, rrf_k=60))
    assert scores[0] == pytest.approx(2 / 61 + 1 / 63)
    c.raw["words"] = c.raw["words"] * 100  # raw scale is irrelevant to RRF
    again, _ = fuse(c, FusionConfig(method="rrf", weight_words=1, weight_chars=1, weight_dense=1, rrf_k=60))
    assert np.allclose(scores, again)


def test_rrf_ignores_lists_that_did_not_retrieve_a_candidate():
    c = _cands()
    c.ranks["dense"] = np.array([0, 0, 1])
    scores, parts = fuse(c, FusionConfig(method="rrf", weight_words=0, weight_chars=0, weight_dense=1))
    assert parts["dense"][0] == 0.0 and scores[2] == pytest.approx(1 / 61)


def test_ties_break_by_position():
    assert order(np.array([1.0, 1.0, 2.0]), np.array([5, 3, 9])).tolist() == [2, 1, 0]


def test_zscore_keeps_a_lexical_list_with_a_single_hit() -> None:
    # A query term only one document has: the words list has one positive member. Its z-score spread is zero; the
    # hit must still count (it used to be zeroed, so a near-tie on the dense side decided alone).
    cands = Candidates(
        positions=np.array([0, 1, 2]),
        raw={"words": np.array([0.0, 7.5, 0.0]), "dense": np.array([0.86, 0.85, 0.80])},
        ranks={"words": np.array([0, 1, 0]), "dense": np.array([1, 2, 3])},
        top={"words": np.array([7.5]), "dense": np.array([0.86, 0.85, 0.80])},
    )
    config = FusionConfig(weight_words=0.4, weight_chars=0.0, weight_dense=0.3, normalisation="zscore")
    total, parts = fuse(cands, config)
    assert parts["words"][1] > 0 and parts["words"][0] == parts["words"][2] == 0
    assert order(total, cands.positions)[0] == 1, "the only document with the term ranks first"
