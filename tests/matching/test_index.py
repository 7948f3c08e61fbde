"""HybridIndex: sync, search, reasons, filters, persistence, crash safety, HNSW, model changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from matching.embedding import Embedder
from matching.index import CURRENT, Document, HybridIndex, IndexModelMismatch, SearchIndex

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    (1, "防爆锂离子电池", "一种防止热失控的锂离子动力电池结构", "能源"),
    (2, "锂离子电池硅碳负极材料", "高容量硅碳复合负极的制备方法", "能源"),
    (3, "高纯度金属钠的制备方法", "低能耗电解生产金属钠", "化工"),
    (4, "立方氮化硼单晶合成", "高温高压合成高韧性立方氮化硼", "材料"),
    (5, "桥梁健康监测系统", "基于无线传感器网络的桥梁结构监测与预警", "交通"),
    (6, "污泥低温干化设备", "电加热低温污泥干化处理工艺", "环保"),
    (7, "肉鸽新品种选育", "肉鸽高产抗逆配套系育种", "农业"),
    (8, "风电叶片表面智能打磨机器人", "风电叶片磨抛作业的自动化", "能源"),
    (9, "生物有机肥发酵工艺", "颗粒有机肥的微生物发酵生产技术", "农业"),
    (10, "石墨烯导电薄膜", "化学气相沉积制备石墨烯薄膜", "材料"),
    (11, "髋关节置换手术机器人", "骨科手术导航与髋关节假体置换", "医疗"),
    (12, "铁路站场铁鞋定位识别", "铁鞋高精度定位与状态识别系统", "交通"),
]


def make_docs(rows: Sequence[tuple[int, str, str, str]] = ROWS) -> list[Document]:
    return [
        Document(id=i, title=t, body=b, attrs={"field": f}, content_hash=f"{t}|{b}", keywords=(t[:4],))
        for i, t, b, f in rows
    ]


class CountingEmbedder:
    """The real embedder, counting how many passages and queries reach it."""

    def __init__(self, inner: Embedder, *, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.dim = inner.dim
        self.passages = 0
        self.queries = 0

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.queries += len(texts)
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages += len(texts)
        return self.inner.encode_passages(texts)


@pytest.fixture
def counting(embedder: Embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


def test_hybrid_index_satisfies_the_port(embedder: Embedder):
    index: SearchIndex = HybridIndex.in_memory(embedder=embedder)
    assert len(index) == 0 and index.search("电池") == []


def test_sync_adds_updates_removes_and_is_idempotent(tmp_path: Path, counting: CountingEmbedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=counting)
    report = index.sync(make_docs())
    assert (report.added, report.updated, report.removed, report.unchanged) == (12, 0, 0, 0)
    assert counting.passages == 12 and len(index) == 12

    counting.passages = 0
    generation = index.generation
    report = index.sync(make_docs())
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 12)
    assert counting.passages == 0  # nothing re-embedded
    assert index.generation == generation  # and nothing rewritten

    rows = [r for r in ROWS if r[0] != 3]
    rows[0] = (1, "防爆锂离子电池", "新增：针刺不起火的电芯", "能源")
    rows.append((13, "工业互联网平台", "有色金属加工智能工厂", "信息"))
    report = index.sync(make_docs(rows))
    assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 10)
    assert counting.passages == 2  # only the new and the changed doc
    assert 3 not in index.hashes() and index.hashes()[1] == "防爆锂离子电池|新增：针刺不起火的电芯"
    assert all(hit.id != 3 for hit in index.search("金属钠", k=12))


def test_metadata_change_updates_filters_without_re_embedding(tmp_path: Path, counting: CountingEmbedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=counting)
    index.sync(make_docs())
    counting.passages = 0
    title, body = ROWS[2][1], ROWS[2][2]
    moved = [Document(id=3, title=title, body=body, keywords=(title[:4],), attrs={"field": "能源"}, content_hash="新")]
    report = index.upsert(moved)
    assert report.updated == 1 and counting.passages == 0  # same text: the vector is still right
    assert 3 in {h.id for h in index.search("金属钠", filters={"field": "能源"})}


def test_search_ranks_the_matching_doc_first_with_reasons(embedder: Embedder):
    index = HybridIndex.in_memory(embedder=embedder)
    index.sync(make_docs())
    hits = index.search("防爆锂电池的研发。随着社会的不断发展，需要防止锂离子电池热失控起火", k=5)
    assert hits[0].id == 1
    why = hits[0].reasons
    assert "锂离子电池" in why["shared_terms"] or "防爆" in why["shared_terms"]
    assert set(why["scores"]) == {"words", "chars", "dense"}
    assert why["ranks"]["words"] == 1 and why["ranks"]["dense"] is not None
    assert sum(why["parts"].values()) == pytest.approx(hits[0].score, abs=1e-3)
    assert why["fusion"] == "weighted"
    json.dumps([h.reasons for h in hits])  # JSON-serialisable
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_dense_side_finds_paraphrases(embedder: Embedder):
    index = HybridIndex.in_memory(embedder=embedder)
    index.sync(make_docs())
    hits = index.search("骨科人工关节", k=3)
    assert 11 in [h.id for h in hits]


def test_filters_exclusions_and_keywords(embedder: Embedder):
    index = HybridIndex.in_memory(embedder=embedder)
    index.sync(make_docs())
    energy = index.search("电池", k=10, filters={"field": "能源"})
    assert {h.id for h in energy} == {1, 2, 8}  # fewer than k exist: all of them, nothing else
    assert index.search("电池", filters={"field": "不存在"}) == []
    hits = index.search("锂离子电池", k=3, exclude_ids={1})
    assert hits and all(h.id != 1 for h in hits) and hits[0].id == 2
    assert index.search("锂离子电池负极", k=1)[0].reasons["matched_keywords"] == ["锂离子电"]


def test_persistence_round_trip(tmp_path: Path, embedder: Embedder, counting: CountingEmbedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    before = [(h.id, h.score) for h in index.search("桥梁监测", k=5, filters={"field": "交通"})]
    reopened = HybridIndex.open(tmp_path / "ix", embedder=counting)
    assert len(reopened) == 12 and reopened.hashes() == index.hashes()
    assert [(h.id, h.score) for h in reopened.search("桥梁监测", k=5, filters={"field": "交通"})] == before
    assert counting.passages == 0
    files = {p.name for p in (tmp_path / "ix").iterdir()}
    assert files == {CURRENT, ".lock", (tmp_path / "ix" / CURRENT).read_text().strip()}


def test_upsert_and_remove_persist(tmp_path: Path, embedder: Embedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    index.upsert([Document(id=99, title="量子点发光材料", body="", content_hash="q")])
    assert index.remove([5, 12, 12345]) == 2
    reopened = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    assert set(reopened.hashes()) == set(range(1, 13)) - {5, 12} | {99}
    assert reopened.search("量子点", k=1)[0].id == 99


def test_a_failed_write_leaves_the_last_good_generation(tmp_path: Path, embedder: Embedder, monkeypatch):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    good = (tmp_path / "ix" / CURRENT).read_text()

    def torn(self: HybridIndex, folder: Path) -> None:
        (folder / "docs.jsonl").write_text('{"id": 1, "ha', encoding="utf-8")
        raise OSError("disk full")

    monkeypatch.setattr(HybridIndex, "_write_generation", torn)
    with pytest.raises(OSError):
        index.upsert([Document(id=50, title="新材料", body="", content_hash="n")])
    monkeypatch.undo()
    assert (tmp_path / "ix" / CURRENT).read_text() == good
    assert not [p for p in (tmp_path / "ix").iterdir() if p.name.startswith(".tmp-")]
    assert set(HybridIndex.open(tmp_path / "ix", embedder=embedder).hashes()) == set(range(1, 13))


def test_leftovers_of_a_crash_are_ignored_then_collected(tmp_path: Path, embedder: Embedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    # A half-written temp generation, and a complete-looking one that was renamed but never made current.
    half = tmp_path / "ix" / ".tmp-000007-deadbeef"
    half.mkdir()
    (half / "docs.jsonl").write_text('{"id": 1', encoding="utf-8")
    orphan = tmp_path / "ix" / "gen-000008"
    orphan.mkdir()
    (orphan / "manifest.json").write_text("{}", encoding="utf-8")
    reopened = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    assert len(reopened) == 12 and reopened.search("金属钠", k=1)[0].id == 3
    reopened.upsert([Document(id=77, title="纳米涂层", body="", content_hash="x")])
    names = {p.name for p in (tmp_path / "ix").iterdir()}
    assert names == {CURRENT, ".lock", "gen-000009"}


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import matching.index as ix
    from matching.embedding import load_embedder

    where = sys.argv[2]
    if where == "pointer":  # the new generation is renamed into place, CURRENT not yet swapped
        ix._write_atomic = lambda path, content: os.kill(os.getpid(), signal.SIGKILL)
    else:  # half-way through writing the new generation's files
        original = ix.DenseIndex.save
        def save(self, folder):
            original(self, folder)
            os.kill(os.getpid(), signal.SIGKILL)
        ix.DenseIndex.save = save
    embedder = load_embedder(model=None, cache_dir=Path(sys.argv[3]))
    index = ix.HybridIndex.open(Path(sys.argv[1]), embedder=embedder)
    index.upsert([ix.Document(id=500, title="被杀死的写入", body="", content_hash="k")])
    """
)


