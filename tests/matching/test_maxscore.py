"""MaxScore BM25 top-k is exact: the same list and scores as scoring every posting, on random segmented corpora."""

from __future__ import annotations

import math
from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import maxscore
from matching.maxscore import bm25_top
from matching.segments import Postings

K1, B = 1.5, 0.75


def brute_force(
    token_lists: list[list[str]], alive: np.ndarray, query: list[str], k1: float = K1, b: float = B
) -> np.ndarray:
    """BM25 of every document, straight from the definition (Lucene idf over live documents)."""
    live = [t for t, a in zip(token_lists, alive, strict=True) if a]
    n = len(live)
    avgdl = sum(len(t) for t in live) / n
    counts: dict[str, int] = {}
    for t in query:
        counts[t] = counts.get(t, 0) + 1
    scores = np.zeros(len(token_lists))
    for term, repeat in counts.items():
        df = sum(1 for t in live if term in t)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, tokens in enumerate(token_lists):
            tf = tokens.count(term)
            if tf:
                norm = k1 * (1 - b + b * len(tokens) / avgdl)
                scores[i] += repeat * idf * tf / (tf + norm)
    return scores


@st.composite
def corpora(
    draw: st.DrawFn,
) -> tuple[list[list[list[str]]], list[np.ndarray], list[str], np.ndarray, int, float, float]:
    vocab = [f"t{i}" for i in range(draw(st.integers(3, 40)))]
    # Zipf-like: low term numbers are common (long postings, small idf), high ones rare.
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    probs = np.array(weights) / sum(weights)
    segments, alive = [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 60))
        docs = [list(rng.choice(vocab, size=int(rng.integers(1, 30)), p=probs)) for _ in range(n)]
        segments.append(docs)
        alive.append(rng.random(n) > draw(st.sampled_from([0.0, 0.1, 0.5])))
    total = sum(len(s) for s in segments)
    query = list(rng.choice(vocab, size=int(rng.integers(1, 25)), p=probs)) + draw(
        st.lists(st.sampled_from(["zz", "t0"]))
    )
    mask = np.concatenate(alive) & (rng.random(total) > draw(st.sampled_from([0.0, 0.3])))
    depth = draw(st.integers(1, 30))
    # A small k1 makes tf / (tf + norm) approach 1, so the bounds are tight and any over-eager pruning shows.
    k1 = draw(st.sampled_from([0.001, 0.05, 0.5, 1.5]))
    b = draw(st.sampled_from([0.0, 0.75, 1.0]))
    return segments, alive, query, mask, depth, k1, b


def _run(segments: list[list[list[str]]], alive: list[np.ndarray], query: list[str], **kw: object) -> tuple:
    fields = [Postings.build(docs) for docs in segments]
    bases = np.concatenate([[0], np.cumsum([len(d) for d in segments])]).astype(np.int64)
    all_alive = np.concatenate(alive)
    length_sum = float(sum(f.lengths[a].sum() for f, a in zip(fields, alive, strict=True)))
    result = bm25_top(
        fields,
        alive,
        [bool(a.all()) for a in alive],
        bases,
        tokens=query,
        n_alive=int(all_alive.sum()),
        length_sum=length_sum,
        **kw,  # type: ignore[arg-type]
    )
    return result, all_alive, int(bases[-1])


@settings(max_examples=300, deadline=None)
@given(corpora(), st.booleans())
def test_bm25_top_and_scores_equal_brute_force(case: tuple, prune: bool) -> None:
    """Both ways, MaxScore pruning and scoring every posting (its heap of the best so far)."""
    segments, alive, query, mask, depth, k1, b = case
    if not np.concatenate(alive).any():
        return
    total = sum(len(docs) for docs in segments)
    ids = np.random.default_rng(1).permutation(total).astype(np.int64)  # doc ids need not follow positions
    result, all_alive, _ = _run(segments, alive, query, k1=k1, b=b, depth=depth, mask=mask, ids=ids, prune=prune)
    expected = brute_force([d for docs in segments for d in docs], all_alive, query, k1, b)
    allowed = np.flatnonzero(mask & (expected > 1e-9))
    want = allowed[np.lexsort((ids[allowed], -expected[allowed]))][:depth]
    got = result.top
    assert len(got) == len(want)
    # Same scores rank by rank; the same documents except where float rounding reorders an exact tie.
    np.testing.assert_allclose(expected[got], expected[want], rtol=1e-5, atol=1e-6)
    everything = np.arange(total)
    np.testing.assert_allclose(result.exact(everything[::-1])[::-1], expected, rtol=1e-5, atol=1e-6)


