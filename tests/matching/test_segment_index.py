"""SegmentIndex: a write costs O(that write), merges keep the segment count bounded and change no result, readers
follow the writer's commits, and a writer SIGKILLed at any moment leaves the last complete commit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import maxscore, segment_index
from matching.embedding import Embedder
from matching.index import Document, HybridIndex
from matching.segment_index import SegmentIndex
from matching.segments import Postings, Row, Segment, merge_segments
from tests.matching.test_index import REPO, CountingEmbedder, make_docs

CORPUS = [
    f"{topic}{i}号技术" for i in range(60) for topic in ("锂电池隔膜", "海参育苗", "碳纤维", "风电叶片", "污泥干化")
]


def _docs(n: int, start: int = 0) -> list[Document]:
    return [
        Document(id=start + i, title=CORPUS[i % len(CORPUS)], body=f"第{i}项，{CORPUS[(i * 7) % len(CORPUS)]}的改进")
        for i in range(n)
    ]


def test_postings_merge_equals_a_fresh_build() -> None:
    a = [["锂电池", "隔膜", "隔膜"], ["海参", "育苗"], ["锂电池"]]
    b = [["碳纤维", "隔膜"], [], ["海参", "海参", "工艺"]]
    alive_a, alive_b = np.array([True, False, True]), np.array([True, True, True])
    merged = Postings.merge([(Postings.build(a), alive_a), (Postings.build(b), alive_b)])
    fresh = Postings.build([a[0], a[2], *b])
    for part in ("vocab", "offsets", "docs", "tfs", "lengths"):
        assert np.array_equal(getattr(merged, part), getattr(fresh, part)), part


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.lists(st.sampled_from(["锂电池", "隔膜", "海参", "育苗", "碳纤维", "x"]), max_size=8), max_size=12),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.uint8, np.uint16, np.float32]),
)
def test_postings_merge_of_any_parts_equals_a_fresh_build_of_their_live_docs(
    parts: list[list[list[str]]], seed: int, tf_type: type
) -> None:
    """Any segments, any dead rows, term frequencies stored in any type (older files hold float32): the merged
    postings are a fresh build of the live documents, in order, array for array and in the narrowest tf type."""
    rng = np.random.default_rng(seed)
    built, live_docs = [], []
    for docs in parts:
        p = Postings.build(docs)
        p = Postings(p.vocab, p.offsets, p.docs, p.tfs.astype(tf_type), p.lengths)
        alive = rng.random(len(docs)) < 0.7
        built.append((p, alive))
        live_docs += [d for d, a in zip(docs, alive, strict=True) if a]
    merged = Postings.merge(built)
    fresh = Postings.build(live_docs)
    for part in ("vocab", "offsets", "docs", "tfs", "lengths"):
        assert np.array_equal(getattr(merged, part), getattr(fresh, part)), part
        assert getattr(merged, part).dtype == getattr(fresh, part).dtype, part


def test_merged_segments_keep_every_stored_row_and_vector(tmp_path: Path) -> None:
    """A merge of written (mapped) segments with dead rows keeps exactly the live rows, their vectors and attrs."""
    rows = [
        Row(
            id=i,
            content_hash=f"h{i}",
            text=f"文本{i}" * (i % 5 + 1),
            keywords=(f"k{i}",),
            attrs={"field": f"f{i % 3}"},
            words=["锂电池", f"w{i}"],
            chars=["锂电", "电池"],
        )
        for i in range(40)
    ]
    vectors = np.random.default_rng(2).random((40, 4)).astype(np.float32)
    parts = []
    for k, (lo, hi) in enumerate([(0, 15), (15, 16), (16, 40)]):
        Segment.build(f"s{k}", rows[lo:hi], vectors[lo:hi], dim=4).write(tmp_path / f"s{k}.seg")
        seg = Segment.open(tmp_path / f"s{k}.seg")
        parts.append((seg, np.array([(lo + i) % 3 != 1 for i in range(hi - lo)])))
    merged = merge_segments("m", parts, dim=4)
    live = [i for i in range(40) if i % 3 != 1]
    assert merged.rows() == [rows[i] for i in live]
    assert np.array_equal(merged.vectors, vectors[live])
    assert merged.ids.tolist() == live
    assert {k: v.tolist() for k, v in merged.attrs.items()} == {
        ("field", f"f{r}"): [j for j, i in enumerate(live) if i % 3 == r] for r in (0, 2)
    }  # every row of f1 is dead: the attribute goes
    merged.write(tmp_path / "m.seg")
    assert Segment.open(tmp_path / "m.seg").rows() == [rows[i] for i in live]


def test_one_write_embeds_and_writes_only_itself(tmp_path: Path, embedder: Embedder) -> None:
    counting = CountingEmbedder(embedder)
    index = SegmentIndex.open(tmp_path / "ix", embedder=counting, merge_in_background=False)
    index.sync(_docs(300), seq=1)
    before = {p.name: p.stat().st_size for p in (tmp_path / "ix").glob("seg-*.seg")}
    counting.passages = 0
    index.apply([Document(id=5000, title="深远海养殖网箱", body="抗风浪网箱结构")], [], seq=2)
    assert counting.passages == 1, "one write embeds one document"
    after = {p.name: p.stat().st_size for p in (tmp_path / "ix").glob("seg-*.seg")}
    new = set(after) - set(before)
    assert len(new) == 1 and set(before) <= set(after), "a write adds one segment and rewrites none"
    assert after[new.pop()] * 50 < sum(before.values()), "the new segment holds that document only"
    assert index.search("深远海养殖网箱", k=1)[0].id == 5000


def test_merges_bound_the_segment_count_and_change_no_result(tmp_path: Path) -> None:
    merged = SegmentIndex.open(tmp_path / "ix", embedder=None, max_segments=4, merge_in_background=False)
    reference = HybridIndex.in_memory(embedder=None)
    docs = _docs(120)
    for doc in docs:  # one write per document: the worst case for segment counts
        merged.upsert([doc])
    reference.sync(docs)
    merged.remove([3, 50, 77])
    reference.remove([3, 50, 77])
    assert merged.segment_count <= 4 and merged.merges > 0
    for query in ("锂电池隔膜", "海参育苗技术", "风电叶片的改进", "污泥"):
        a, b = reference.search(query, k=10), merged.search(query, k=10)
        assert [h.id for h in a] == [h.id for h in b], query
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-3), query
    reopened = SegmentIndex.open(tmp_path / "ix", embedder=None)
    assert reopened.hashes() == merged.hashes() and len(reopened) == 117


def test_searches_run_while_a_background_merge_swaps_segments(tmp_path: Path) -> None:
    index = SegmentIndex.open(tmp_path / "ix", embedder=None, max_segments=3)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        while not stop.is_set():
            try:
                hits = index.search("锂电池隔膜", k=5)
                assert all(h.id in index.hashes() or h.id >= 0 for h in hits)
            except BaseException as exc:  # noqa: BLE001 (collected for the assertion below)
                errors.append(exc)
                return

    thread = threading.Thread(target=search_loop)
    thread.start()
    for i, doc in enumerate(_docs(60)):
        index.apply([doc], [], seq=i + 1)
    stop.set()
    thread.join()
    index.close()
    assert not errors, errors[:1]
    assert len(index) == 60 and index.last_seq == 60
    assert SegmentIndex.open(tmp_path / "ix", embedder=None).last_seq == 60


def test_a_reader_follows_the_writers_commits_reusing_its_mapped_segments(tmp_path: Path) -> None:
    writer = SegmentIndex.open(tmp_path / "ix", embedder=None, merge_in_background=False)
    writer.sync(_docs(50), seq=1)
    reader = SegmentIndex.open(tmp_path / "ix", embedder=None)
    mapped = reader._state.segments[0]
    writer.apply([Document(id=900, title="髋关节置换手术机器人", body="")], [1, 2], seq=2)
    assert reader.disk_pointer() != reader.pointer and reader.reload()
    assert reader._state.segments[0] is mapped, "a reload maps only the new segment"
    assert reader.last_seq == 2 and 900 in reader.hashes() and 1 not in reader.hashes()
    assert reader.search("髋关节置换", k=1)[0].id == 900


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from matching.index import Document
    from matching.segment_index import SegmentIndex
    index = SegmentIndex.open(Path(sys.argv[1]), embedder=None, max_segments=3)
    seq = index.last_seq or 0
    while True:
        seq += 1
        index.apply([Document(id=10_000 + seq, title=f"第{seq}号 高分子材料改性", body="提高耐热性")], [], seq=seq)
        print(seq, flush=True)
    """
)


