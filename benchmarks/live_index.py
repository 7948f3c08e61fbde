"""The live index at scale: single-write latency (write → searchable), query latency, reopen time, size, RSS.

For each size, the segment index (the served engine) is built on disk, then timed:
- one write: `apply()` of one new real document, its passage embedded by the real model inside the timed call,
  until a search finds it (what `POST /api/v1/achievements` → `searchable: true` costs the index), and the apply()
  part alone; the build's dirty pages are flushed first (`os.sync()`), so the timed writes' fsyncs do not queue
  behind gigabytes of bulk-build writeback that a running server would not have;
- queries: real CCF need texts, the query embedded by the real model inside each timed search, ordered by the fusion
  and by the learned re-ranker (over the same candidates), the query's three lists side by side (the default) and
  one after another (query_threads 1); BM25-only beside it,
  with every posting scored (the default) and with MaxScore pruning (slower as measured: not the default);
- reopen: `SegmentIndex.open` of the folder (what a restart or a reader's reload costs), its size on disk, RSS.
The baseline in the same run is the generation engine (HybridIndex), which rewrites every file on every write.

Texts are recombined from real corpora (a real title, its abstract and two sentences of other abstracts); passage
vectors of the bulk are real e5 vectors of the base documents plus small noise, re-normalised (embedding 100k
abstracts takes hours on 2 cores). Only the timed writes and queries use the model.

    .venv/bin/python -m benchmarks.live_index [--sizes 10000 100000] [--writes 40] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.runtime import load_embedder
from benchmarks._corpus import base_vectors, noised, real_docs, real_queries, recombined
from benchmarks.query_latency import percentile
from core.settings import get_settings
from matching.index import Document, HybridIndex, QueryAnalysis, engine_tuning, passage_text, tuning_from_settings
from matching.rerank import SHIPPED, LinearRanker
from matching.segment_index import SegmentIndex, _State
from matching.segments import Segment, merge_segments


class BulkThenReal:
    """Passages of the bulk corpus: their derived vectors; anything else (the timed writes, queries): the model."""

    def __init__(self, real: object, vectors: dict[str, np.ndarray]) -> None:
        self.real = real
        self.name = real.name  # type: ignore[attr-defined]
        self.dim = real.dim  # type: ignore[attr-defined]
        self.vectors = vectors

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.real.encode_queries(texts)  # type: ignore[attr-defined,no-any-return]

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        known = [self.vectors.get(t) for t in texts]
        if all(v is not None for v in known):
            return np.stack(known) if texts else np.zeros((0, self.dim), np.float32)  # type: ignore[arg-type]
        return self.real.encode_passages(texts)  # type: ignore[attr-defined,no-any-return]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _row(size: int, engine: str, what: str, lat: list[float]) -> str:
    return f"{size:>8} {engine:<12} {what:<26} {percentile(lat, 50):>8.1f} {percentile(lat, 95):>8.1f}"


def _time_writes(index: object, fresh: list[Document]) -> tuple[list[float], list[float]]:
    """Each write's ms from apply() until a search finds it, and the apply() part alone."""
    os.sync()  # the build's dirty pages (13.9 GB at 1M) are not the timed writes' fsyncs to wait for
    out, applied = [], []
    for doc in fresh:
        t0 = time.perf_counter()
        report = index.apply([doc], [], seq=doc.id)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        assert report.added == 1, "a timed write must add a document, not be an unchanged no-op"
        hits = index.search(doc.title, k=3)  # type: ignore[attr-defined]
        out.append((time.perf_counter() - t0) * 1000)
        applied.append((t1 - t0) * 1000)
        assert any(h.id == doc.id for h in hits), "a write must be searchable when apply returns"
    return out, applied


def interleaved(index: SegmentIndex, queries: list[str], variants: dict[str, dict]) -> dict[str, list[float]]:
    """Latency of each variant (index attributes set for it) on every query, the variants' order rotating from one
    query to the next, after one untimed pass of every variant: no variant is favoured by running first (cold
    mapped pages, first calls) or last (pages the others brought in)."""
    base = {attr: getattr(index, attr) for v in variants.values() for attr in v}
    out: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for timed in (False, True):
        for i, q in enumerate(queries):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                for attr, value in (base | variants[name]).items():
                    setattr(index, attr, value)
                t0 = time.perf_counter()
                index.search(q, k=10)
                if timed:
                    out[name].append((time.perf_counter() - t0) * 1000)
    for attr, value in base.items():
        setattr(index, attr, value)
    return out


