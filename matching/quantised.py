"""int8 copies of a segment's unit vectors: a first pass over a quarter of the bytes, then exact fp32 re-scoring.

An exact scan of a segment's fp32 vectors is bound by memory bandwidth (100k × 384 floats is 154 MB per query,
~7 ms on these 2 cores). Each vector also has an int8 copy with its own scale (v ≈ scale · codes, |codes| ≤ 127),
which one numba kernel scans in ~1.3 ms at 100k. The scan only shortlists: the best `depth + margin` rows by the
int8 score are re-scored with their fp32 vectors, and the list is cut from those exact scores, so every score that
leaves the index is the fp32 inner product. A row whose true score ranks within `depth` is missed only if the int8
error (at most ~0.002 on unit e5 vectors, against a list spread of ~0.05) pushes it below `depth + margin` rows;
`benchmarks/live_index.py` measures that recall against the full fp32 scan.
"""

from __future__ import annotations

import numba
import numpy as np


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes int8[n, dim], scales float32[n]) with vectors[i] ≈ scales[i] · codes[i]; a zero vector scales by 1."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors), dtype=np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(codes), scales


def shortlist(
    codes: np.ndarray, scales: np.ndarray, vectors: np.ndarray, q: np.ndarray, allowed: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The depth best allowed rows by exact inner product with q, shortlisted by the int8 scan.

    Returns (rows, exact fp32 scores), unordered; rows tied with the depth-th score are all kept.
    """
    q_codes, q_scales = quantise(q.reshape(1, -1))
    keep = depth + max(depth, 64)
    rows = _best_i8(codes, scales, q_codes[0], np.float32(q_scales[0]), allowed, keep)
    exact = np.asarray(vectors[rows] @ q, dtype=np.float32)
    if len(rows) > depth:
        cut = np.partition(exact, len(exact) - depth)[len(exact) - depth]
        best = exact >= cut  # rows tied with the depth-th stay: the caller breaks ties by doc id
        rows, exact = rows[best], exact[best]
    return rows, exact


@numba.njit(cache=True, nogil=True)
def _best_i8(codes, scales, q, q_scale, allowed, keep):  # type: ignore[no-untyped-def]
    """The (up to) keep allowed rows with the best int8 scores, unordered: one pass, a min-heap of the best so far.

    The GIL is released.
    """
    dots = _dot_i8(codes, q)
    heap_score = np.empty(keep, np.float32)
    heap_row = np.empty(keep, np.int64)
    size = 0
    for i in range(len(dots)):
        if not allowed[i]:
            continue
        score = np.float32(dots[i]) * scales[i] * q_scale
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
def _dot_i8(codes, q):  # type: ignore[no-untyped-def]
    """codes[i] · q for every row, in int32 (a loop of its own, so LLVM vectorises the widening multiply-add)."""
    n, d = codes.shape
    out = np.empty(n, np.int32)
    for i in range(n):
        acc = np.int32(0)
        for j in range(d):
            acc += np.int32(codes[i, j]) * np.int32(q[j])
        out[i] = acc
    return out


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
    """Load (or compile, the first time on a machine) the kernel, so a process's first query does not pay for it."""
    _best_i8(
        np.zeros((1, 2), dtype=np.int8),
        np.ones(1, dtype=np.float32),
        np.zeros(2, dtype=np.int8),
        np.float32(1.0),
        np.ones(1, dtype=np.bool_),
        1,
    )