def test_sigkill_at_any_moment_leaves_the_last_complete_commit(tmp_path: Path) -> None:
    SegmentIndex.open(tmp_path / "ix", embedder=None).sync(make_docs(), seq=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "ix")], env=env, cwd=REPO, stdout=subprocess.PIPE
        )
        assert proc.stdout is not None
        for _ in range(15 + 7 * round_):  # let it commit (and merge) a while, then kill it mid-stride
            proc.stdout.readline()
        proc.kill()
        proc.wait()
        reopened = SegmentIndex.open(tmp_path / "ix", embedder=None)
        seq = reopened.last_seq
        assert seq is not None and seq > 0
        assert set(reopened.hashes()) == set(range(1, 13)) | {10_000 + s for s in range(1, seq + 1)}
        assert reopened.search("金属钠", k=1)[0].id == 3
    leftovers = [p for p in (tmp_path / "ix").iterdir() if p.name.startswith(".") and p.name != ".lock"]
    SegmentIndex.open(tmp_path / "ix", embedder=None).apply([], [1], seq=10_000)  # the next writer cleans up
    assert all(not p.exists() or p.stat().st_mtime > 0 for p in leftovers)


def test_a_segment_file_round_trips(tmp_path: Path) -> None:
    index = SegmentIndex.in_memory(embedder=None)
    index.sync(_docs(20))
    seg = index._state.segments[0]
    seg.write(tmp_path / "x.seg")
    back = Segment.open(tmp_path / "x.seg")
    assert back.ids.tolist() == seg.ids.tolist() and back.rows() == seg.rows()
    assert np.array_equal(back.fields["chars"].docs, seg.fields["chars"].docs)


