"""Benchmarks A (CCF needs → achievements, dev half) and B (CSL keyword needs → papers), scored with ranx."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from matching.dense import CachingEmbedder
from matching.embedding import Embedder, OnnxEmbedder
from matching.fusion import Candidates, FusionConfig, fuse, order
from matching.index import Document, HybridIndex, QueryAnalysis

if TYPE_CHECKING:
    from matching.segment_index import SegmentIndex

A_FOLDER = "ccf-bdci2019-tech-match"
B_QUERY_PREFIX = "寻求以下方向的技术成果："
B_CATEGORIES = frozenset({"工学", "农学", "医学", "理学"})
B_COMMON_KEYWORD_PAPERS = 15
B_QUERIES = 200


@dataclass
class Benchmark:
    """A corpus, queries and graded judgments, with string ids as the data files spell them."""

    name: str
    docs: list[Document]
    doc_keys: dict[int, str]  # Document.id -> the benchmark's own id
    queries: dict[str, str]  # query id -> query text
    gains: dict[str, dict[str, int]]  # graded judgments (0 = judged not relevant)
    relevant: dict[str, dict[str, int]]  # binary relevance for Recall
    pools: dict[str, list[str]]  # the candidates a pool re-rank orders, per query
    notes: list[str] = field(default_factory=list)


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_benchmark_a(data_dir: Path) -> Benchmark:
    """Benchmark A on the dev half (qrels_dev.tsv only), as the shared data README defines it."""
    folder = data_dir / A_FOLDER
    docs: list[Document] = []
    doc_keys: dict[int, str] = {}
    with (folder / "achievement_title_tokens.tsv").open(encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=1):
            tokens = row["title_tokens"]
            title = "" if tokens == "N" else tokens.replace(" ", "")
            docs.append(_doc(number, title, ""))
            doc_keys[number] = row["aid"]
    gains: dict[str, dict[str, int]] = defaultdict(dict)
    with (folder / "qrels_dev.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            gains[row["rid"]][row["aid"]] = int(row["level"]) - 1
    needs = {r["rid"]: r for r in _jsonl(folder / "requirements.jsonl")}
    queries: dict[str, str] = {}
    for rid, judged in gains.items():
        if max(judged.values()) >= 2:  # at least one pair of level >= 3
            need = needs[rid]
            content = need.get("content") or ""
            queries[rid] = need["title"] + "。" + content.split("现有工作基础")[0]
    gains = {rid: g for rid, g in gains.items() if rid in queries}
    relevant = {rid: {aid: 1 for aid, g in g_.items() if g >= 2} for rid, g_ in gains.items()}
    pools = {rid: sorted(g) for rid, g in gains.items()}
    return Benchmark("A-dev", docs, doc_keys, queries, gains, relevant, pools)


def _norm_keyword(keyword: str) -> str:
    return re.sub(r"\s+", "", keyword).lower()


def load_benchmark_b(data_dir: Path) -> Benchmark:
    """Benchmark B (CSL keyword needs → papers), as the shared data README defines it."""
    csl = _jsonl(data_dir / "csl-benchmark-2k" / "csl_2k.jsonl")
    fewclue = data_dir / "fewclue-csldcp"
    sources: list[tuple[str, str, str]] = [(p["id"], p["title"], p["abstract"]) for p in csl]
    for name in ("csldcp_labeled.jsonl", "csldcp_unlabeled.jsonl", "csl_true_keywords.jsonl"):
        sources += [(r["id"], "", r["abstract"]) for r in _jsonl(fewclue / name)]
    patents = _jsonl(data_dir / "cn-patent-g06f-cpc" / "patents.jsonl")
    sources += [(p["publication_number"], p["title"], p["abstract"]) for p in patents]
    docs: list[Document] = []
    doc_keys: dict[int, str] = {}
    seen: set[str] = set()
    for key, title, abstract in sources:
        if abstract in seen:  # csl_2k comes first, so a duplicated abstract keeps the csl_2k id
            continue
        seen.add(abstract)
        number = len(docs) + 1
        docs.append(_doc(number, title, abstract))
        doc_keys[number] = key

    keywords = {p["id"]: {_norm_keyword(k) for k in p["keywords"]} - {""} for p in csl}
    papers_with: dict[str, set[str]] = defaultdict(set)
    for pid, kws in keywords.items():
        for kw in kws:
            papers_with[kw].add(pid)
    common = {kw for kw, pids in papers_with.items() if len(pids) >= B_COMMON_KEYWORD_PAPERS}
    keywords = {pid: kws - common for pid, kws in keywords.items()}
    by_id = {p["id"]: p for p in csl}

    def sharing(pid: str) -> set[str]:
        return {other for kw in keywords[pid] for other in papers_with[kw]} - {pid}

    eligible = [
        p["id"]
        for p in csl
        if p["category"] in B_CATEGORIES
        and sum(by_id[o]["discipline"] == p["discipline"] for o in sharing(p["id"])) >= 2
    ]
    chosen = sorted(eligible, key=lambda pid: hashlib.sha1(pid.encode()).hexdigest())[:B_QUERIES]
    queries = {pid: B_QUERY_PREFIX + "、".join(by_id[pid]["keywords"]) for pid in chosen}
    gains: dict[str, dict[str, int]] = {}
    for pid in chosen:
        g = {pid: 3}
        for other in sharing(pid):
            g[other] = 2 if by_id[other]["discipline"] == by_id[pid]["discipline"] else 1
        gains[pid] = g
    relevant = {pid: {d: 1 for d, v in g.items() if v >= 2} for pid, g in gains.items()}
    # Every csl_2k paper is judged by the rule (gain 0 included), so the pool is the csl_2k set.
    csl_ids = sorted(by_id)
    pools = {pid: csl_ids for pid in chosen}
    notes = [f"{len(eligible)} eligible queries, {len(chosen)} used; {len(docs)} documents after dedup"]
    return Benchmark("B", docs, doc_keys, queries, gains, relevant, pools, notes)


def _doc(number: int, title: str, body: str) -> Document:
    return Document(
        id=number, title=title, body=body, content_hash=hashlib.sha1(f"{title}\x00{body}".encode()).hexdigest()
    )


LOADERS: dict[str, Callable[[Path], Benchmark]] = {"A": load_benchmark_a, "B": load_benchmark_b}


def load_benchmarks(names: Sequence[str], data_dir: Path) -> list[Benchmark]:
    """Load the named benchmarks ("A", "B") from the shared data folder."""
    return [LOADERS[name](data_dir) for name in names]


# --- scoring ----------------------------------------------------------------------------------------------------------

METRICS = ("ndcg@10", "recall@50", "pool_ndcg@10")
MODES = ("hybrid", "bm25", "dense")
RUN_DEPTH = 100


def mode_config(mode: str, fusion: FusionConfig) -> FusionConfig:
    """The fusion a mode stands for: hybrid as given, bm25 = both lexical fields only, dense = embeddings only."""
    if mode == "hybrid":
        return fusion
    if mode == "bm25":
        return replace(fusion, weight_dense=0.0)
    if mode == "dense":
        return replace(fusion, weight_words=0.0, weight_chars=0.0, weight_dense=1.0)
    raise ValueError(f"unknown mode {mode!r}")


@dataclass
class Prepared:
    """One benchmark indexed, with every query's candidates (full corpus and pool) computed once."""

    bench: Benchmark
    index: HybridIndex | SegmentIndex
    full: dict[str, Candidates | None]
    pool: dict[str, Candidates | None]
    seconds: dict[str, float]