def test_common_terms_are_not_scanned_when_rare_ones_decide() -> None:
    """A query of one rare and many common terms scans far fewer postings than it holds, and stays exact."""
    rng = np.random.default_rng(3)
    docs = [
        ["common", "filler", f"w{int(rng.integers(0, 50))}"] + ["common"] * int(rng.integers(0, 3)) for _ in range(5000)
    ]
    for i in range(0, 5000, 500):
        docs[i].append("rare")
    fields = [Postings.build(docs)]
    alive = [np.ones(len(docs), dtype=bool)]
    mask = alive[0].copy()
    query = ["rare", "rare", "common", "filler"]
    result = bm25_top(
        fields,
        alive,
        [True],
        np.array([0, len(docs)]),
        tokens=query,
        n_alive=len(docs),
        length_sum=float(fields[0].lengths.sum()),
        k1=K1,
        b=B,
        depth=5,
        mask=mask,
        ids=np.arange(len(docs)),
    )
    expected = brute_force(docs, alive[0], query)
    assert set(result.top.tolist()) <= set(range(0, 5000, 500))
    np.testing.assert_allclose(expected[result.top], np.sort(expected)[::-1][:5], rtol=1e-5)
    assert result.postings_scanned < result.postings_total / 10


def test_exact_ties_go_to_the_lower_doc_id_both_ways() -> None:
    """Identical documents score identically: the list takes them by doc id (not by position), pruned or not."""
    docs = [["锂电池", "隔膜"]] * 30 + [["锂电池"]] * 30 + [["海参"]] * 5
    ids = np.random.default_rng(4).permutation(len(docs)).astype(np.int64) * 7
    fields = [Postings.build(docs[:40]), Postings.build(docs[40:])]
    alive = [np.ones(40, dtype=bool), np.ones(len(docs) - 40, dtype=bool)]
    mask = np.ones(len(docs), dtype=bool)
    mask[3] = False
    for prune in (False, True):
        result = bm25_top(
            fields,
            alive,
            [True, True],
            np.array([0, 40, len(docs)]),
            tokens=["锂电池", "隔膜"],
            n_alive=len(docs),
            length_sum=float(sum(f.lengths.sum() for f in fields)),
            k1=K1,
            b=B,
            depth=35,
            mask=mask,
            ids=ids,
            prune=prune,
        )
        pair = [p for p in range(30) if p != 3]  # the 29 allowed documents holding both terms rank first
        single = sorted(range(30, 60), key=lambda p: ids[p])  # then those holding one, by doc id
        assert result.top.tolist() == sorted(pair, key=lambda p: ids[p]) + single[:6], prune


@settings(max_examples=300, deadline=None)
@given(corpora(), st.sampled_from([0.02, 0.1, 0.3, 0.6]), st.integers(1, 3))
def test_common_terms_cut_scores_exactly_and_misses_only_what_common_terms_lift(
    case: tuple, common: float, pool: int
) -> None:
    """With `common`, every score is still full BM25 and the list is ordered by it; a document is missing from it
    only if the rarer terms alone did not put it among the pool × depth best (so only common terms could lift it)."""
    segments, alive, query, mask, depth, k1, b = case
    if not np.concatenate(alive).any():
        return
    ids = np.random.default_rng(1).permutation(sum(len(s) for s in segments)).astype(np.int64)
    with patch.object(
        maxscore, "SEEK_COST", 0
    ):  # these corpora are small: without this the cost rule would keep every list exact
        result, all_alive, total = _run(
            segments, alive, query, k1=k1, b=b, depth=depth, mask=mask, ids=ids, common=common, pool=pool
        )
    docs = [d for s in segments for d in s]
    full = brute_force(docs, all_alive, query, k1, b)
    np.testing.assert_allclose(result.exact(np.arange(total)[::-1])[::-1], full, rtol=1e-5, atol=1e-6)
    got = result.top
    allowed = np.flatnonzero(mask & (full > 1e-9))
    assert len(got) == min(depth, len(allowed))
    assert np.all(np.diff(full[got]) <= 1e-5 * np.abs(full[got][:-1]) + 1e-6)  # best first by full score
    live = [d for d, a in zip(docs, all_alive, strict=True) if a]
    rare = [t for t in set(query) if sum(t in d for d in live) <= common * len(live)]
    partial = brute_force(docs, all_alive, [t for t in query if t in rare], k1, b)
    chosen = np.flatnonzero(mask & (partial > 1e-9))
    if len(chosen) >= pool * depth:
        threshold = np.sort(partial[chosen])[::-1][pool * depth - 1]
        surely_in_pool = chosen[partial[chosen] > threshold * (1 + 1e-5) + 1e-6]
        worst = full[got].min()
        better = surely_in_pool[full[surely_in_pool] > worst * (1 + 1e-5) + 1e-6]
        assert set(better.tolist()) <= set(got.tolist())
    else:  # too few rare matches (or no term rare, or none common): the exact list
        want = allowed[np.lexsort((ids[allowed], -full[allowed]))][:depth]
        np.testing.assert_allclose(full[got], full[want], rtol=1e-5, atol=1e-6)


