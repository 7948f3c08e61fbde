"""Ingest throughput end to end (rows → DB → embeddings → index files), beside the model's embedding-only rate.

Real title+abstract documents (CSL papers, then patents) go through the same path as `techmatch ingest`: validation,
upsert into a fresh SQLite database, index sync (segmentation, BM25, embedding, FAISS, atomic save). Then the same
texts are embedded alone by the same model. Both in this one run, on this machine.

    .venv/bin/python -m benchmarks.ingest_throughput [--docs 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from app.runtime import build_runtime, load_embedder
from benchmarks._corpus import real_docs
from catalog.indexing import published_documents, sync_indexes
from core.settings import Settings, get_settings
from ingest.service import ingest_rows
from matching.index import passage_text
from models.db import session_scope
from models.tables import IngestKind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    docs = real_docs(args.docs)
    base = get_settings()
    embedder = load_embedder(base)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), cache_dir=base.cache_dir, embedding_model=base.embedding_model)
        runtime = build_runtime(settings, embedder=embedder)
        t0 = time.perf_counter()
        summary = ingest_rows(
            session_factory=runtime.session_factory,
            kind=IngestKind.achievements,
            rows=list(enumerate(docs, start=1)),
            source="bench",
            location="benchmark",
        )
        t_db = time.perf_counter() - t0
        with session_scope(runtime.session_factory) as session:
            report = sync_indexes(session=session, indexes=runtime.indexes, targets=("achievements",))
        t_all = time.perf_counter() - t0
        with session_scope(runtime.session_factory) as session:
            texts = [passage_text(d) for d in published_documents(session=session, target="achievements")]
        runtime.close()
    t1 = time.perf_counter()
    embedder.encode_passages(texts)
    t_embed = time.perf_counter() - t1
    n = summary.inserted
    print(f"documents: {n} real title+abstract ({sum(len(t) for t in texts) / max(len(texts), 1):.0f} chars avg)")
    print(f"DB upsert only:              {n / t_db:8.1f} docs/s ({t_db:.1f}s)")
    print(f"end to end (DB + index):     {n / t_all:8.1f} docs/s ({t_all:.1f}s; index {report['achievements']})")
    print(f"embedding only, same model:  {len(texts) / t_embed:8.1f} docs/s ({t_embed:.1f}s)")


if __name__ == "__main__":
    main()