def prepare(
    bench: Benchmark,
    *,
    embedder: Embedder | None,
    tuning: Mapping[str, Any] | None = None,
    progress: bool = False,
    analyse: Callable[[HybridIndex, str], QueryAnalysis] | None = None,
    index: HybridIndex | SegmentIndex | None = None,
) -> Prepared:
    """Index a benchmark corpus in memory exactly as served, and gather each query's candidates.

    `analyse` replaces the served query analysis (experiments on how queries are shaped: benchmarks/query_shaping.py).
    `index`, an empty in-memory index, is filled instead of one built from `tuning` (experiments on the engine:
    benchmarks/graph_quality.py); one that merges segments is merged until its policy stops, so the candidates come
    from the layout a settled index has.
    """
    started = time.perf_counter()
    if index is None:
        index = HybridIndex.in_memory(embedder=embedder, **dict(tuning or {}))
    elif len(index):
        raise ValueError("prepare fills an empty index; this one already holds documents")
    index.sync(bench.docs, progress=progress)
    while getattr(index, "merge", lambda: False)():
        pass
    indexed = time.perf_counter()
    by_key = {key: doc_id for doc_id, key in bench.doc_keys.items()}
    analyses = {
        qid: analyse(index, text) if analyse else index.analyse(text)  # type: ignore[arg-type]
        for qid, text in bench.queries.items()
    }
    vectors = index.embed_queries(list(analyses.values()))
    full: dict[str, Candidates | None] = {}
    pool: dict[str, Candidates | None] = {}
    for (qid, analysis), vector in zip(analyses.items(), vectors, strict=True):
        full[qid] = index.candidates(analysis, k=RUN_DEPTH, query_vector=vector)
        within = [by_key[key] for key in bench.pools[qid] if key in by_key]
        pool[qid] = index.candidates(analysis, k=len(within) or 1, within=within, query_vector=vector)
    seconds = {"index": indexed - started, "queries": time.perf_counter() - indexed}
    return Prepared(bench, index, full, pool, seconds)


