"""The int8 first pass of a dense scan: it shortlists, fp32 decides, so the list and its scores are the exact scan's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.embedding import Embedder
from matching.quantised import quantise, shortlist
from matching.segment_index import SegmentIndex
from matching.segments import Segment
from tests.matching.test_segment_index import _docs


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_codes_approximate_every_vector() -> None:
    v = _unit(np.random.default_rng(0), 500, 384)
    codes, scales = quantise(v)
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127
    assert np.abs(codes * scales[:, None] - v).max() <= scales.max() / 2 + 1e-7
    zero_codes, zero_scales = quantise(np.zeros((2, 4), dtype=np.float32))
    assert not zero_codes.any() and zero_scales.tolist() == [1.0, 1.0]


@settings(max_examples=120, deadline=None)
@given(
    n=st.integers(1, 1500),
    dim=st.sampled_from([32, 128, 384]),
    depth=st.integers(1, 60),
    copies=st.integers(0, 20),
    dropped=st.sampled_from([0.0, 0.3, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shortlist_returns_the_exact_scans_top_with_fp32_scores(
    n: int, dim: int, depth: int, copies: int, dropped: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    v = _unit(rng, n, dim)
    v[rng.integers(0, n, copies)] = v[0]  # exact ties, across the cut when depth is small
    allowed = rng.random(n) >= dropped
    q = _unit(rng, 1, dim)[0]
    codes, scales = quantise(v)
    rows, scores = shortlist(codes, scales, v, q, allowed, depth)
    exact = v.astype(np.float64) @ q
    # Every score that leaves is the fp32 inner product (BLAS may round a subset's last bit differently).
    np.testing.assert_allclose(scores, exact[rows], rtol=0, atol=1e-6)
    assert allowed[rows].all()
    assert len(rows) >= min(depth, int(allowed.sum()))
    want = np.sort(exact[allowed])[::-1][:depth]
    np.testing.assert_allclose(np.sort(scores)[::-1][:depth], want, rtol=0, atol=1e-6)


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
    for stored, made in zip(back.codes(), quantise(seg.vectors), strict=True):
        np.testing.assert_array_equal(stored, made)
    arrays = Segment._arrays
    monkeypatch.setattr(Segment, "_arrays", lambda self: {k: a for k, a in arrays(self).items() if "code" not in k})
    seg._codes = None
    seg.write(tmp_path / "old.seg")
    old = Segment.open(tmp_path / "old.seg")
    assert old._codes is None
    for stored, made in zip(old.codes(), quantise(seg.vectors), strict=True):
        np.testing.assert_array_equal(stored, made)


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