def test_graph_storage_comes_from_the_settings_and_is_checked() -> None:
    from core.settings import Settings
    from matching.index import engine_tuning

    assert engine_tuning(Settings())["hnsw_storage"] == "fp16"
    assert engine_tuning(Settings(hnsw_storage="fp32"))["hnsw_storage"] == "fp32"
    with pytest.raises(ValueError, match="hnsw_storage"):
        SegmentIndex(embedder=None, hnsw_storage="int8")


@pytest.mark.parametrize("storage", ["fp32", "fp16"])
def test_a_large_merged_segment_gets_a_saved_graph_that_ranks_like_the_exact_scan(
    tmp_path: Path, embedder: Embedder, storage: str
) -> None:
    docs = _docs(150)
    tuning = {"hnsw_threshold": 100, "candidate_depth": 10, "hnsw_storage": storage}
    # An fp16 graph scores with its half-precision copy: within rounding of the fp32 scores (reasons show 4 places).
    tolerance = 0.0 if storage == "fp32" else 1e-3

    def close(got: list[float], want: list[float]) -> bool:
        return all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True))

    graphed = SegmentIndex.open(tmp_path / "ix", embedder=embedder, merge_in_background=False, max_segments=2, **tuning)
    for start in range(0, 150, 50):  # three segments of 50: the merge folds them into one of 150, over the threshold
        graphed.apply(docs[start : start + 50], [], seq=start + 1)
    while graphed.merge():
        pass
    assert graphed.segment_count == 1 and len(list((tmp_path / "ix").glob("seg-*.hnsw"))) == 1
    exact = SegmentIndex.in_memory(embedder=embedder, hnsw_threshold=10**9, candidate_depth=10)
    exact.sync(docs)
    assert not exact._graphs
    reopened = SegmentIndex.open(tmp_path / "ix", embedder=embedder, **tuning)
    assert set(reopened._graphs) == {s.name for s in reopened._state.segments}, "a reopen maps the saved graph"
    queries = [("锂电池隔膜", {}), ("海参育苗的改进", {"exclude_ids": {1, 6}}), ("碳纤维风电叶片", {})]
    for index in (graphed, reopened):
        for query, kwargs in queries:
            want = exact.search(query, k=5, **kwargs)
            got = index.search(query, k=5, **kwargs)
            assert [h.id for h in got] == [h.id for h in want], query
            assert close([h.reasons["scores"]["dense"] for h in got], [h.reasons["scores"]["dense"] for h in want])
    # Exact dense scores are read from the graph's own copy of the vectors (the pages its searches already map),
    # which holds the segment's vectors bit for bit (fp32), or each to half precision (fp16: within one unit in its
    # last place; faiss rounds its own way).
    seg = reopened._state.segments[0]
    copy = segment_index._graph_vectors(reopened._graphs[seg.name])
    assert copy is not None and copy.dtype == np.dtype(np.float32 if storage == "fp32" else np.float16)
    if storage == "fp32":
        assert np.array_equal(copy, np.asarray(seg.vectors))
    else:
        assert np.allclose(copy.astype(np.float32), np.asarray(seg.vectors), rtol=2**-10, atol=2**-24)
    other = SegmentIndex.open(  # graphs are read as they were written, whatever new graphs would be
        tmp_path / "ix", embedder=embedder, **(tuning | {"hnsw_storage": "fp16" if storage == "fp32" else "fp32"})
    )
    for query, kwargs in queries:
        got_all = [(h.id, h.score, h.reasons) for h in other.search(query, k=5, **kwargs)]
        assert got_all == [(h.id, h.score, h.reasons) for h in reopened.search(query, k=5, **kwargs)], query
    other.close()
    graph_file = next((tmp_path / "ix").glob("seg-*.hnsw")).stat().st_size
    assert graph_file < seg.vectors.nbytes * (1.2 if storage == "fp32" else 0.7)
    if storage == "fp32":
        two_copies = SegmentIndex.open(tmp_path / "ix", embedder=embedder, lean_pages=False, **tuning)
        for query, kwargs in queries:
            got_all = [(h.id, h.score, h.reasons) for h in reopened.search(query, k=5, **kwargs)]
            assert got_all == [(h.id, h.score, h.reasons) for h in two_copies.search(query, k=5, **kwargs)], query
        two_copies.close()
    seg.vectors = np.full(seg.vectors.shape, np.nan, dtype=np.float32)  # the segment's copy is not read at all
    for query, kwargs in queries:
        want = exact.search(query, k=5, **kwargs)
        got = reopened.search(query, k=5, **kwargs)
        assert [h.id for h in got] == [h.id for h in want], query
        assert close([h.reasons["scores"]["dense"] for h in got], [h.reasons["scores"]["dense"] for h in want])
    gone = [h.id for h in graphed.search("锂电池隔膜", k=3)]
    graphed.remove(gone)
    exact.remove(gone)
    assert [h.id for h in graphed.search("锂电池隔膜", k=5)] == [h.id for h in exact.search("锂电池隔膜", k=5)]
    graphed.remove(list(range(60)))  # mostly dead: the merge rewrites it below the threshold, without a graph
    while graphed.merge():
        pass
    for n in range(2):  # two more commits: the superseded segment and its graph leave the disk
        graphed.apply([Document(id=5000 + n, title="深远海养殖网箱", body="抗风浪")], [], seq=600 + n)
    assert not graphed._graphs and not list((tmp_path / "ix").glob("seg-*.hnsw"))