def _run(prep: Prepared, cands: dict[str, Candidates | None], config: FusionConfig, depth: int) -> dict:
    """A ranx-shaped run: query id -> {doc key: score}, scores strictly decreasing in our rank order."""
    run: dict[str, dict[str, float]] = {}
    for qid, c in cands.items():
        ranked: dict[str, float] = {}
        if c is not None and len(c):
            scores, _ = fuse(c, config)
            best = order(scores, c.positions)[:depth]
            for rank, j in enumerate(best):
                key = prep.bench.doc_keys[prep.index.doc_id(int(c.positions[j]))]
                ranked[key] = float(len(best) - rank)
        run[qid] = ranked
    return run


def score(prep: Prepared, config: FusionConfig) -> dict[str, float]:
    """nDCG@10 and Recall@50 over the full corpus and nDCG@10 of the pool re-rank, for one fusion config."""
    from ranx import Qrels, Run, evaluate

    def metric(qrels: dict, run: dict, name: str) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ranx/numba warn about empty runs and typed lists
            # Queries with no result still count (as 0): make_comparable adds them as empty runs.
            value = evaluate(Qrels(qrels), Run(run), name, make_comparable=True)
        return float(value)  # type: ignore[arg-type]

    full = _run(prep, prep.full, config, RUN_DEPTH)
    pool = _run(prep, prep.pool, config, max(len(p) for p in prep.bench.pools.values()))
    return {
        "ndcg@10": metric(prep.bench.gains, full, "ndcg@10"),
        "recall@50": metric(prep.bench.relevant, full, "recall@50"),
        "pool_ndcg@10": metric(prep.bench.gains, pool, "ndcg@10"),
    }


