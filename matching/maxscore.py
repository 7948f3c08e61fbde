"""BM25 top-k over segments by MaxScore (Turtle & Flood 1995): the exact top-k without scoring every posting.

A query term's BM25 part `w · tf / (tf + norm(dl))` never exceeds its weight `w` (repeat × idf): that is the term's
upper bound. Terms are scored best bound first, a batch at a time, by scattering their postings into a partial score
per document. Once the bounds of the terms left sum to less than `θ`, the depth-th best partial score among the
allowed documents, no document those terms alone could lift reaches the top `depth`: they become "non-essential",
and the common terms (long postings, small idf) are never scanned. They are looked up, by binary search in their
doc-sorted postings, only for the documents whose partial score plus the bounds left still reaches `θ` (pruned after
each term as `θ` rises), and for any other document whose exact score the caller asks for (fusion needs every list's
score of every candidate).

The inner loops are numba kernels (one pass per posting, no temporaries, the GIL released so concurrent queries use
both cores); the planning around them is numpy. The result is exact: the same top `depth` (ties by doc id) and the
same scores as scoring every posting, which tests/matching/test_maxscore.py checks against BM25 from its definition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba
import numpy as np

from matching.segments import MAX_TERM, Postings

# The common-terms cut (bm25_top's `common`) is taken only where the common terms' postings exceed this many times
# the look-ups it needs instead (galloping in their sorted postings, once per pooled document and term). Measured on
# the 100k benchmark index (2026-12-07, query by query against the exact list): at 10 the cut lists of bigrams came
# out 7% slower than the exact ones, at 20 the two are even (the cut is taken only where it pays); at 1M a median
# need's common bigrams hold about twice what the threshold asks at 20, so the cut is taken for most needs there.
SEEK_COST = 20

# Relative slack on bound comparisons: scores are float32 parts summed in float64 in different orders, so equal sums
# may differ in the last bits. The slack only ever keeps a document that exact arithmetic could drop.
_SLACK = 1e-5


@dataclass
class LexicalResult:
    """One field's BM25 list: its top positions (best first) and the exact score of any position on demand."""

    top: np.ndarray
    exact: Callable[[np.ndarray], np.ndarray]
    idf: dict[str, float]
    postings_scanned: int
    postings_total: int


