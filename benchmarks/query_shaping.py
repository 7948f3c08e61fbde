"""Queries as people write them: what cleaning, key phrases and the need's structure add, by cross-validation.

A need is a form: a title, then a body with form labels, the company describing itself and contact details. Each
variant below shapes benchmark A-dev's queries differently over the same index; every figure is held out (5 folds by
need): the logistic re-ranker trained on four folds and scored on the fifth, and the fusion with weights tuned on four
folds. Benchmark B (keyword needs, no body) is the guard.

    .venv/bin/python -m benchmarks.query_shaping [--benchmarks A B]

Variants:
- served: the served analysis (clean_query, the title repeated twice in the BM25 query, the title alone as the vector);
- no cleaning: the raw text normalised (form labels and company self-description kept);
- no title boost: the cleaned text once, title not repeated;
- title only: BM25 and vector on the title alone;
- text vector: as served, but the vector of the whole cleaned text instead of the title's;
- key phrases (TF-IDF / TextRank): the title twice plus the body's top 20 key phrases by jieba.analyse, instead of
  the body's every word.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import jieba.analyse

from app.runtime import load_embedder
from core.settings import get_settings
from matching.crossval import cross_validate_choice, cross_validate_reranker, per_query
from matching.dense import CachingEmbedder
from matching.eval import fusion_grid, load_benchmarks, prepare
from matching.index import HybridIndex, QueryAnalysis, tuning_from_settings
from matching.text import char_bigrams, clean_query, normalise

Shaper = Callable[[HybridIndex, str], QueryAnalysis]


def _from_parts(
    index: HybridIndex, title: str, body_words: list[str], body_chars: list[str], text: str
) -> QueryAnalysis:
    words = index.segmenter.words(title) * 2 + body_words
    chars = char_bigrams(title) * 2 + body_chars
    return QueryAnalysis(text=text, words=words, chars=chars, title=title)


def _split(text: str) -> tuple[str, str]:
    clean = clean_query(text) or normalise(text)
    first, _, rest = clean.partition("。")
    return first.strip(), rest


def key_phrases(extract: Callable[..., list[str]]) -> Shaper:
    def shape(index: HybridIndex, text: str) -> QueryAnalysis:
        title, body = _split(text)
        if not body:
            return index.analyse(text)
        phrases = [normalise(p) for p in extract(body, topK=20)]
        words = [w for p in phrases for w in index.segmenter.words(p)]
        chars = [c for p in phrases for c in char_bigrams(p)]
        return _from_parts(index, title, words, chars, f"{title}。{body}")

    return shape


def no_cleaning(index: HybridIndex, text: str) -> QueryAnalysis:
    raw = normalise(text)
    title, _, body = raw.partition("。")
    return _from_parts(index, title, index.segmenter.words(body), char_bigrams(body), raw)


def no_title_boost(index: HybridIndex, text: str) -> QueryAnalysis:
    served = index.analyse(text)
    return replace(served, words=index.segmenter.words(served.text), chars=char_bigrams(served.text))


def title_only(index: HybridIndex, text: str) -> QueryAnalysis:
    title, _ = _split(text)
    return QueryAnalysis(text=title, words=index.segmenter.words(title), chars=char_bigrams(title))


def text_vector(index: HybridIndex, text: str) -> QueryAnalysis:
    return replace(index.analyse(text), title="")


VARIANTS: dict[str, Shaper | None] = {
    "served": None,
    "no cleaning": no_cleaning,
    "no title boost": no_title_boost,
    "title only": title_only,
    "text vector": text_vector,
    "key phrases (TF-IDF)": key_phrases(jieba.analyse.extract_tags),
    "key phrases (TextRank)": key_phrases(jieba.analyse.textrank),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", nargs="+", default=["A", "B"])
    args = ap.parse_args()
    settings = get_settings()
    tuning = tuning_from_settings(settings)
    tuning.pop("reranker", None)
    default = tuning["fusion"]
    embedder = CachingEmbedder(load_embedder(settings), cache_dir=settings.cache_dir)
    grid = [c for c in fusion_grid() if c.method == "weighted" and c.normalisation == "zscore"]
    print(f"{'benchmark':<9} {'variant':<24} {'default fusion':>14} {'fusion CV':>10} {'re-ranker CV':>13} {'s':>5}")
    for bench in load_benchmarks(args.benchmarks, settings.shared_data_dir):
        for name, shape in VARIANTS.items():
            t0 = time.perf_counter()
            prep = prepare(bench, embedder=embedder, tuning=tuning, analyse=shape)
            served = per_query(prep, default)
            fused = cross_validate_choice({c: per_query(prep, c) for c in grid})
            learned = cross_validate_reranker(prep, kind="logistic")
            mean = sum(served.values()) / len(served)
            print(
                f"{bench.name:<9} {name:<24} {mean:>14.4f} {fused.mean:>10.4f} {learned['ndcg@10']:>13.4f} "
                f"{time.perf_counter() - t0:>5.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