def test_tiered_merges_rewrite_each_document_a_logarithmic_number_of_times(tmp_path: Path) -> None:
    index = SegmentIndex.open(tmp_path / "ix", embedder=None, merge_in_background=False)
    n = 256
    for doc in _docs(n):  # one write per document
        index.upsert([doc])
    # Each document climbs the size tiers (factor 4) once each: log_4(256) = 4 rewrites at most, not one per few writes.
    assert 0 < index.rows_merged <= 4 * n, index.rows_merged
    assert index.segment_count <= 3 * 4, "at most merge_factor - 1 segments per tier"
    assert len(index) == n and index.search("锂电池隔膜", k=1)


class _ThreadRecordingEmbedder(CountingEmbedder):
    """The real embedder, noting which thread encodes each query (and failing on demand)."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.threads: list[str] = []
        self.fail = False

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("encoder down")
        return super().encode_queries(texts)


def test_a_querys_lists_run_side_by_side_and_rank_as_one_after_another(embedder: Embedder) -> None:
    recording = _ThreadRecordingEmbedder(embedder)
    side_by_side = SegmentIndex.in_memory(embedder=recording, query_threads=2)
    in_turn = SegmentIndex.in_memory(embedder=embedder, query_threads=1)
    for index in (side_by_side, in_turn):
        index.sync(_docs(300), seq=1)
    queries = ["锂电池隔膜的改进", "海参育苗技术", "碳纤维风电叶片", "污泥干化", "第17项"]
    for query in queries:
        a, b = side_by_side.search(query, k=10), in_turn.search(query, k=10)
        assert [(h.id, h.score, h.reasons) for h in a] == [(h.id, h.score, h.reasons) for h in b], query
        assert a, query
    assert any(name.startswith("query-lane") for name in recording.threads), recording.threads

    recording.fail = True  # a lane's failure reaches the caller, and the index goes on answering afterwards
    with pytest.raises(RuntimeError, match="encoder down"):
        side_by_side.search("海参育苗技术", k=5)
    recording.fail = False
    assert side_by_side.search("海参育苗技术", k=5)[0].id == in_turn.search("海参育苗技术", k=5)[0].id

    # A search still running when its index closes (a process shutting down) finishes in its own thread.
    lanes = side_by_side._lanes
    side_by_side.close()
    assert lanes is not None and side_by_side._lanes is None
    closed = [(h.id, h.score) for h in side_by_side.search("碳纤维风电叶片", k=10)]
    assert closed == [(h.id, h.score) for h in in_turn.search("碳纤维风电叶片", k=10)]
    assert side_by_side._lanes is None, "a closed index starts no new lanes"


def test_term_frequencies_are_stored_in_the_narrowest_exact_type_and_older_float_files_score_alike(
    tmp_path: Path,
) -> None:
    assert Postings.build([["隔膜"] * 3, ["海参"]]).tfs.dtype == np.uint8
    heavy = Postings.build([["隔膜"] * 300, ["隔膜"]])
    assert heavy.tfs.dtype == np.uint16 and sorted(heavy.tfs.tolist()) == [1, 300], "a tf over 255 is kept exactly"

    docs = [*_docs(120), Document(id=999, title="隔膜涂覆", body="隔膜" * 300)]
    index = SegmentIndex.open(tmp_path / "ix", embedder=None, merge_in_background=False)
    index.sync(docs, seq=1)
    queries = ["锂电池隔膜", "海参育苗", "隔膜涂覆", "风电叶片碳纤维"]
    compact = {q: [(h.id, h.score) for h in index.search(q, k=20)] for q in queries}
    assert compact["隔膜涂覆"][0][0] == 999
    index.close()
    # Segments as written before term frequencies were compacted: the same postings with float32 frequencies.
    for path in (tmp_path / "ix").glob("seg-*.seg"):
        seg = Segment.open(path)
        assert all(p.tfs.dtype.kind == "u" for p in seg.fields.values())
        for name, p in list(seg.fields.items()):
            seg.fields[name] = Postings(p.vocab, p.offsets, p.docs, np.asarray(p.tfs, dtype=np.float32), p.lengths)
        seg.write(path)
    older = SegmentIndex.open(tmp_path / "ix", embedder=None, merge_in_background=False)
    assert all(p.tfs.dtype == np.float32 for seg in older._state.segments for p in seg.fields.values())
    assert {q: [(h.id, h.score) for h in older.search(q, k=20)] for q in queries} == compact
    older.close()


def test_the_common_terms_cut_applies_from_its_size_on_and_the_settings_serve_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Below bm25_common_min_docs live docs every BM25 list is exact; from it on, terms in more than bm25_common of
    the docs no longer choose candidates (fewer postings scanned), and the served settings pass both knobs."""
    from core.settings import Settings
    from matching.index import engine_tuning

    docs = [
        Document(id=i, title=f"{CORPUS[i % len(CORPUS)]}系统", body=f"一种技术方法，{CORPUS[(i * 7) % len(CORPUS)]}")
        for i in range(300)
    ]
    tokens = ["技术", "方法", "系统", "锂电池", "隔膜"]  # the first three are in every doc, the last two in a fifth
    monkeypatch.setattr(maxscore, "SEEK_COST", 0)  # 300 docs: the cost rule alone would keep the lists exact
    results = {}
    for min_docs in (301, 300):
        index = SegmentIndex(embedder=None, bm25_common=0.5, bm25_common_min_docs=min_docs, candidate_depth=10)
        index.sync(docs, seq=1)
        state = index._state
        results[min_docs] = index._bm25(state, "words", tokens, 10, state.alive_all)
    exact, cut = results[301], results[300]
    assert exact.postings_scanned == exact.postings_total
    assert cut.postings_scanned < exact.postings_total / 2  # only the rare terms' postings
    every = np.arange(300)
    np.testing.assert_allclose(cut.exact(every), exact.exact(every), rtol=1e-6)  # scores stay exact
    assert sorted(cut.top.tolist()) == sorted(exact.top.tolist())  # here the rare terms decide the list
    served = engine_tuning(Settings(bm25_common_df=0.1, bm25_common_min_docs=1234))
    assert served["bm25_common"] == 0.1 and served["bm25_common_min_docs"] == 1234