def bm25_top(
    fields: Sequence[Postings],
    alive: Sequence[np.ndarray],
    full: Sequence[bool],
    bases: np.ndarray,
    *,
    tokens: Sequence[str],
    n_alive: int,
    length_sum: float,
    k1: float,
    b: float,
    depth: int,
    mask: np.ndarray,
    ids: np.ndarray,
    prune: bool = True,
    common: float | None = None,
    pool: int = 4,
) -> LexicalResult:
    """The depth best allowed positions (mask) by BM25 (Lucene idf over live docs, as bm25s computes it), exact.

    `prune=False` scores every posting (the same answer, slower): the baseline benchmarks compare against.

    `common` (a fraction of the live docs, None: off) trades exactness of the list for speed, as Elasticsearch's
    `cutoff_frequency` does: terms in more than that share of the live docs (on real needs, terms above 5% hold
    ~87% of a query's bigram postings and their idf is under 3) do not choose candidates. The rarer terms' partial
    scores pick the `pool × depth` best documents, the common terms are looked up for those alone, and the list is
    their depth best by full score. Every score returned is the full BM25 score (`exact` is exact for any position);
    only a document that the common terms alone would lift into the list can be missed. When no term is common,
    every term is, the rarer terms match fewer than `pool × depth` allowed documents, or the common terms' postings
    are too few to outweigh looking them up (SEEK_COST), the list is exact.

    `fields[k]`, `alive[k]`, `full[k]` describe segment k (its postings of this field, its alive rows, whether it
    has no dead rows); `bases[k]` is its first global position. Only positive scores are listed; ties go to the
    lower doc id (`ids` by position).
    """
    total = int(bases[-1])
    empty = LexicalResult(np.zeros(0, np.int64), lambda p: np.zeros(len(p), np.float32), {}, 0, 0)
    counts: dict[str, int] = {}
    for t in tokens:
        if t:
            counts[t[:MAX_TERM]] = counts.get(t[:MAX_TERM], 0) + 1
    if n_alive == 0 or not counts:
        return empty
    names = np.array(list(counts), dtype=f"<U{MAX_TERM}")
    repeat = np.array(list(counts.values()), dtype=np.float32)

    # Where each query term's postings sit in each segment: (term, segment, start, end) rows.
    found_term, found_seg, found_start, found_end = [], [], [], []
    df = np.zeros(len(names), dtype=np.int64)
    for k, p in enumerate(fields):
        if len(p.vocab) == 0:
            continue
        idx = np.searchsorted(p.vocab, names)
        hit = idx < len(p.vocab)
        hit[hit] = p.vocab[idx[hit]] == names[hit]
        which = np.flatnonzero(hit)
        if len(which) == 0:
            continue
        starts, ends = p.offsets[idx[which]], p.offsets[idx[which] + 1]
        df[which] += ends - starts
        if not full[k]:
            df[which] -= _dead_in(p.docs, starts, ends, np.flatnonzero(~alive[k]).astype(np.int32))
        found_term.append(which)
        found_seg.append(np.full(len(which), k))
        found_start.append(starts)
        found_end.append(ends)
    if not found_term:
        return empty
    idf = np.log(1.0 + (n_alive - df + 0.5) / (df + 0.5)).astype(np.float32)
    idf_of = {str(t): float(v) for t, v, d in zip(names.tolist(), idf.tolist(), df.tolist(), strict=True) if d}
    weight = repeat * idf
    term = np.concatenate(found_term)
    seg = np.concatenate(found_seg)
    start = np.concatenate(found_start)
    end = np.concatenate(found_end)
    keep = df[term] > 0  # a term only dead rows hold scores nothing
    term, seg, start, end = term[keep], seg[keep], start[keep], end[keep]
    if len(term) == 0:
        return empty

    if common is not None:
        cut_list = _common_cut(
            fields,
            bases,
            term,
            seg,
            start,
            end,
            weight=weight,
            rare=df <= common * n_alive,
            total=total,
            mask=mask,
            ids=ids,
            depth=depth,
            pool=pool,
            params=(np.float32(k1), np.float32(b), np.float32(length_sum / n_alive)),
        )
        if cut_list is not None:
            return LexicalResult(cut_list[0], cut_list[1], idf_of, cut_list[2], int((end - start).sum()))

    # Terms best bound first (ties: shorter postings first); rank[t] is term t's place in that order.
    live_terms = np.unique(term)
    length = np.bincount(term, weights=end - start, minlength=len(names))
    ordered = live_terms[np.lexsort((length[live_terms], -weight[live_terms]))]
    rank = np.empty(len(names), dtype=np.int64)
    rank[ordered] = np.arange(len(ordered))
    bounds = weight[ordered].astype(np.float64)
    left = np.concatenate([np.cumsum(bounds[::-1])[::-1], [0.0]])  # left[i]: bounds of the terms ranked i and after
    done = np.concatenate([[0.0], np.cumsum(bounds)])  # done[i]: bounds of the terms ranked before i
    scanned_by_rank = np.concatenate([[0], np.cumsum(length[ordered])]).astype(np.int64)
    by_rank = np.argsort(rank[term], kind="stable")  # the (term, segment) rows in rank order
    term, seg, start, end = term[by_rank], seg[by_rank], start[by_rank], end[by_rank]
    row_rank = rank[term]
    avgdl = np.float32(length_sum / n_alive)
    k1_, b_ = np.float32(k1), np.float32(b)

    per_segment = {}  # segment → its (rank, start, end, weight) rows, in rank order
    for k in np.unique(seg).tolist():
        sel = seg == k
        per_segment[k] = (row_rank[sel], start[sel], end[sel], weight[term[sel]].astype(np.float32))

    def rows_of(lo_rank: int, hi_rank: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start, end, weight, rank) of the terms ranked lo_rank ≤ r < hi_rank in segment k, in rank order."""
        ranks, s, e, w = per_segment[k]
        lo, hi = np.searchsorted(ranks, [lo_rank, hi_rank])
        return s[lo:hi], e[lo:hi], w[lo:hi], ranks[lo:hi]

    # Essential terms: scatter, best bound first, in batches, until the bounds left fall below θ. θ never exceeds
    # the bounds scattered so far, so the first check waits until the bounds left fall below those; later batches
    # at least double the postings scanned, or reach where the θ already known would stop.
    out = np.zeros(total, dtype=np.float64)
    n_terms = len(ordered)
    reachable = left[:n_terms] < done[:n_terms]
    first = int(np.argmax(reachable)) if prune and reachable.any() else n_terms
    theta, cut = 0.0, 0
    while cut < n_terms:
        if theta > 0 and left[cut] * (1 + _SLACK) < theta:
            break
        until = max(cut + 1, first, int(np.searchsorted(scanned_by_rank, 2 * scanned_by_rank[cut], "right")) - 1)
        if theta > 0:
            until = max(until, int(np.argmax(left * (1 + _SLACK) < theta)))
        until = min(until, n_terms)
        for k in per_segment:
            s, e, w, _ = rows_of(cut, until, k)
            if len(s):
                p = fields[k]
                _scatter(out, int(bases[k]), p.docs, p.tfs, p.lengths, s, e, w, k1_, b_, avgdl)
        cut = until
        if cut < n_terms:
            theta = _kth(out, mask, depth)
    scanned = int(scanned_by_rank[cut])

    def lookup(positions: np.ndarray, from_rank: int, into: np.ndarray) -> None:
        """Add the parts of the terms ranked from_rank and after to the scores of these sorted positions."""
        segment_of = np.searchsorted(bases, positions, side="right") - 1
        for k in np.unique(segment_of).tolist():
            lo, hi = np.searchsorted(segment_of, [k, k + 1])
            s, e, w, _ = rows_of(from_rank, n_terms, k) if k in per_segment else (np.zeros(0),) * 4
            if len(s):
                p = fields[k]
                local = (positions[lo:hi] - int(bases[k])).astype(np.int32)
                into[lo:hi] += _lookup(local, p.docs, p.tfs, p.lengths, s, e, w, k1_, b_, avgdl)

    if cut >= n_terms:
        top = top_positive(out, mask, ids, depth)
        return LexicalResult(top, lambda q: out[q].astype(np.float32), idf_of, scanned, int(scanned_by_rank[-1]))

    # θ rises first: the depth best partial scores' documents are scored exactly (a few lookups each), and the
    # depth-th best of those exact scores is a score that depth documents reach.
    allowed = np.flatnonzero(mask & (out > 0))
    if len(allowed) >= depth:
        leaders = np.sort(allowed[np.argpartition(out[allowed], len(allowed) - depth)[len(allowed) - depth :]])
        exact_leaders = out[leaders].copy()
        lookup(leaders, cut, exact_leaders)
        theta = max(theta, float(exact_leaders.min()))
    # Candidates: allowed documents whose partial score plus the bounds left can still reach θ. Each segment's
    # candidates take the non-essential terms one at a time (best bound first), dropping out as soon as their
    # partial score plus the bounds left falls below θ.
    cands = allowed[out[allowed] + left[cut] * (1 + _SLACK) >= theta * (1 - _SLACK)]
    part = out[cands]
    still = np.ones(len(cands), dtype=np.bool_)
    segment_of = np.searchsorted(bases, cands, side="right") - 1
    for k in np.unique(segment_of).tolist():
        if k not in per_segment:
            continue
        s, e, w, ranks = rows_of(cut, n_terms, k)
        lo, hi = np.searchsorted(segment_of, [k, k + 1])
        p = fields[k]
        local = (cands[lo:hi] - int(bases[k])).astype(np.int32)
        after = left[ranks + 1] * (1 + _SLACK)
        _refine(
            local,
            part[lo:hi],
            still[lo:hi],
            p.docs,
            p.tfs,
            p.lengths,
            s,
            e,
            w,
            after,
            theta * (1 - _SLACK),
            k1_,
            b_,
            avgdl,
        )
    # A candidate that dropped out may have missed a term whose segment lacks later ones: it is out either way.
    positive = still & (part > 0)
    top = _best(cands[positive], part[positive], depth, ids, scores_given=True)

    def exact(positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        wanted = positions[order]
        score = out[wanted].copy()
        lookup(wanted, cut, score)
        result = np.empty(len(positions), dtype=np.float32)
        result[order] = score
        return result

    return LexicalResult(top, exact, idf_of, scanned, int(scanned_by_rank[-1]))


def _common_cut(
    fields: Sequence[Postings],
    bases: np.ndarray,
    term: np.ndarray,
    seg: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    *,
    weight: np.ndarray,
    rare: np.ndarray,
    total: int,
    mask: np.ndarray,
    ids: np.ndarray,
    depth: int,
    pool: int,
    params: tuple[np.float32, np.float32, np.float32],
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], int] | None:
    """bm25_top's list with common terms left out of choosing it (see `common` there): (top, exact, postings
    scanned), or None where the exact list is wanted (no term common, every term common, the cut would not pay,
    too few rare matches)."""
    is_rare = rare[term]
    if is_rare.all() or not is_rare.any():
        return None
    # Worth it only where the common terms' postings outweigh looking them up for the pool (twice: the pool, then
    # the caller's candidates; see SEEK_COST). Below a few hundred thousand documents the exact list is cheaper.
    common_postings = int((end[~is_rare] - start[~is_rare]).sum())
    common_terms = len(np.unique(term[~is_rare]))
    if common_postings < SEEK_COST * common_terms * 2 * pool * depth:
        return None
    k1, b, avgdl = params
    w = weight.astype(np.float32)
    out = np.zeros(total, dtype=np.float64)
    segments = np.unique(seg).tolist()
    for k in segments:
        sel = (seg == k) & is_rare
        if sel.any():
            p = fields[k]
            _scatter(out, int(bases[k]), p.docs, p.tfs, p.lengths, start[sel], end[sel], w[term[sel]], k1, b, avgdl)
    chosen = np.sort(top_positive(out, mask, ids, pool * depth))  # the pool, in position order
    if len(chosen) < pool * depth:
        return None  # the rare terms match few documents: ones only common terms match may belong in the list

    def exact(positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        wanted = positions[order]
        score = out[wanted].copy()
        segment_of = np.searchsorted(bases, wanted, side="right") - 1
        for k in np.unique(segment_of).tolist():
            sel = (seg == k) & ~is_rare
            if not sel.any():
                continue
            lo, hi = np.searchsorted(segment_of, [k, k + 1])
            p = fields[k]
            local = (wanted[lo:hi] - int(bases[k])).astype(np.int32)
            score[lo:hi] += _lookup(local, p.docs, p.tfs, p.lengths, start[sel], end[sel], w[term[sel]], k1, b, avgdl)
        result = np.empty(len(positions), dtype=np.float32)
        result[order] = score
        return result

    full = exact(chosen)
    top = _best(chosen, full, depth, ids, scores_given=True)
    return top, exact, int((end[is_rare] - start[is_rare]).sum())


# Documents per block of _scatter: their float64 scores and float32 lengths (192 KB) stay in the core's cache.
_BLOCK = 16384


@numba.njit(cache=True, nogil=True)
def _scatter(out, base, docs, tfs, lengths, starts, ends, weights, k1, b, avgdl):  # type: ignore[no-untyped-def]
    """Add each term's BM25 part to every document of its postings (out is float64 and global, by position).

    A block of documents at a time, every term's postings in that block (each term's list is sorted by document,
    so a cursor per term carries on where the last block stopped): the scores being summed stay in cache instead
    of being spread over the whole segment's (8 MB at 1M), which made the rarer bigrams' scatter ~30% faster at
    1M (2026-12-07). Each document still receives its terms' parts in term order, so every sum is bit for bit the
    unblocked one."""
    one = np.float32(1.0)
    cursor = starts.copy()
    for lo in range(0, len(lengths), _BLOCK):
        hi = lo + _BLOCK
        for t in range(len(starts)):
            w = weights[t]
            j = cursor[t]
            end = ends[t]
            while j < end and docs[j] < hi:
                d = docs[j]
                tf = np.float32(tfs[j])
                out[base + d] += w * tf / (tf + k1 * (one - b + b * lengths[d] / avgdl))
                j += 1
            cursor[t] = j


@numba.njit(cache=True, nogil=True)
def _lookup(local, docs, tfs, lengths, starts, ends, weights, k1, b, avgdl):  # type: ignore[no-untyped-def]
    """The summed parts of these terms for each of these sorted local rows: one merge walk per term, galloping."""
    out = np.zeros(len(local), dtype=np.float64)
    one = np.float32(1.0)
    for t in range(len(starts)):
        w = weights[t]
        j, end = starts[t], ends[t]
        for i in range(len(local)):
            d = local[i]
            j = _seek(docs, j, end, d)
            if j >= end:
                break
            if docs[j] == d:
                tf = np.float32(tfs[j])
                out[i] += w * tf / (tf + k1 * (one - b + b * lengths[d] / avgdl))
    return out


@numba.njit(cache=True, nogil=True)
def _seek(docs, j, end, d):  # type: ignore[no-untyped-def]
    """The first index in docs[j:end] (sorted) holding a value ≥ d, or end: gallop, then binary search."""
    if j >= end or docs[j] >= d:
        return j
    step = 1
    while j + step < end and docs[j + step] < d:
        j += step
        step *= 2
    lo, hi = j + 1, min(j + step, end)
    while lo < hi:
        mid = (lo + hi) // 2
        if docs[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _refine(local, part, still, docs, tfs, lengths, starts, ends, weights, after, theta, k1, b, avgdl):  # type: ignore[no-untyped-def]
    """Add each term's part to the candidates still in the running; one drops out once part + after[t] < θ.

    The running candidates are kept as a compact list, so a term costs O(candidates left), not O(candidates).
    """
    one = np.float32(1.0)
    running = np.arange(len(local))
    n = len(running)
    for t in range(len(starts)):
        w = weights[t]
        j, end = starts[t], ends[t]
        kept = 0
        for r in range(n):
            i = running[r]
            d = local[i]
            j = _seek(docs, j, end, d)
            if j < end and docs[j] == d:
                tf = np.float32(tfs[j])
                part[i] += w * tf / (tf + k1 * (one - b + b * lengths[d] / avgdl))
            if part[i] + after[t] < theta:
                still[i] = False
            else:
                running[kept] = i
                kept += 1
        n = kept
        if n == 0:
            break


@numba.njit(cache=True, nogil=True)
def _top_positive(out, mask, ids, depth):  # type: ignore[no-untyped-def]
    """The depth best allowed positions with a positive score, best first, ties to the lower doc id."""
    best = _best_positive(out, mask, ids, depth)
    size = len(best)
    # Best first: insertion sort is enough for a few hundred entries and keeps the (score, id) order exact.
    for i in range(1, size):
        p = best[i]
        j = i - 1
        while j >= 0 and _better(out, ids, p, best[j]):
            best[j + 1] = best[j]
            j -= 1
        best[j + 1] = p
    return best


@numba.njit(cache=True, nogil=True)
def _best_positive(out, mask, ids, depth):  # type: ignore[no-untyped-def]
    """The depth best allowed positions with a positive score, in no order (ties to the lower doc id).

    One pass keeping a heap of the best so far (its root the worst of them), instead of selecting among every
    scored document.
    """
    if depth <= 0:
        return np.zeros(0, np.int64)
    heap = np.empty(depth, np.int64)
    size = 0
    floor = 0.0  # the root's score once the heap is full: most documents fail this one comparison
    for p in range(len(out)):
        s = out[p]
        if s <= 0 or s < floor or not mask[p] or (s == floor and ids[p] > ids[heap[0]]):
            continue
        if size < depth:
            heap[size] = p
            size += 1
            if size == depth:
                for root in range(depth // 2 - 1, -1, -1):
                    _sift_worst(heap, root, depth, out, ids)
                floor = out[heap[0]]
        elif _better(out, ids, p, heap[0]):
            heap[0] = p
            _sift_worst(heap, 0, depth, out, ids)
            floor = out[heap[0]]
    return heap[:size].copy()


@numba.njit(cache=True, nogil=True, inline="always")
def _better(out, ids, a, b):  # type: ignore[no-untyped-def]
    """Position a ranks above position b: a higher score, or the same score and a lower doc id."""
    return out[a] > out[b] or (out[a] == out[b] and ids[a] < ids[b])


@numba.njit(cache=True, nogil=True)
def _sift_worst(heap, at, size, out, ids):  # type: ignore[no-untyped-def]
    """Restore the heap (each entry ranks above its parent) below position at."""
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and _better(out, ids, heap[child], heap[child + 1]):
            child += 1
        if _better(out, ids, heap[child], heap[at]):
            return
        heap[at], heap[child] = heap[child], heap[at]
        at = child


@numba.njit(cache=True, nogil=True)
def _dead_in(docs, starts, ends, dead):  # type: ignore[no-untyped-def]
    """How many of these (sorted) dead rows each term's postings hold."""
    out = np.zeros(len(starts), dtype=np.int64)
    for t in range(len(starts)):
        j, end = starts[t], ends[t]
        for d in dead:
            j = _seek(docs, j, end, d)
            if j >= end:
                break
            if docs[j] == d:
                out[t] += 1
    return out


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels, so a process's first query does not pay for it."""
    span = (np.array([0], dtype=np.int64), np.array([2], dtype=np.int64), np.ones(1, dtype=np.float32))
    f = np.float32(1.0)
    # Term frequencies come as uint8 (most segments), uint16 or float32 (older files), and mapped segments are
    # read-only: numba compiles each combination apart, so each is loaded here.
    for dtype in (np.uint8, np.uint16, np.float32):
        for writable in (True, False):
            docs = np.array([0, 1], dtype=np.int32)
            tfs = np.ones(2, dtype=dtype)
            lengths = np.ones(2, dtype=np.float32)
            for arr in (docs, tfs, lengths):
                arr.setflags(write=writable)
            _scatter(np.zeros(2), 0, docs, tfs, lengths, *span, f, f, f)
            local = np.array([0, 1], dtype=np.int32)  # computed per query: always writable
            _lookup(local, docs, tfs, lengths, *span, f, f, f)
            _refine(
                local, np.zeros(2), np.ones(2, dtype=np.bool_), docs, tfs, lengths, *span, np.zeros(1), 0.0, f, f, f
            )
            _dead_in(docs, span[0], span[1], local)
    _top_positive(np.ones(2), np.ones(2, dtype=np.bool_), np.zeros(2, dtype=np.int64), 1)
    _best_positive(np.ones(2), np.ones(2, dtype=np.bool_), np.zeros(2, dtype=np.int64), 1)


