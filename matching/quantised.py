"""int8 copies of a segment's vectors: a first pass over a quarter of the bytes, then exact fp32 re-scoring.

An exact scan of a segment's fp32 vectors is bound by memory bandwidth (100k × 384 floats is 154 MB per query,
~7 ms on these 2 cores). Each vector also has an int8 copy with its own scale (v ≈ ṽ = scale · codes, |codes| ≤ 127),
which one numba kernel scans against the fp32 query in ~1.5 ms at 100k. The int8 scores only decide which rows fp32
re-scores, and the choice is provably safe: with a = v − ṽ what rounding left of a row,

    |v·q − ṽ·q| = |a·q| ≤ ‖a‖ · ‖q‖   (Cauchy–Schwarz),

and each row stores ‖a‖. The depth best rows by int8 score are scored exactly; the lowest of those exact scores is
a score that depth rows reach, so every row whose int8 score plus its bound reaches it is scored exactly too, and no
other row can be in the list. Every score that leaves is the fp32 inner product, and the list is the exact scan's
(rows tied with the depth-th score all kept). On e5 vectors the bound is ~0.006 against a typical error of ~0.001,
so a few hundred rows of a 32k segment are re-scored instead of all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

# Rounding of the sums themselves (the int8 scan and BLAS add in different orders, ~1e-6 on these magnitudes): the
# bound is widened by this much so that rounding can never drop a row.
_SLACK = 1e-4
_CHUNK = 65_536  # rows quantised at a time: a merge of a million rows needs no million-row float temporaries


@dataclass(frozen=True)
class Codes:
    """int8 copies of n vectors and what the bound needs: vectors[i] ≈ scales[i] · codes[i]."""

    codes: np.ndarray  # int8[n, dim]
    meta: np.ndarray  # float32[2, n]: each row's scale, and the norm of what rounding left of it


def quantise(vectors: np.ndarray) -> Codes:
    """The int8 copy of each row (its largest component maps to ±127; a zero row scales by 1)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    codes = np.zeros((n, dim), dtype=np.int8)
    meta = np.zeros((2, n), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        part = vectors[lo : lo + _CHUNK]
        peak = np.abs(part).max(axis=1) if dim else np.zeros(len(part), dtype=np.float32)
        scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        rounded = np.clip(np.rint(part / scales[:, None]), -127, 127)
        codes[lo : lo + _CHUNK] = rounded
        meta[0, lo : lo + _CHUNK] = scales
        meta[1, lo : lo + _CHUNK] = np.linalg.norm(part - rounded * scales[:, None], axis=1)
    return Codes(codes, meta)


def shortlist(
    codes: Codes, vectors: np.ndarray, q: np.ndarray, allowed: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The depth best allowed rows by exact inner product with q (rows tied with the depth-th all kept), unordered,
    with their fp32 scores; the int8 copies decide which rows are worth scoring exactly (see the module docstring)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    approx = _scan(codes.codes, codes.meta[0], q)
    first = _best(approx, allowed, depth)
    if len(first) == 0:
        return first, np.zeros(0, dtype=np.float32)
    reached = float((np.asarray(vectors[first]) @ q).min())
    bound = codes.meta[1] * np.float32(np.linalg.norm(q)) + np.float32(_SLACK)
    rows = np.flatnonzero(allowed & (approx + bound >= reached))
    exact = np.asarray(np.asarray(vectors[rows]) @ q, dtype=np.float32)
    if len(rows) > depth:
        cut = np.partition(exact, len(exact) - depth)[len(exact) - depth]
        keep = exact >= cut  # rows tied with the depth-th stay: the caller breaks ties by doc id
        rows, exact = rows[keep], exact[keep]
    return rows, exact


@numba.njit(cache=True, nogil=True, fastmath=True)
def _scan(codes, scales, q):  # type: ignore[no-untyped-def]
    """ṽ·q for every row: int8 codes against the fp32 query, times the row's scale (fastmath lets LLVM vectorise the
    sum; its reordering is covered by _SLACK)."""
    n, d = codes.shape
    out = np.empty(n, np.float32)
    for i in range(n):
        acc = np.float32(0.0)
        for j in range(d):
            acc += np.float32(codes[i, j]) * q[j]
        out[i] = acc * scales[i]
    return out


@numba.njit(cache=True, nogil=True)
def _best(scores, allowed, keep):  # type: ignore[no-untyped-def]
    """The (up to) keep allowed rows with the highest scores, unordered: one pass, a min-heap of the best so far."""
    heap_score = np.empty(keep, np.float32)
    heap_row = np.empty(keep, np.int64)
    size = 0
    for i in range(len(scores)):
        if not allowed[i]:
            continue
        score = scores[i]
        if size < keep:
            heap_score[size] = score
            heap_row[size] = i
            size += 1
            if size == keep:
                for root in range(keep // 2 - 1, -1, -1):
                    _sift_down(heap_score, heap_row, root, keep)
        elif score > heap_score[0]:
            heap_score[0] = score
            heap_row[0] = i
            _sift_down(heap_score, heap_row, 0, keep)
    return heap_row[:size].copy()


@numba.njit(cache=True, nogil=True)
def _sift_down(score, row, at, size):  # type: ignore[no-untyped-def]
    """Restore the min-heap below position at."""
    while True:
        child = 2 * at + 1
        if child >= size:
            return
        if child + 1 < size and score[child + 1] < score[child]:
            child += 1
        if score[child] >= score[at]:
            return
        score[at], score[child] = score[child], score[at]
        row[at], row[child] = row[child], row[at]
        at = child


def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels, so a process's first query does not pay for it.

    The scan for writable codes (a segment built in memory) and read-only ones (mapped from its file): numba compiles
    each separately.
    """
    codes, scales, q = np.zeros((1, 2), dtype=np.int8), np.ones(1, dtype=np.float32), np.zeros(2, dtype=np.float32)
    for writable in (True, False):
        codes.setflags(write=writable)
        scales.setflags(write=writable)
        _scan(codes, scales, q)
    _best(np.zeros(1, dtype=np.float32), np.ones(1, dtype=np.bool_), 1)