def run_eval(
    *,
    benchmarks: Sequence[str] = ("A", "B"),
    embedder: Embedder | None,
    data_dir: Path,
    cache_dir: Path | None = None,
    fusion: FusionConfig | None = None,
    tuning: Mapping[str, Any] | None = None,
    modes: Sequence[str] = MODES,
    progress: bool = False,
    reference: Embedder | Literal["auto"] | None = "auto",
    cross_validate: bool = False,
    cross_validate_reference: bool = False,
    served: str | None = None,
    thresholds: Any | None = None,
    **index_options: Any,
) -> dict[str, Any]:
    """Score hybrid, BM25-only and dense-only side by side on each benchmark; corpus vectors cached under cache_dir.

    ``reference``: a second embedder scored on the same benchmarks beside the first (under "reference" per
    benchmark); "auto" means the fp32 source of the int8 ONNX encoder when that is the embedder, else none.
    ``cross_validate_reference``: with ``cross_validate``, the reference gets the same cross-validated report (an
    adapted encoder against the base in one run, on the same folds).
    """
    # Extra keyword arguments (hnsw_m, candidate_depth, title_boost …) go to HybridIndex, as `tuning` does.
    tuning = {**dict(tuning or {}), **index_options}
    if embedder is None and any(m != "bm25" for m in modes):
        raise ValueError("modes other than 'bm25' need an embedder")
    if reference == "auto":
        # int8 is only the default while it ranks within 0.005 nDCG@10 of fp32: every eval shows both.
        inner = embedder.inner if isinstance(embedder, CachingEmbedder) else embedder
        reference = inner.fp32_reference() if isinstance(inner, OnnxEmbedder) else None
    if embedder is not None and cache_dir is not None and not isinstance(embedder, CachingEmbedder):
        embedder = CachingEmbedder(embedder, cache_dir=cache_dir)
    if reference is not None and cache_dir is not None and not isinstance(reference, CachingEmbedder):
        reference = CachingEmbedder(reference, cache_dir=cache_dir)  # its own folder: the name differs
    fusion = fusion or FusionConfig()
    results: dict[str, Any] = {
        "embedder": embedder.name if embedder is not None else None,
        "reference": reference.name if reference is not None else None,
        "fusion": fusion.__dict__,
        "benchmarks": {},
    }

    cv: dict[tuple[str, bool], Any] = {}

    def scored(bench: Benchmark, model: Embedder | None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        # One prepared benchmark at a time: its indexes are dropped before the next embedder's are built.
        prep = prepare(bench, embedder=model, tuning=tuning, progress=progress)
        seconds = {k: round(v, 1) for k, v in prep.seconds.items()}
        if cross_validate and (model is embedder or cross_validate_reference):
            # The same folds for both encoders (seeded by query id), so their figures compare query for query.
            from matching.crossval import cross_validated_report
            from matching.rerank import SHIPPED, LinearRanker

            shipped = LinearRanker.load(SHIPPED) if SHIPPED.exists() else None
            cv[(bench.name, model is embedder)] = cross_validated_report(
                prep, default=fusion, grid=fusion_grid(), shipped=shipped, served=served, thresholds=thresholds
            )
        return seconds, {mode: score(prep, mode_config(mode, fusion)) for mode in modes}

    for bench in load_benchmarks(benchmarks, data_dir):
        seconds, by_mode = scored(bench, embedder)
        entry: dict[str, Any] = {
            "queries": len(bench.queries),
            "docs": len(bench.docs),
            "seconds": seconds,
            "notes": bench.notes,
            "modes": by_mode,
        }
        if (bench.name, True) in cv:
            entry["cross_validated"] = cv[(bench.name, True)]
        if reference is not None:
            ref_seconds, ref_modes = scored(bench, reference)
            entry["reference"] = {"seconds": ref_seconds, "modes": ref_modes}
            if (bench.name, False) in cv:
                entry["reference"]["cross_validated"] = cv[(bench.name, False)]
        results["benchmarks"][bench.name] = entry
    return results


def format_table(results: Mapping[str, Any]) -> str:
    """The eval results as a plain-text table (one row per benchmark and mode; the reference's figures beside)."""
    reference = results.get("reference")
    lines = [f"embedder: {results.get('embedder')}  fusion: {results.get('fusion')}"]
    header = f"{'benchmark':<10} {'mode':<8} " + " ".join(f"{m:>13}" for m in METRICS)
    if reference:
        lines.append(f"ref: {reference}  (Δ = embedder - ref)")
        header += " |" + " ".join(f"{'ref ' + m:>17}" for m in METRICS) + f" {'Δ ndcg@10':>10}"
    lines += [header, "-" * len(header)]
    for name, bench in results["benchmarks"].items():
        ref_modes = bench.get("reference", {}).get("modes", {})
        for mode, values in bench["modes"].items():
            line = f"{name:<10} {mode:<8} " + " ".join(f"{values[m]:>13.4f}" for m in METRICS)
            if reference and mode in ref_modes:
                ref = ref_modes[mode]
                line += " |" + " ".join(f"{ref[m]:>17.4f}" for m in METRICS)
                line += f" {values['ndcg@10'] - ref['ndcg@10']:>+10.4f}"
            lines.append(line)
        seconds = f"{bench['seconds']} s" + (f"; ref {bench['reference']['seconds']} s" if ref_modes else "")
        lines.append(f"{'':<10} ({bench['queries']} queries, {bench['docs']} docs, {seconds})")
    for name, bench in results["benchmarks"].items():
        cv = bench.get("cross_validated")
        if not cv:
            continue
        ref_cv = bench.get("reference", {}).get("cross_validated", {}).get("rankers", {})
        lines.append(f"{name}: nDCG@10, {cv['folds']}-fold cross-validation over its {cv['queries']} queries")
        if ref_cv:
            lines.append(f"  {'':<28} {'embedder':>8}  {'ref':>8}  {'Δ':>8}")
        for ranker, values in cv["rankers"].items():
            mark = "*" if values.get("served") else " "
            line = f" {mark}{ranker:<28} {values['ndcg@10']:>8.4f}"
            if ranker in ref_cv:
                ref = ref_cv[ranker]["ndcg@10"]
                line += f"  {ref:>8.4f}  {values['ndcg@10'] - ref:>+8.4f}"
            line += f"  tuned: {values['tuned']}"
            if "fold_ndcg@10" in values:
                line += "  folds " + " ".join(f"{v:.3f}" for v in values["fold_ndcg@10"])
                if "fold_ndcg@10" in ref_cv.get(ranker, {}):
                    line += " | ref " + " ".join(f"{v:.3f}" for v in ref_cv[ranker]["fold_ndcg@10"])
            lines.append(line)
        if any(v.get("served") for v in cv["rankers"].values()):
            lines.append("  (* how the ranker this process serves was made, scored on held-out folds)")
        for ranker, strength in cv.get("strength", {}).items():
            weak = strength["weak_only"]
            lines.append(
                f"  match strength, {ranker} ({strength['shown']}, "
                f"calibrated {strength.get('calibrated', 'on the other folds')}): Brier "
                f"{strength['brier']:.4f} (base rate {strength['base_rate']:.3f}); weak-only queries "
                f"{weak['queries']}/{weak['of']}, of which {weak['with_a_real_match_shown']} showed a real match "
                f"({weak['queries_with_no_real_match_shown']} queries showed none)"
            )
            labels = [f"{k} {v['hits']} hits, {v['observed']:.3f} real" for k, v in strength["by_strength"].items()]
            lines.append("    by strength: " + "; ".join(labels))
            bins = [f"{r['bin']} n={r['hits']} p={r['predicted']:.3f} o={r['observed']:.3f}" for r in strength["table"]]
            lines.append("    reliability: " + "; ".join(bins))
    return "\n".join(lines)


def fusion_grid(*, step: float = 0.1, rrf_ks: Sequence[int] = (10, 30, 60, 100)) -> list[FusionConfig]:
    """The configurations tune() tries: weighted (min-max, z-score) and RRF (several k), over a weight simplex."""
    n = round(1 / step)
    configs: list[FusionConfig] = []
    for i in range(n + 1):
        for j in range(n + 1 - i):
            base = FusionConfig(weight_words=i / n, weight_chars=j / n, weight_dense=round((n - i - j) / n, 4))
            configs.append(replace(base, method="weighted", normalisation="minmax"))
            configs.append(replace(base, method="weighted", normalisation="zscore"))
            configs += [replace(base, method="rrf", rrf_k=k) for k in rrf_ks]
    return configs


def tune(preps: Sequence[Prepared], *, configs: Sequence[FusionConfig] | None = None) -> list[dict[str, Any]]:
    """Score every configuration on every prepared benchmark (candidates are reused), best mean nDCG@10 first."""
    rows = []
    for config in configs or fusion_grid():
        per = {prep.bench.name: score(prep, config) for prep in preps}
        mean = float(np.mean([m["ndcg@10"] for m in per.values()]))
        rows.append({"config": config, "mean_ndcg@10": mean, **per})
    return sorted(rows, key=lambda r: -r["mean_ndcg@10"])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m matching.eval [--benchmarks A,B]`: print the eval table with the configured fusion."""
    import argparse

    from core.settings import get_settings
    from matching.embedding import load_embedder
    from matching.index import tuning_from_settings

    parser = argparse.ArgumentParser(prog="python -m matching.eval", description=main.__doc__)
    parser.add_argument("--benchmarks", default="A,B")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    settings = get_settings()
    tuning = tuning_from_settings(settings)
    fusion = tuning.pop("fusion")
    embedder = load_embedder(model=settings.embedding_model, cache_dir=settings.cache_dir)
    results = run_eval(
        benchmarks=args.benchmarks.split(","),
        embedder=embedder,
        data_dir=settings.shared_data_dir,
        cache_dir=settings.cache_dir,
        fusion=fusion,
        tuning=tuning,
        progress=True,
    )
    print(json.dumps(results, ensure_ascii=False, indent=2) if args.json else format_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