def top_positive(out: np.ndarray, mask: np.ndarray, ids: np.ndarray, depth: int) -> np.ndarray:
    """The depth best allowed positions with a positive score, best first, ties to the lower doc id.

    In a large index most documents score something, and one branchy pass over all of them (_top_positive) cost
    ~6 ms at 1M. A strided sample gives a score t that about 2 × depth documents beat; one vectorised comparison
    finds them, and if at least depth allowed ones beat t strictly, the depth best are among them (any other scores at
    most t). Otherwise, or in a small index, the single pass decides. Either way the same list."""
    n = len(out)
    if depth > 0 and n >= 64 * depth:
        sample = out[:: max(1, n // (32 * depth))]
        rank = min(len(sample), max(1, int(2 * depth * len(sample) / n)))
        t = max(float(np.partition(sample, len(sample) - rank)[len(sample) - rank]), 0.0)
        beat = np.flatnonzero(out > t)
        beat = beat[mask[beat]]
        if len(beat) >= depth:
            return _best(beat, out, depth, ids)
    return _top_positive(out, mask, ids, depth)  # type: ignore[no-any-return]


def _kth(out: np.ndarray, mask: np.ndarray, depth: int) -> float:
    """The depth-th best partial score among allowed documents (0 while fewer than depth have one)."""
    values = out[mask & (out > 0)]
    if len(values) < depth:
        return 0.0
    return float(np.partition(values, len(values) - depth)[len(values) - depth])


def _best(
    positions: np.ndarray, scores: np.ndarray, depth: int, ids: np.ndarray, *, scores_given: bool = False
) -> np.ndarray:
    """The depth best of these positions, best first, ties by doc id (scores by position unless given aligned)."""
    values = scores if scores_given else scores[positions]
    if len(positions) > depth:
        cut = np.partition(values, len(values) - depth)[len(values) - depth]
        keep = values >= cut
        positions, values = positions[keep], values[keep]
    return positions[np.lexsort((ids[positions], -values))][:depth]
