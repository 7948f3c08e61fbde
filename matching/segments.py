"""Immutable index segments (the Lucene design): per-field postings, vectors and stored rows, built once, then read.

A segment is written once, as one file, and never changed: a write adds a small segment, a delete marks rows dead
in the commit (a bitset per segment), and merges replace several segments by one. The file is a JSON header followed
by raw, 64-byte-aligned arrays, so opening a segment is an mmap, not a parse: restart costs what the header says, not
what the corpus holds.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from matching.quantised import Codes, quantise

FIELDS = ("words", "chars")
_MAGIC = b"TMSEG001"
_CODES_LOCK = threading.Lock()  # concurrent first queries on an older segment would each quantise it
_ALIGN = 64
# Terms are stored in fixed-width numpy unicode arrays (binary-searchable, mmap-able); a longer token (a long Latin
# string, a number) is cut to this many characters on both the document and the query side.
MAX_TERM = 32


def clip_terms(tokens: Sequence[str]) -> list[str]:
    """Tokens as the postings store them (cut to MAX_TERM characters, empty ones dropped)."""
    return [t[:MAX_TERM] for t in tokens if t]


@dataclass(frozen=True)
class Row:
    """What a segment stores of one document besides its postings and vector (for reasons and re-merges)."""

    id: int
    content_hash: str
    text: str
    keywords: tuple[str, ...]
    attrs: dict[str, str | None]
    words: list[str]
    chars: list[str]

    def to_json(self) -> bytes:
        """One stored row."""
        return json.dumps(
            {
                "id": self.id,
                "hash": self.content_hash,
                "text": self.text,
                "keywords": list(self.keywords),
                "attrs": self.attrs,
                "words": self.words,
                "chars": self.chars,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")

    @classmethod
    def from_json(cls, blob: bytes) -> Row:
        """Read one stored row."""
        d = json.loads(blob)
        return cls(d["id"], d["hash"], d["text"], tuple(d["keywords"]), d["attrs"], d["words"], d["chars"])


@dataclass
class Postings:
    """One token field of one segment, CSR by term: the documents holding each term and how often."""

    vocab: np.ndarray  # sorted terms, dtype <U{MAX_TERM}
    offsets: np.ndarray  # int64[len(vocab) + 1]
    docs: np.ndarray  # int32 local row numbers, grouped by term, ascending within a term
    tfs: np.ndarray  # term frequencies aligned with docs: uint8 where they fit (see _compact), float32 in older files
    lengths: np.ndarray  # float32[n]: tokens per document (BM25's document length)

    @classmethod
    def build(cls, token_lists: Sequence[Sequence[str]]) -> Postings:
        """Postings of these documents (row i is local document i)."""
        n = len(token_lists)
        lengths = np.array([len(t) for t in token_lists], dtype=np.float32)
        ids: dict[str, int] = {}
        flat = np.fromiter(
            (ids.setdefault(t, len(ids)) for tokens in token_lists for t in tokens), dtype=np.int64, count=-1
        )
        if len(flat) == 0:
            empty = np.zeros(0, dtype=f"<U{MAX_TERM}")
            return cls(empty, np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint8), lengths)
        # Renumber terms in sorted order, so the vocabulary is binary-searchable.
        vocab = np.array(list(ids), dtype=f"<U{MAX_TERM}")
        order = np.argsort(vocab, kind="stable")
        rank = np.empty(len(vocab), dtype=np.int64)
        rank[order] = np.arange(len(vocab))
        doc_of = np.repeat(np.arange(n, dtype=np.int64), lengths.astype(np.int64))
        return cls._from_pairs(vocab[order], rank[flat], doc_of, np.ones(len(flat), np.float32), n, lengths)

    @classmethod
    def _from_pairs(
        cls, vocab: np.ndarray, term: np.ndarray, doc: np.ndarray, tf: np.ndarray, n: int, lengths: np.ndarray
    ) -> Postings:
        """CSR from (term, doc, tf) triples; repeated (term, doc) pairs add up."""
        key = term * max(n, 1) + doc
        pairs, inverse = np.unique(key, return_inverse=True)
        tfs = _compact(np.bincount(inverse, weights=tf, minlength=len(pairs)))
        term_ids = pairs // max(n, 1)
        present = np.unique(term_ids)
        if len(present) < len(vocab):  # a merge drops terms only dead documents held
            vocab, term_ids = vocab[present], np.searchsorted(present, term_ids)
        offsets = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(vocab)), out=offsets[1:])
        return cls(vocab, offsets, (pairs % max(n, 1)).astype(np.int32), tfs, lengths)

    @classmethod
    def merge(cls, parts: Sequence[tuple[Postings, np.ndarray]]) -> Postings:
        """Postings of the live documents of several segments, renumbered in order (no re-tokenising).

        Segment k's documents come after segment k-1's, so a term's merged list is its lists concatenated in part
        order, already sorted: two passes over the parts' postings (count the live ones per term, then copy them to
        their place) write the result directly, and the memory a merge needs is the result's own size (5 bytes a
        posting) plus the parts' mapped pages. Sorting (term, doc) pairs instead peaked at 19.0 GB for four
        100k-document segments (170M postings; 9.1 GB now), and the merge of ten that the tiered policy starts at 1M
        was killed for memory on a 24 GB machine (2026-12-07).
        """
        if not parts:
            return cls.build([])
        vocab = np.unique(np.concatenate([p.vocab for p, _ in parts]))
        counts = np.zeros(len(vocab), dtype=np.int64)
        where, top = [], 0.0
        for p, alive in parts:
            at = np.searchsorted(vocab, p.vocab).astype(np.int64)  # each of its terms' place in the merged vocab
            top = max(top, _count_live(counts, at, p.offsets, p.docs, p.tfs, np.asarray(alive, dtype=np.bool_)))
            where.append(at)
        present = counts > 0  # a merge drops terms only dead documents held
        renumber = np.cumsum(present) - 1
        offsets = np.zeros(int(present.sum()) + 1, dtype=np.int64)
        np.cumsum(counts[present], out=offsets[1:])
        docs = np.empty(int(offsets[-1]), dtype=np.int32)
        tfs = np.empty(int(offsets[-1]), dtype=_tf_type(top))
        cursor = offsets[:-1].copy()  # where each merged term's next posting goes
        base = 0
        for (p, alive), at in zip(parts, where, strict=True):
            alive = np.asarray(alive, dtype=np.bool_)
            new_local = (np.cumsum(alive) - 1).astype(np.int32)  # old local row → new local row (valid where alive)
            source = p.tfs if p.tfs.dtype == tfs.dtype else p.tfs.astype(tfs.dtype)
            _copy_live(docs, tfs, cursor, renumber[at], p.offsets, p.docs, source, alive, new_local, base)
            base += int(alive.sum())
        lengths = np.concatenate([p.lengths[np.asarray(alive, dtype=np.bool_)] for p, alive in parts])
        return cls(vocab[present], offsets, docs, tfs, lengths.astype(np.float32))

    def lookup(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(docs, tfs) of one term, or None when no document of this segment holds it."""
        if len(self.vocab) == 0:
            return None
        i = int(np.searchsorted(self.vocab, term))
        if i >= len(self.vocab) or self.vocab[i] != term:
            return None
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.docs[start:end], self.tfs[start:end]