def replicate(source: Path, folder: Path, copies: int, *, sigma: float, real: object, tuning: dict) -> float:
    """An index of copies × the source index's documents: each copy has its own ids and re-noised vectors.

    The source's live rows are folded into one segment (as merges leave a large index), then copied array by array
    (postings as they are, ids shifted, every stored row re-written with its new id, vectors plus fresh noise,
    re-normalised); each copy gets its HNSW graph as a merge would give it, and one commit names them all.
    Tokenising a million texts with jieba would take most of an hour on 2 cores; the copies keep the text
    statistics of the real corpus (df and N both scale, so idf is unchanged).
    """
    t0 = time.perf_counter()
    src = SegmentIndex.open(source, embedder=real, **tuning)  # type: ignore[arg-type]
    state = src._state
    index = SegmentIndex.open(folder, embedder=real, **(tuning | {"max_segments": 4 * copies}))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    stride = int(state.ids_all.max()) + 1
    segments, alive = [], []
    # One segment per copy, as merges leave a large index: the source's live rows folded into one (vectorised).
    whole = merge_segments("whole", list(zip(state.segments, state.alive, strict=True)), dim=index.local_dim)
    for c in range(copies):
        blobs = [replace(r, id=r.id + c * stride).to_json() for r in whole.rows()]
        vecs = noised(whole.vectors, rng, sigma) if c else np.asarray(whole.vectors)
        copy = Segment(
            name=index._new_name(),
            ids=np.asarray(whole.ids) + c * stride,
            hashes=np.asarray(whole.hashes),
            fields=whole.fields,
            vectors=vecs.astype(np.float32),
            blob=b"".join(blobs),
            row_offsets=np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64),
            attrs=whole.attrs,
        )
        copy = index._persisted(copy)
        index._build_graph(copy)  # as the merge that made it would
        segments.append(copy)
        alive.append(np.ones(len(copy), dtype=bool))
    new_state = _State(tuple(segments), tuple(alive))
    index._commit(new_state, seq=0)
    index.close()
    src.close()
    return time.perf_counter() - t0


def build_corpus(
    folder: Path,
    size: int,
    *,
    base: list[dict[str, str]],
    base_vecs: np.ndarray,
    real: object,
    tuning: dict,
    sigma: float,
    rng: np.random.Generator,
) -> tuple[list[Document], BulkThenReal, float]:
    """The benchmark corpus of `size` in `folder`: recombined real texts (tokenised by the index), their base
    documents' real vectors plus noise; synced and merged to the index's steady state, then closed.

    Returns the documents, the embedder that knows their vectors, and the seconds the build took.
    """
    docs, vectors = [], {}
    for doc_id, (i, title, body) in enumerate(recombined(base, size), start=1):
        doc = Document(id=doc_id, title=title, body=body, content_hash=str(doc_id))
        vectors[passage_text(doc)] = noised(base_vecs[i], rng, sigma)
        docs.append(doc)
    embedder = BulkThenReal(real, vectors)
    t0 = time.perf_counter()
    index = SegmentIndex.open(folder, embedder=embedder, **tuning)  # type: ignore[arg-type]
    index.sync(docs, seq=0)
    while index.merge():
        pass
    index.close()
    return docs, embedder, time.perf_counter() - t0


def build_copies(
    source: Path, folder: Path, copies: int, *, sigma: float, real: object, tuning: dict, settle: bool
) -> tuple[float, float]:
    """`copies` copies of the source index in `folder` (see replicate()); with `settle`, then merged by the index's
    own tiered policy until it plans no more merges (the layout that the default settings keep a large index in:
    with merge_factor 4, ten 100k copies become two of 400k and two of 100k).

    Returns the seconds the whole build took and the seconds of it spent merging.
    """
    t0 = time.perf_counter()
    replicate(source, folder, copies, sigma=sigma, real=real, tuning=tuning)
    t1 = time.perf_counter()
    if settle:
        index = SegmentIndex.open(folder, embedder=real, **(tuning | {"merge_in_background": False}))  # type: ignore[arg-type]
        while index.merge():
            pass
        index.close()
    return time.perf_counter() - t0, time.perf_counter() - t1


RESTART = """
import json, sys, time
t0 = time.perf_counter()
from app.runtime import load_embedder
from core.settings import get_settings
from matching.index import engine_tuning, tuning_from_settings
from matching.segment_index import SegmentIndex, _State
from matching.segments import Segment, merge_segments
settings = get_settings()
real = load_embedder(settings)
loaded = time.perf_counter()
tuning = tuning_from_settings(settings) | engine_tuning(settings) | json.loads(sys.argv[2])  # as served
index = SegmentIndex.open(sys.argv[1], embedder=real, **tuning)
index.search(sys.argv[3], k=10)
ready = time.perf_counter()
queries = json.loads(sys.argv[4])
for q in queries:
    index.search(q, k=10)
status = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(("Vm", "Rss"))}
# VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still reports the (large) benchmark process that forked us.
print(json.dumps({"model_s": loaded - t0, "ready_s": ready - t0, "open_s": ready - loaded,
                  "rss_mb": status["VmRSS"], "anon_mb": status["RssAnon"], "peak_mb": status["VmHWM"]}))
"""