@pytest.mark.parametrize("where", ["files", "pointer"])
def test_sigkill_during_save_reopens_the_last_complete_generation(
    tmp_path: Path, embedder: Embedder, embedding_cache_dir: Path, where: str
):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "ix"), where, str(embedding_cache_dir)]
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=300)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    reopened = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    assert set(reopened.hashes()) == set(range(1, 13))  # the old generation, whole
    assert reopened.search("金属钠", k=1)[0].id == 3
    report = reopened.upsert([Document(id=500, title="被杀死的写入", body="", content_hash="k")])
    assert report.added == 1 and len(HybridIndex.open(tmp_path / "ix", embedder=embedder)) == 13


def test_hnsw_with_tombstones_and_rebuild(tmp_path: Path, counting: CountingEmbedder):
    tuning = {"hnsw_threshold": 5, "hnsw_m": 8, "hnsw_ef_search": 32, "max_stale_fraction": 0.3}
    index = HybridIndex.open(tmp_path / "ix", embedder=counting, **tuning)
    index.sync(make_docs())
    assert index.dense.is_hnsw and index.dense.tombstones == 0
    index.upsert([Document(id=3, title="金属钠电解槽", body="熔盐电解制钠的节能电解槽", content_hash="v2")])
    assert index.remove([10]) == 1
    assert index.dense.tombstones == 2  # the old vector of 3 and the removed 10 stay in the graph, filtered
    dense_only = {"weight_words": 0.0, "weight_chars": 0.0, "weight_dense": 1.0}
    from matching.fusion import FusionConfig

    hits = index.search("石墨烯薄膜", k=11, fusion=FusionConfig(**dense_only))
    assert 10 not in [h.id for h in hits] and len(hits) == 11
    assert [h.id for h in hits].count(3) == 1
    assert index.search("熔盐电解制钠", k=1)[0].id == 3

    reopened = HybridIndex.open(tmp_path / "ix", embedder=counting, **tuning)
    assert reopened.dense.is_hnsw and reopened.dense.tombstones == 2
    assert 10 not in [h.id for h in reopened.search("石墨烯薄膜", k=11, fusion=FusionConfig(**dense_only))]
    counting.passages = 0
    reopened.remove([1, 2])  # stale share now above 0.3 of the graph: rebuilt from stored vectors
    assert reopened.dense.tombstones == 0 and counting.passages == 0
    assert len(reopened.search("桥梁", k=20)) <= 9