@dataclass
class Segment:
    """An immutable set of documents: ids, content hashes, postings per field, vectors, stored rows, attributes."""

    name: str
    ids: np.ndarray  # int64[n]
    hashes: np.ndarray  # <U40[n]
    fields: dict[str, Postings]
    vectors: np.ndarray  # float32[n, dim]
    blob: Any  # the stored rows, concatenated JSON (bytes or an mmap)
    row_offsets: np.ndarray  # int64[n + 1] into blob
    attrs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (key, value) → local rows
    _file: Any = None  # the open mmap keeping the arrays alive
    # int8 copies of the vectors for the first pass of a scan (matching/quantised.py): stored in the file, or made on
    # first use for a segment written before they existed.
    _codes: Codes | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def codes(self) -> Codes:
        """The int8 copies of the vectors."""
        if self._codes is not None:
            return self._codes
        with _CODES_LOCK:
            if self._codes is None:
                self._codes = quantise(np.asarray(self.vectors))
            return self._codes

    def row(self, i: int) -> Row:
        """The stored row of local document i."""
        return Row.from_json(bytes(self.blob[int(self.row_offsets[i]) : int(self.row_offsets[i + 1])]))

    def rows(self) -> list[Row]:
        """Every stored row, in local order."""
        return [self.row(i) for i in range(len(self))]

    @classmethod
    def build(cls, name: str, rows: Sequence[Row], vectors: np.ndarray, *, dim: int) -> Segment:
        """A segment of these rows and their vectors (row i ↔ vectors[i])."""
        blobs = [r.to_json() for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        attrs: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(rows):
            for key, value in r.attrs.items():
                if value is not None:
                    attrs.setdefault((key, value), []).append(i)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(rows), dim)
        return cls(
            name=name,
            ids=np.array([r.id for r in rows], dtype=np.int64),
            hashes=np.array([r.content_hash for r in rows], dtype="<U40"),
            fields={
                "words": Postings.build([clip_terms(r.words) for r in rows]),
                "chars": Postings.build([clip_terms(r.chars) for r in rows]),
            },
            vectors=vectors,
            blob=b"".join(blobs),
            row_offsets=offsets,
            attrs={k: np.array(v, dtype=np.int64) for k, v in attrs.items()},
        )

    # --- the file ---------------------------------------------------------------------------------------------------

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "ids": self.ids,
            "hashes": self.hashes,
            "vectors": self.vectors,
            "row_offsets": self.row_offsets,
            "blob": self.blob if isinstance(self.blob, np.ndarray) else np.frombuffer(bytes(self.blob), dtype=np.uint8),
        }
        codes = self.codes()
        out["codes"], out["code_meta"] = codes.codes, codes.meta
        for name, p in self.fields.items():
            for part in ("vocab", "offsets", "docs", "tfs", "lengths"):
                out[f"{name}.{part}"] = getattr(p, part)
        return out

    def write(self, path: Path) -> None:
        """Write the segment as one file (fsynced), through a temp name so a reader never sees half of it."""
        arrays = self._arrays()
        attrs = [[k, v, rows.tolist()] for (k, v), rows in self.attrs.items()]
        layout: dict[str, Any] = {}
        position = 0
        for key, arr in arrays.items():
            position = _aligned(position)
            layout[key] = {"offset": position, "dtype": arr.dtype.str, "shape": list(arr.shape)}
            position += arr.nbytes
        header = json.dumps({"name": self.name, "arrays": layout, "attrs": attrs}, ensure_ascii=False).encode()
        start = _aligned(len(_MAGIC) + 8 + len(header))
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as handle:
            handle.write(_MAGIC + len(header).to_bytes(8, "little") + header)
            handle.write(b"\0" * (start - handle.tell()))
            for key, arr in arrays.items():
                handle.write(b"\0" * (start + layout[key]["offset"] - handle.tell()))
                handle.write(np.ascontiguousarray(arr).tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    @classmethod
    def open(cls, path: Path) -> Segment:
        """Map a segment file (read-only; arrays are views into the mapping)."""
        with path.open("rb") as handle:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if mapped[: len(_MAGIC)] != _MAGIC:
            raise ValueError(f"{path} is not a techmatch segment")
        size = int.from_bytes(mapped[len(_MAGIC) : len(_MAGIC) + 8], "little")
        header = json.loads(mapped[len(_MAGIC) + 8 : len(_MAGIC) + 8 + size])
        start = _aligned(len(_MAGIC) + 8 + size)
        arrays: dict[str, np.ndarray] = {}
        for key, spec in header["arrays"].items():
            dtype = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            arr = np.frombuffer(mapped, dtype=dtype, count=count, offset=start + spec["offset"])
            arrays[key] = arr.reshape(spec["shape"])
        fields = {
            name: Postings(*(arrays[f"{name}.{part}"] for part in ("vocab", "offsets", "docs", "tfs", "lengths")))
            for name in FIELDS
        }
        return cls(
            name=header["name"],
            ids=arrays["ids"],
            hashes=arrays["hashes"],
            fields=fields,
            vectors=arrays["vectors"],
            blob=arrays["blob"],
            row_offsets=arrays["row_offsets"],
            attrs={(k, v): np.array(rows, dtype=np.int64) for k, v, rows in header["attrs"]},
            _file=mapped,
            _codes=Codes(arrays["codes"], arrays["code_meta"]) if "code_meta" in arrays else None,
        )


def merge_segments(name: str, parts: Sequence[tuple[Segment, np.ndarray]], *, dim: int) -> Segment:
    """One segment holding the live documents of several (alive masks given), in order; nothing is re-embedded."""
    keep = [np.flatnonzero(alive) for _, alive in parts]
    # Stored rows: the live rows' bytes gathered into one array of the merged size (no per-row objects).
    spans = [(seg.row_offsets[rows], seg.row_offsets[rows + 1]) for (seg, _), rows in zip(parts, keep, strict=True)]
    sizes = np.concatenate([ends - starts for starts, ends in spans]) if spans else np.zeros(0, np.int64)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    blob = np.empty(int(offsets[-1]), dtype=np.uint8)
    first = 0
    for (seg, _), (starts, ends) in zip(parts, spans, strict=True):
        source = seg.blob if isinstance(seg.blob, np.ndarray) else np.frombuffer(seg.blob, dtype=np.uint8)
        _gather(blob, source, starts, ends, offsets[first : first + len(starts)])
        first += len(starts)
    attrs: dict[tuple[str, str], list[np.ndarray]] = {}
    base = 0
    for (seg, alive), rows in zip(parts, keep, strict=True):
        new_local = np.cumsum(alive) - 1
        for key, members in seg.attrs.items():
            members = members[alive[members]]
            if len(members):
                attrs.setdefault(key, []).append(new_local[members] + base)
        base += len(rows)
    vectors = [np.asarray(seg.vectors[rows], dtype=np.float32) for (seg, _), rows in zip(parts, keep, strict=True)]
    return Segment(
        name=name,
        ids=np.concatenate([seg.ids[rows] for (seg, _), rows in zip(parts, keep, strict=True)]).astype(np.int64),
        hashes=np.concatenate([seg.hashes[rows] for (seg, _), rows in zip(parts, keep, strict=True)]).astype("<U40"),
        fields={f: Postings.merge([(seg.fields[f], alive) for seg, alive in parts]) for f in FIELDS},
        vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32),
        blob=blob,
        row_offsets=offsets,
        attrs={k: np.concatenate(v) for k, v in attrs.items()},
    )


