"""The int8 first pass of a dense scan: it only chooses what fp32 scores, so the list and its scores are the exact
scan's, on random, clustered and duplicated vectors alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.embedding import Embedder
from matching.quantised import Codes, quantise, shortlist
from matching.segment_index import SegmentIndex
from matching.segments import Segment
from tests.matching.test_segment_index import _docs


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _clustered(rng: np.random.Generator, n: int, dim: int, centres: int, sigma: float) -> np.ndarray:
    """Near-copies of a few vectors: top lists of near-ties, where int8 rounding reorders the most."""
    base = _unit(rng, centres, dim)
    v = base[rng.integers(0, centres, n)] + sigma * rng.standard_normal((n, dim)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_codes_and_the_bound_hold_for_every_row() -> None:
    rng = np.random.default_rng(0)
    v = _unit(rng, 500, 384)
    made = quantise(v)
    scales, residuals = made.meta
    assert made.codes.dtype == np.int8 and np.abs(made.codes).max() == 127
    approx = made.codes * scales[:, None]
    assert np.abs(approx - v).max() <= scales.max() / 2 + 1e-7
    np.testing.assert_allclose(residuals, np.linalg.norm(v - approx, axis=1), rtol=1e-5, atol=1e-7)
    zero = quantise(np.zeros((2, 4), dtype=np.float32))
    assert not zero.codes.any() and zero.meta[0].tolist() == [1.0, 1.0]


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 3000),
    dim=st.sampled_from([16, 128, 384]),
    depth=st.integers(1, 60),
    shape=st.sampled_from(["random", "clustered", "tight"]),
    copies=st.integers(0, 40),
    dropped=st.sampled_from([0.0, 0.3, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shortlist_is_the_exact_scans_list(
    n: int, dim: int, depth: int, shape: str, copies: int, dropped: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    if shape == "random":
        v = _unit(rng, n, dim)
    else:
        v = _clustered(rng, n, dim, centres=5, sigma=0.03 if shape == "clustered" else 0.003)
    v[rng.integers(0, n, copies)] = v[0]  # exact ties, across the cut when depth is small
    allowed = rng.random(n) >= dropped
    q = v[rng.integers(0, n)] if shape == "tight" else _unit(rng, 1, dim)[0]
    rows, scores = shortlist(quantise(v), v, q, allowed, depth)
    exact = v.astype(np.float64) @ q.astype(np.float64)
    assert allowed[rows].all() and len(set(rows.tolist())) == len(rows)
    # Every score that leaves is the fp32 product (BLAS may round a subset's last bit differently).
    np.testing.assert_allclose(scores, exact[rows], rtol=0, atol=1e-6)
    candidates = np.flatnonzero(allowed)
    if len(candidates) == 0:
        assert len(rows) == 0
        return
    cut = np.sort(exact[candidates])[::-1][min(depth, len(candidates)) - 1]
    # Exactly the rows at or above the depth-th score (rows within rounding of it may go either way).
    must = set(candidates[exact[candidates] > cut + 1e-6].tolist())
    may = must | set(candidates[exact[candidates] >= cut - 1e-6].tolist())
    assert must <= set(rows.tolist()) <= may


def test_segment_files_store_the_codes_and_older_files_make_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    index = SegmentIndex.in_memory(embedder=None)
    index.sync(_docs(30))
    seg = index._state.segments[0]
    seg.vectors = _unit(rng, len(seg), 16)
    seg.write(tmp_path / "new.seg")
    back = Segment.open(tmp_path / "new.seg")
    assert back._codes is not None, "written with the segment, mapped on open"
    _same(back.codes(), quantise(seg.vectors))
    arrays = Segment._arrays
    monkeypatch.setattr(Segment, "_arrays", lambda self: {k: a for k, a in arrays(self).items() if "code" not in k})
    seg._codes = None
    seg.write(tmp_path / "old.seg")
    old = Segment.open(tmp_path / "old.seg")
    assert old._codes is None
    _same(old.codes(), quantise(seg.vectors))
    assert old.codes() is old.codes(), "made once"


def _same(a: Codes, b: Codes) -> None:
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.meta, b.meta)


def test_the_index_dense_list_is_the_exact_scans(embedder: Embedder) -> None:
    index = SegmentIndex.in_memory(embedder=embedder, candidate_depth=10, hnsw_threshold=10**9)
    index.sync(_docs(300))
    state = index._state
    assert max(len(s) for s in state.segments) > 2 * 10 + 64, "a segment large enough for the int8 first pass"
    vectors = np.concatenate([np.asarray(s.vectors) for s in state.segments])
    for text in ("锂电池隔膜", "海参育苗的改进", "碳纤维风电叶片"):
        q = index.embed_queries([index.analyse(text)])[0]
        for mask in (state.alive_all, state.alive_all & (np.arange(state.total) % 3 > 0)):
            top, exact = index._dense(state, q, 10, mask)
            scores = exact(np.arange(state.total))
            allowed = np.flatnonzero(mask)
            want = allowed[np.lexsort((state.ids_all[allowed], -scores[allowed]))][:10]
            assert top.tolist() == want.tolist(), text
            np.testing.assert_allclose(exact(top), vectors[top] @ q, rtol=0, atol=1e-6)