def test_a_different_model_is_refused_until_rebuild(tmp_path: Path, embedder: Embedder):
    HybridIndex.open(tmp_path / "ix", embedder=embedder).sync(make_docs())
    other = CountingEmbedder(embedder, name="another-model")
    with pytest.raises(IndexModelMismatch, match="rebuild"):
        HybridIndex.open(tmp_path / "ix", embedder=other)
    index = HybridIndex.open(tmp_path / "ix", embedder=other, allow_model_change=True)
    with pytest.raises(IndexModelMismatch):
        index.search("电池")
    assert index.rebuild() == 12 and other.passages == 12
    assert HybridIndex.open(tmp_path / "ix", embedder=other).search("金属钠", k=1)[0].id == 3


def test_lexical_only_index_without_a_model(tmp_path: Path):
    index = HybridIndex.open(tmp_path / "ix", embedder=None)
    index.sync(make_docs())
    hit = HybridIndex.open(tmp_path / "ix", embedder=None).search("金属钠制备", k=1)[0]
    assert hit.id == 3 and "dense" not in hit.reasons["scores"]


class BrokenEmbedder(CountingEmbedder):
    """The real embedder whose passage side fails, as a model that runs out of memory would."""

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("model crashed")


def test_a_failing_model_leaves_the_index_unchanged(tmp_path: Path, embedder: Embedder):
    index = HybridIndex.open(tmp_path / "ix", embedder=embedder)
    index.sync(make_docs())
    broken = HybridIndex.open(tmp_path / "ix", embedder=BrokenEmbedder(embedder))
    with pytest.raises(RuntimeError):
        broken.sync(make_docs(ROWS[:5]) + [Document(id=40, title="新文档", body="", content_hash="n")])
    assert len(broken) == 12 and 40 not in broken.hashes()
    assert broken.search("金属钠", k=1)[0].id == 3