def _tf_type(top: float) -> type[np.generic]:
    """The narrowest term-frequency type that holds frequencies up to top exactly (as _compact chooses)."""
    for dtype in (np.uint8, np.uint16):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.float32


@numba.njit(cache=True, nogil=True)
def _count_live(counts, at, offsets, docs, tfs, alive):  # type: ignore[no-untyped-def]
    """Add each term's live postings to counts[at[term]]; the largest live term frequency."""
    top = 0.0
    for i in range(len(offsets) - 1):
        n = 0
        for j in range(offsets[i], offsets[i + 1]):
            if alive[docs[j]]:
                n += 1
                if tfs[j] > top:
                    top = float(tfs[j])
        counts[at[i]] += n
    return top


@numba.njit(cache=True, nogil=True)
def _copy_live(docs_out, tfs_out, cursor, at, offsets, docs, tfs, alive, new_local, base):  # type: ignore[no-untyped-def]
    """Append each term's live postings, renumbered, at its merged term's cursor."""
    for i in range(len(offsets) - 1):
        c = cursor[at[i]]
        for j in range(offsets[i], offsets[i + 1]):
            d = docs[j]
            if alive[d]:
                docs_out[c] = new_local[d] + base
                tfs_out[c] = tfs[j]
                c += 1
        cursor[at[i]] = c


@numba.njit(cache=True, nogil=True)
def _gather(out, source, starts, ends, at):  # type: ignore[no-untyped-def]
    """Copy source[starts[i]:ends[i]] to out[at[i]:] for every i (stored rows into a merged blob)."""
    for i in range(len(starts)):
        n = ends[i] - starts[i]
        out[at[i] : at[i] + n] = source[starts[i] : ends[i]]


def _compact(counts: np.ndarray) -> np.ndarray:
    """Term frequencies in the narrowest type that holds them exactly: one byte for nearly every corpus (the largest
    tf in the 100k benchmark corpus is 35), so a posting is 5 bytes instead of 8 to store, map and stream through
    BM25. The kernels read any of these types; segments written before keep their float32 frequencies."""
    top = float(counts.max()) if len(counts) else 0.0
    for dtype in (np.uint8, np.uint16):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts.astype(np.float32)


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def attrs_equal(a: Mapping[str, str | None], b: Mapping[str, str | None]) -> bool:
    """Attribute maps compare equal (both already stringified)."""
    return dict(a) == dict(b)