def restart(folder: Path, queries: list[str], tuning: dict) -> dict:
    """A fresh process opening the index: seconds to the first answer (model load apart), steady and peak RSS."""
    out = subprocess.run(
        [sys.executable, "-c", RESTART, str(folder), json.dumps(tuning), queries[0], json.dumps(queries)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def dense_recall(index: SegmentIndex, queries: list[str], depth: int) -> float:
    """How much of the exact dense top-depth list the served dense list (HNSW where segments have graphs) finds."""
    state = index._state
    got = []
    for q in queries[:50]:
        vec = index.embed_queries([index.analyse(q)])[0]
        top, _ = index._dense(state, vec, depth, state.alive_all)
        scores = np.concatenate([np.asarray(s.vectors) @ vec for s in state.segments])
        scores[~state.alive_all] = -np.inf
        exact = set(np.argpartition(-scores, depth)[:depth].tolist())
        got.append(len(exact & set(top.tolist())) / depth)
    return float(np.mean(got))


def lexical_kept(index: SegmentIndex, analyses: list[QueryAnalysis], cutoff: float | None) -> dict[str, float]:
    """Per BM25 field, with common terms above `cutoff` cut (see matching/maxscore.py): the mean share of each
    exact top-depth list the cut list keeps ("words kept", "chars kept"), and the mean share of a query's postings
    it scanned ("words scanned", "chars scanned")."""
    state, served, depth = index._state, index.bm25_common, index.candidate_depth
    kept: dict[str, list[float]] = {"words": [], "chars": []}
    scanned: dict[str, list[float]] = {"words": [], "chars": []}
    for analysis in analyses:
        for field in kept:
            tokens = getattr(analysis, field)
            index.bm25_common = None
            exact = index._bm25(state, field, tokens, depth, state.alive_all)
            index.bm25_common = cutoff
            cut = index._bm25(state, field, tokens, depth, state.alive_all)
            if len(exact.top):
                kept[field].append(len(set(exact.top.tolist()) & set(cut.top.tolist())) / len(exact.top))
            if cut.postings_total:
                scanned[field].append(cut.postings_scanned / cut.postings_total)
    index.bm25_common = served
    return {f"{f} kept": float(np.mean(v)) for f, v in kept.items()} | {
        f"{f} scanned": float(np.mean(v)) for f, v in scanned.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--writes", type=int, default=40)
    ap.add_argument("--baseline-writes", type=int, default=5, help="generation engine (slow): writes at the first size")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--base", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=0.03)
    ap.add_argument(
        "--replicate-above",
        type=int,
        default=100_000,
        help="sizes above this are built as copies of the largest size at or below it (see replicate())",
    )
    ap.add_argument(
        "--no-settle",
        dest="settle",
        action="store_false",
        help="time replicated sizes as bare copies, merges held off (the layout measured before 2026-12-07), "
        "instead of merged by the index's policy first",
    )
    args = ap.parse_args()

    settings = get_settings()
    real = load_embedder(settings)
    base = real_docs(args.base + args.writes)
    writes_src, base = base[args.base :], base[: args.base]
    base_vecs = base_vectors(real, base)
    queries = real_queries(args.queries)
    rng = np.random.default_rng(11)
    # The served engine's BM25 knobs too (its common-terms cut above bm25_common_min_docs live docs).
    tuning = tuning_from_settings(settings) | {k: v for k, v in engine_tuning(settings).items() if k.startswith("bm25")}
    reranker = tuning.get("reranker") or LinearRanker.load(SHIPPED)
    print(f"model {real.name}; {len(base)} base docs; {len(queries)} real need queries; {args.writes} timed writes")
    header = f"{'docs':>8} {'engine':<12} {'what':<26} {'p50 ms':>8} {'p95 ms':>8}"
    rows: list[str] = []
    write_p95: dict[int, float] = {}
    built: dict[int, Path] = {}
    try:
        for n_i, size in enumerate(args.sizes):
            folder = Path(tempfile.mkdtemp(prefix=f"live-{size}-"))
            # New ids at every size: a larger index replicated from a smaller one already holds that size's timed
            # writes, and writing them again would be an unchanged no-op (as the 1M writes were until 2026-12-06).
            fresh = [
                Document(id=1_000_000_000 * (n_i + 1) + j, title=d["title"], body=d["abstract"], content_hash=f"w{j}")
                for j, d in enumerate(writes_src)
            ]
            sources = [s for s in built if s <= args.replicate_above and size % s == 0]
            size_tuning = dict(tuning)
            docs: list[Document] = []
            if size > args.replicate_above and sources:
                source = max(sources)
                copies = size // source
                build, merged_s = build_copies(
                    built[source], folder, copies, sigma=args.sigma, real=real, tuning=tuning, settle=args.settle
                )
                how = f"{copies} copies of the {source} index"
                if args.settle:
                    how += f", then merged by the index's own policy in {merged_s:.0f} s"
                else:
                    # The copies as they are: no merge of them starts while writes and queries are timed.
                    size_tuning |= {"max_segments": 4 * copies, "merge_factor": 4 * copies}
                embedder: object = real
            else:
                docs, embedder, build = build_corpus(
                    folder, size, base=base, base_vecs=base_vecs, real=real, tuning=tuning, sigma=args.sigma, rng=rng
                )
                how = "tokenised and merged"
            built[size] = folder
            index = SegmentIndex.open(folder, embedder=embedder, **size_tuning)  # type: ignore[arg-type]
            recall = dense_recall(index, queries, tuning["candidate_depth"])
            kept = lexical_kept(index, [index.analyse(q) for q in queries[:50]], index.bm25_common)
            lat, applied = _time_writes(index, fresh)
            write_p95[size] = percentile(lat, 95)
            rows.append(_row(size, "segments", "write → searchable", lat))
            rows.append(_row(size, "segments", "  of which apply()", applied))
            # The fusion and the learned re-ranker over the same candidates, and BM25 alone with and without pruning,
            # interleaved query by query (see interleaved()).
            variants: dict[str, dict] = {
                "query (hybrid, fusion)": {"reranker": None},
                "query (hybrid, re-ranked)": {"reranker": reranker},
                "query (re-ranked, lists in turn)": {"reranker": reranker, "query_threads": 1},
                "query (re-ranked, exact BM25)": {"reranker": reranker, "bm25_common": None},
                "query (BM25 only)": {"embedder": None, "bm25_pruning": False},
                "query (BM25 only, exact)": {"embedder": None, "bm25_pruning": False, "bm25_common": None},
                "query (BM25, MaxScore)": {"embedder": None, "bm25_pruning": True},
            }
            for what, lat in interleaved(index, queries, variants).items():
                rows.append(_row(size, "segments", what, lat))
            segments, graphs = index.segment_count, len(index._graphs)
            index.close()
            del index
            r = restart(
                folder, queries[:20], {k: v for k, v in size_tuning.items() if k in ("max_segments", "merge_factor")}
            )
            rows.append(
                f"{size:>8} {'segments':<12} built in {build:.0f} s ({how}); {segments} segments, {graphs} with "
                f"HNSW; dense recall@{tuning['candidate_depth']} {recall:.3f}; served BM25 lists keep "
                f"{kept['words kept']:.3f} (words) / {kept['chars kept']:.3f} (bigrams) of the exact ones; "
                f"{_size_mb(folder):.0f} MB on disk; "
                f"fresh process: open → first answer {r['open_s']:.2f} s (+ model {r['model_s']:.1f} s), "
                f"RSS after 20 queries {r['rss_mb']:.0f} MB (anonymous {r['anon_mb']:.0f} MB, the rest mapped index "
                f"file pages), peak {r['peak_mb']:.0f} MB"
            )
            if n_i == 0 and args.baseline_writes and docs:
                gen_folder = Path(tempfile.mkdtemp(prefix=f"gen-{size}-"))
                try:
                    gen = HybridIndex.open(
                        gen_folder,
                        embedder=embedder,  # type: ignore[arg-type]
                        **{k: v for k, v in tuning.items() if not k.startswith(("max_segments", "bm25"))},
                    )
                    gen.sync(docs)
                    lat, _ = _time_writes(gen, fresh[: args.baseline_writes])
                    rows.append(_row(size, "generations", "write → searchable", lat))
                    del gen
                finally:
                    shutil.rmtree(gen_folder, ignore_errors=True)
            print(header)
            print("\n".join(rows), flush=True)
            rows.clear()
    finally:
        for folder in built.values():
            shutil.rmtree(folder, ignore_errors=True)
    if len(write_p95) > 1:
        sizes = sorted(write_p95)
        print(f"write p95 ratio {sizes[-1]}/{sizes[0]}: {write_p95[sizes[-1]] / write_p95[sizes[0]]:.2f}")


if __name__ == "__main__":
    main()