def test_common_terms_cut_skips_their_postings_and_can_miss_what_only_they_lift() -> None:
    """Common terms (in most documents) do not choose candidates: their postings are not scanned, the documents
    the rare term finds are ranked by full score, and a document that only common terms lift is missed: the price of
    the cut, which the exact list (common=None) does not pay."""
    rng = np.random.default_rng(5)
    common = [f"c{j}" for j in range(20)]  # each in ~30% of the documents: idf ~1.2
    docs = [[t for t in common if rng.random() < 0.3] + [f"w{int(rng.integers(0, 50))}"] for _ in range(4000)]
    for i in range(0, 4000, 40):
        docs[i] += ["rare"]  # 100 documents hold the rare term (idf ~3.7)
    docs[7] = common * 3  # no rare term, but every common one, three times over
    query = ["rare", *common]
    alive = [np.ones(len(docs), dtype=bool)]
    kw = {"k1": K1, "b": 0.0, "depth": 5, "mask": alive[0].copy(), "ids": np.arange(len(docs))}
    exact, _, _ = _run([docs], alive, query, **kw)
    cut, _, _ = _run([docs], alive, query, common=0.05, pool=4, **kw)
    full = brute_force(docs, alive[0], query, K1, 0.0)
    assert 7 in exact.top.tolist()  # the common terms alone lift it into the exact top 5
    assert 7 not in cut.top.tolist()
    assert set(cut.top.tolist()) <= set(range(0, 4000, 40))
    np.testing.assert_allclose(cut.exact(cut.top), full[cut.top], rtol=1e-5)
    np.testing.assert_allclose(cut.exact(np.array([7])), full[[7]], rtol=1e-5)  # its score, when asked, is exact
    assert cut.postings_scanned == 100 < cut.postings_total / 20
    # Fewer rare matches than pool × depth: the list is exact again.
    with patch.object(maxscore, "SEEK_COST", 0):
        few, _, _ = _run([docs], alive, query, common=0.05, pool=30, **kw)
    assert few.top.tolist() == exact.top.tolist()
    # Common postings too few to outweigh looking them up for a deeper pool: the exact list, which is cheaper.
    deep = kw | {"depth": 50}
    costly, _, _ = _run([docs], alive, query, common=0.05, pool=4, **deep)
    assert costly.top.tolist() == _run([docs], alive, query, **deep)[0].top.tolist()
    assert 7 in costly.top.tolist()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.sampled_from([3, 50, 100_000]),  # distinct score levels: heavy ties, some, hardly any
    st.sampled_from([0.0, 0.5, 0.97]),  # share of zero scores
    st.sampled_from([0.0, 0.3]),  # share of disallowed documents
)
def test_top_positive_by_sampling_equals_the_single_pass(
    seed: int, depth: int, levels: int, zeros: float, masked: float
) -> None:
    """The sampled shortcut (large arrays) returns exactly the single pass's list: same positions, same order, ties
    to the lower doc id, only allowed positive scores."""
    rng = np.random.default_rng(seed)
    n = 64 * depth + int(rng.integers(0, 5000))
    out = rng.integers(1, levels + 1, n) / levels * (rng.random(n) >= zeros)
    out[rng.random(n) < 0.01] *= 50  # a heavy tail
    mask = rng.random(n) >= masked
    ids = rng.permutation(n).astype(np.int64)
    got = maxscore.top_positive(out, mask, ids, depth)
    assert got.tolist() == maxscore._top_positive(out, mask, ids, depth).tolist()


def test_scores_are_exact_across_scatter_blocks() -> None:
    """A segment longer than the scatter's block of documents (and one shorter): every document's score is its
    BM25 score, every posting counted once, both ways (the kernels walk each term's postings block by block)."""
    rng = np.random.default_rng(9)
    n = 2 * maxscore._BLOCK + 1234
    vocab = [f"t{i}" for i in range(30)]
    probs = 1.0 / np.arange(1, 31)
    docs = [list(rng.choice(vocab, size=int(rng.integers(0, 12)), p=probs / probs.sum())) for _ in range(n)]
    segments = [docs[:-100], docs[-100:]]
    alive = [np.ones(len(s), dtype=bool) for s in segments]
    alive[0][::7] = False
    all_alive = np.concatenate(alive)
    # BM25 from the postings' definition, vectorised (the brute force above is too slow for 34k documents).
    live = [d for d, a in zip(docs, all_alive, strict=True) if a]
    avgdl = sum(len(d) for d in live) / len(live)
    query = ["t0", "t3", "t3", "t11", "t29", "zz"]
    expected = np.zeros(n)
    lengths = np.array([len(d) for d in docs], dtype=float)
    for term in dict.fromkeys(query):
        tf = np.array([d.count(term) for d in docs], dtype=float)
        df = int(((tf > 0) & all_alive).sum())
        if df:
            idf = math.log(1 + (len(live) - df + 0.5) / (df + 0.5))
            expected += query.count(term) * idf * tf / (tf + K1 * (1 - B + B * lengths / avgdl))
    ids = np.arange(n, dtype=np.int64)
    for prune in (False, True):
        result, _, total = _run(
            segments, alive, query, k1=K1, b=B, depth=25, mask=all_alive.copy(), ids=ids, prune=prune
        )
        np.testing.assert_allclose(result.exact(np.arange(total)), expected, rtol=1e-5, atol=1e-6)
        want = np.flatnonzero(all_alive & (expected > 0))
        want = want[np.lexsort((ids[want], -expected[want]))][:25]
        np.testing.assert_allclose(expected[result.top], expected[want], rtol=1e-5)
