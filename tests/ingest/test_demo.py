"""The shipped demo corpus: it parses, it is big enough, every row names its licence, and its needs find answers."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest import demo_build
from ingest.demo import SAMPLE_DIR, load_demo, shipped_achievements, shipped_needs
from ingest.records import AchievementRecord, NeedRecord
from matching.index import Document, HybridIndex
from matching.text import normalise
from models import Achievement, Need
from tests.conftest import SHARED_DATA, requires_shared_data

LICENCES = {"csl": "Apache-2.0", "cn-patent-g06f": "CC-BY-4.0"}
IDS = {"csl": re.compile(r"csl-(dev|test)-\d{4}"), "cn-patent-g06f": re.compile(r"CN\d{9}[A-Z]")}
WEIHAI = {"环翠区", "文登区", "荣成市", "乳山市", "高区", "经区", "临港区", "南海新区"}


@pytest.fixture(scope="module")
def achievements() -> list[dict[str, Any]]:
    return list(shipped_achievements())


@pytest.fixture(scope="module")
def needs() -> list[dict[str, Any]]:
    return list(shipped_needs())


def test_shipped_rows_validate_and_are_enough(achievements: list[dict[str, Any]], needs: list[dict[str, Any]]) -> None:
    assert len(achievements) >= 2000
    assert len(needs) >= 50
    for row in achievements:
        AchievementRecord.model_validate(row)
    for row in needs:
        need = NeedRecord.model_validate(row)
        assert need.description and need.field and need.region in WEIHAI, row["external_id"]
    for rows in (achievements, needs):
        ids = [r["external_id"] for r in rows]
        assert len(ids) == len(set(ids))
    assert len({r["abstract"] for r in achievements}) == len(achievements), "one copy of each abstract"


def test_every_row_carries_its_licence_and_attribution(
    achievements: list[dict[str, Any]], needs: list[dict[str, Any]]
) -> None:
    for row in achievements:
        # Only the two openly licensed sets may ship (../shared/data/README.md): never CCF, never FewCLUE.
        assert row["source"] in LICENCES, row["external_id"]
        assert row["licence"] == LICENCES[row["source"]]
        assert row["attribution"].strip()
        assert IDS[row["source"]].fullmatch(row["external_id"]), row["external_id"]
    for row in needs:
        assert "written for the techmatch demo" in row["attribution"]
        assert row["licence"] == "techmatch project"
        assert "owner" not in row, "the needs are fictional and name no enterprise"


def test_attribution_file_names_each_set_and_its_counts(
    achievements: list[dict[str, Any]], needs: list[dict[str, Any]]
) -> None:
    text = (SAMPLE_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for phrase in (
        "Apache-2.0",
        "CC BY 4.0",
        "github.com/ydli-ai/CSL",
        "CN-US-EU-JP-Patent_2020-2025",
        "github.com/liaoleyuan/chinese-patent-cpc-multilabel-classification",
        "Copyright (c) 2026 Liaoleyuan",
    ):
        assert phrase in text
    assert "END OF TERMS AND CONDITIONS" in (SAMPLE_DIR / "LICENSE-Apache-2.0.txt").read_text(encoding="utf-8")
    counts = Counter(r["source"] for r in achievements)
    # The table states the counts; a rebuild that changes them must update it.
    assert f'| {counts["csl"]:,} (`"source": "csl"`)' in text
    assert f'| {counts["cn-patent-g06f"]:,} (`"source": "cn-patent-g06f"`)' in text
    assert f"| `needs.jsonl` | {len(needs)} |" in text


def test_the_build_reads_only_the_two_open_sets() -> None:
    assert demo_build.SOURCES == ("csl-benchmark-2k/csl_2k.jsonl", "cn-patent-g06f-cpc/patents.jsonl")


@requires_shared_data
def test_the_build_reproduces_the_shipped_file(tmp_path: Path) -> None:
    out = tmp_path / "achievements.jsonl.gz"
    demo_build.write(demo_build.select(SHARED_DATA), out)
    assert out.read_bytes() == (SAMPLE_DIR / "achievements.jsonl.gz").read_bytes()


def test_loading_the_shipped_corpus_is_idempotent(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    achievements: list[dict[str, Any]],
    needs: list[dict[str, Any]],
) -> None:
    # No shared data in data_dir: the shipped corpus, whole (the default limit applies to the shared corpora only).
    first = load_demo(session_factory=session_factory, data_dir=tmp_path / "absent")
    assert first[0].startswith("demo corpus: shipped")
    assert f"needs: {len(needs)} inserted, 0 updated, 0 unchanged, 0 rejected" in first[1]
    assert f"achievements: {len(achievements)} inserted, 0 updated, 0 unchanged, 0 rejected" in first[2]
    again = load_demo(session_factory=session_factory, data_dir=tmp_path / "absent")
    assert f"achievements: 0 inserted, 0 updated, {len(achievements)} unchanged, 0 rejected" in again[2]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Need)) == len(needs)
        sources = dict(session.execute(select(Achievement.source, func.count()).group_by(Achievement.source)).all())
    assert sources == dict(Counter(r["source"] for r in achievements))


# --- quality: the written needs find real answers in the shipped corpus (lexical only: fast, no model) ---------------


@pytest.fixture(scope="module")
def lexical(achievements: list[dict[str, Any]]) -> HybridIndex:
    index = HybridIndex.in_memory(embedder=None)
    index.sync(
        Document(
            id=i,
            title=r["title"],
            body=r["abstract"],
            keywords=tuple(r.get("keywords") or ()),
            attrs={"field": r.get("field"), "source": r["source"]},
            content_hash=str(i),
        )
        for i, r in enumerate(achievements)
    )
    return index


def _top_titles(index: HybridIndex, achievements: list[dict[str, Any]], need: dict[str, Any], k: int) -> list[str]:
    # The query a need's matches use (catalog/match.py): title。description, normalised at the boundary.
    hits = index.search(normalise(f"{need['title']}。{need['description']}"), k=k)
    return [achievements[h.id]["title"] for h in hits]


@pytest.mark.parametrize(
    ("need_id", "term"),
    [
        ("demo-n-008", "连作"),  # written in traditional characters: 連作障礙
        ("demo-n-016", "刺参"),
        ("demo-n-023", "鱼油"),
        ("demo-n-027", "船型"),
        ("demo-n-035", "海水循环冷却"),
        ("demo-n-046", "全瓷"),
        ("demo-n-048", "光伏功率预测"),
        ("demo-n-052", "燃料电池"),
        ("demo-n-063", "多糖"),  # traditional characters too
        ("demo-n-069", "温室"),
        ("demo-n-073", "粪污"),
        ("demo-n-076", "滚动轴承"),
    ],
)
def test_a_written_need_finds_an_achievement_on_its_subject(
    lexical: HybridIndex, achievements: list[dict[str, Any]], needs: list[dict[str, Any]], need_id: str, term: str
) -> None:
    need = next(n for n in needs if n["external_id"] == need_id)
    top = _top_titles(lexical, achievements, need, k=3)
    assert any(term in title for title in top), (need["title"], top)


# Bigrams any two technical titles share; a match on these alone says nothing.
_GENERIC = {
    *("技术", "系统", "方法", "研究", "开发", "应用", "设计", "优化", "处理", "工艺", "控制", "及其", "基于", "装置"),
    *("设备", "一种", "提升", "智能", "管理", "分析", "检测", "监测", "材料", "制备", "综合", "利用", "在线", "预测"),
    *("诊断", "故障", "改造", "建设", "平台", "数据", "质量", "提高", "性能", "影响", "工程", "生产", "加工", "产品"),
    *("评估", "模型", "结构", "识别", "自动"),
}


def _bigrams(text: str) -> set[str]:
    text = normalise(text)
    return {text[i : i + 2] for i in range(len(text) - 1)} - _GENERIC


def test_most_needs_have_an_on_topic_answer_in_their_top_three(
    lexical: HybridIndex, achievements: list[dict[str, Any]], needs: list[dict[str, Any]]
) -> None:
    # On topic: the achievement's title shares a non-generic bigram with the need's title (船型, 多糖 …).
    missed = [
        need["title"]
        for need in needs
        if not any(_bigrams(need["title"]) & _bigrams(t) for t in _top_titles(lexical, achievements, need, k=3))
    ]
    assert len(missed) <= len(needs) // 10, missed