@pytest.mark.parametrize("tuning", [{}, {"hnsw_threshold": 5, "hnsw_m": 8}])
def test_filtering_through_faiss_goes_deeper_until_enough_pass(embedder: Embedder, tuning: dict):
    exact = HybridIndex.in_memory(embedder=embedder, **tuning)
    deep = HybridIndex.in_memory(embedder=embedder, exact_filter_limit=0, candidate_depth=2, **tuning)
    exact.sync(make_docs())
    deep.sync(make_docs())
    from matching.fusion import FusionConfig

    dense_only = FusionConfig(weight_words=0.0, weight_chars=0.0, weight_dense=1.0)
    for field in ("能源", "农业", "交通"):
        want = [h.id for h in exact.search("智能装备", k=3, filters={"field": field}, fusion=dense_only)]
        got = [h.id for h in deep.search("智能装备", k=3, filters={"field": field}, fusion=dense_only)]
        assert got == want and len(got) >= 2


class FailsAfter(CountingEmbedder):
    """The real embedder that dies after a number of passages, as a killed or crashed process would."""

    def __init__(self, inner: Embedder, *, limit: int) -> None:
        super().__init__(inner)
        self.limit = limit

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self.passages + len(texts) > self.limit:
            raise RuntimeError("process died")
        return super().encode_passages(texts)


def test_a_long_sync_checkpoints_so_a_crash_keeps_finished_chunks(tmp_path: Path, embedder: Embedder, monkeypatch):
    monkeypatch.setattr("matching.index._CHECKPOINT_DOCS", 4)
    docs = make_docs()
    dying = HybridIndex.open(tmp_path / "ix", embedder=FailsAfter(embedder, limit=9))
    with pytest.raises(RuntimeError):
        dying.sync(docs)
    reopened = HybridIndex.open(tmp_path / "ix", embedder=(resumed := CountingEmbedder(embedder)))
    assert sorted(reopened.hashes()) == sorted(d.id for d in docs[:8]), "two finished chunks were saved"
    report = reopened.sync(docs)
    assert (report.added, report.unchanged) == (len(docs) - 8, 8)
    assert resumed.passages == len(docs) - 8, "only the missing documents are embedded on the rerun"


def test_reasons_name_shared_bigrams_when_no_whole_word_is_shared(embedder: Embedder):
    index = HybridIndex.in_memory(embedder=embedder)
    index.sync(make_docs())
    # jieba keeps 锂电池 and 锂离子电池 whole, so no word is shared with 防爆锂离子电池; the bigram 电池 is.
    hit = index.search("锂电池安全", k=1)[0]
    assert hit.id == 1
    assert hit.reasons["shared_terms"] == []
    assert hit.reasons["shared_bigrams"] == ["电池"]
    # A bigram inside a shared word is not repeated.
    why = index.search("金属钠的制备", k=1)[0].reasons
    assert "金属钠" in why["shared_terms"] or "金属" in why["shared_terms"]
    assert "金属" not in why["shared_bigrams"]
