"""The ingest service on a real database: files land, bad rows are named and stored, re-ingest is idempotent."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from ingest.readers import UnsupportedFile
from ingest.service import RowError, format_errors, format_summary, ingest_file, ingest_rows
from models import Achievement, IngestError, IngestRun, Need, Organisation
from models.tables import IngestKind, ListingStatus, MaturityStage, OrgKind, RunStatus, Visibility

FILES = Path(__file__).parent / "files"
NEEDS = IngestKind.needs
ACHIEVEMENTS = IngestKind.achievements


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def snapshot(factory: sessionmaker[Session], model: type[Need] | type[Achievement]) -> list[tuple[Any, ...]]:
    """Every column of every row, in id order: what 'the DB is unchanged' means."""
    columns = list(model.__table__.columns)
    with factory() as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(model.id))]


def by_external_id(factory: sessionmaker[Session], model: type[Need] | type[Achievement]) -> dict[str, Any]:
    with factory() as session:
        return {row.external_id: row for row in session.scalars(select(model))}


def test_jsonl_needs_land_with_exact_money_dates_enums_and_owners(session_factory) -> None:
    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=FILES / "needs_good.jsonl")

    assert (summary.inserted, summary.updated, summary.unchanged, summary.rejected) == (4, 0, 0, 0)
    assert summary.errors == []
    assert summary.source == "needs_good"  # the file stem
    needs = by_external_id(session_factory, Need)
    assert sorted(needs) == ["N-001", "N-002", "N-003", "N-004"]
    assert sorted(summary.inserted_ids) == sorted(n.id for n in needs.values())

    n1, n2, n3, n4 = (needs[k] for k in ("N-001", "N-002", "N-003", "N-004"))
    assert n1.budget_yuan == Decimal("12.30") and isinstance(n1.budget_yuan, Decimal)
    assert n2.budget_yuan == Decimal("125000.00")
    assert n3.budget_yuan == Decimal("1234567.89")
    assert n1.deadline == date(2026, 6, 30)
    assert (n3.visibility, n3.status) == (Visibility.private, ListingStatus.draft)
    assert (n4.visibility, n4.status, n4.description, n4.budget_yuan, n4.owner_id) == (
        Visibility.public,
        ListingStatus.published,
        "",
        None,
        None,
    )
    assert all(n.source == "needs_good" and len(n.content_hash) == 40 for n in needs.values())

    with session_factory() as session:
        orgs = {o.name: o for o in session.scalars(select(Organisation))}
        run = session.get(IngestRun, summary.run_id)
    assert set(orgs) == {"威海新能源有限公司", "荣成海洋科技公司"}
    assert n1.owner_id == orgs["威海新能源有限公司"].id
    assert orgs["威海新能源有限公司"].kind is OrgKind.enterprise  # the default for needs
    assert orgs["威海新能源有限公司"].in_weihai is True  # region 威海
    assert orgs["荣成海洋科技公司"].in_weihai is True  # stated 是
    assert run.status is RunStatus.finished and run.finished_at is not None
    assert (run.kind, run.source, run.inserted, run.rejected) == (NEEDS, "needs_good", 4, 0)
    assert run.location.endswith("needs_good.jsonl")


def test_traditional_chinese_and_full_width_are_stored_normalised(session_factory) -> None:
    ingest_file(session_factory=session_factory, kind=NEEDS, path=FILES / "needs_good.jsonl")
    n1 = by_external_id(session_factory, Need)["N-001"]
    assert n1.title == "锂电池隔膜涂层技术"
    assert n1.description == "需要 提高隔膜耐热性,PE隔膜"
    assert n1.region == "威海市环翠区"


def test_csv_with_bom_achievements(session_factory) -> None:
    summary = ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=FILES / "achievements.csv")
    assert (summary.inserted, summary.rejected) == (3, 0), format_errors(summary)
    rows = by_external_id(session_factory, Achievement)
    a1 = rows["A-001"]
    assert a1.title == "高效海水淡化膜材料"
    assert a1.abstract == "反渗透膜\n第二行"  # line breaks kept
    assert a1.keywords == ["海水淡化", "膜材料", "反渗透"]
    assert a1.maturity_stage is MaturityStage.pilot
    assert a1.transfer_modes == ["transfer", "licence"]
    assert a1.price_yuan == Decimal("500000.00")
    assert a1.patent_numbers == ["ZL201910123456.7", "ZL202010654321.X"]
    assert rows["A-002"].price_yuan is None and rows["A-002"].patent_numbers == []
    assert rows["A-003"].price_yuan == Decimal("12.30") and rows["A-003"].owner_id is None
    with session_factory() as session:
        org = session.get(Organisation, a1.owner_id)
    assert (org.name, org.kind, org.in_weihai) == ("山东大学(威海)", OrgKind.university, True)


def test_csv_in_gbk(session_factory, tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("编号,标题,预算\nG-1,海水淡化膜,12.5万\n".encode("gbk"))
    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=path)
    assert summary.inserted == 1
    need = by_external_id(session_factory, Need)["G-1"]
    assert (need.title, need.budget_yuan) == ("海水淡化膜", Decimal("125000.00"))


def test_xlsx_with_chinese_headers_and_typed_cells(session_factory, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["编号", "需求名称", "需求描述", "预算（万元）", "截止日期", "企业名称"])
    sheet.append([1001, "船用發動機減振", "降低振動", 12.3, datetime(2026, 3, 31), "威海船舶公司"])
    sheet.append([1002, "缺少预算的需求", None, None, "2026-04-30", None])
    sheet.append([1003, "坏日期", None, None, "31/04/2026", None])
    path = tmp_path / "需求.xlsx"
    book.save(path)

    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=path)

    assert (summary.inserted, summary.rejected) == (2, 1)
    assert summary.errors == [RowError(4, "deadline", "expected a date as YYYY-MM-DD, got '31/04/2026'")]
    needs = by_external_id(session_factory, Need)
    assert needs["1001"].title == "船用发动机减振"
    assert needs["1001"].budget_yuan == Decimal("123000.00")  # 12.3 万元, exactly
    assert needs["1001"].deadline == date(2026, 3, 31)
    assert needs["1002"].deadline == date(2026, 4, 30)
    assert needs["1001"].source == "需求"


def test_same_file_twice_changes_nothing(session_factory) -> None:
    first = ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=FILES / "achievements.csv")
    before = snapshot(session_factory, Achievement)
    second = ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=FILES / "achievements.csv")

    assert (second.inserted, second.updated, second.unchanged, second.rejected) == (0, 0, 3, 0)
    assert second.changed_ids == []
    assert second.run_id != first.run_id
    assert snapshot(session_factory, Achievement) == before  # updated_at and content_hash included
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Organisation)) == 2


def test_bad_rows_are_named_stored_and_good_rows_still_land(session_factory) -> None:
    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=FILES / "needs_bad.jsonl")

    assert (summary.inserted, summary.rejected) == (2, 7)
    assert sorted(by_external_id(session_factory, Need)) == ["B-001", "B-007"]
    assert by_external_id(session_factory, Need)["B-007"].budget_yuan == Decimal("0.10")
    got = [(e.row_number, e.field, e.reason) for e in summary.errors]
    expected = [
        (2, "title", "required"),
        (3, "budget_yuan", "not an amount"),
        (4, "budget_yuan", "more than 2 decimal places"),
        (5, "deadline", "expected a date as YYYY-MM-DD"),
        (6, "external_id", "duplicate external_id 'B-001' (first seen in row 1)"),
        (7, None, "malformed JSON"),
        (9, "budget_yuan", "must not be negative"),
    ]
    assert [(n, f) for n, f, _ in got] == [(n, f) for n, f, _ in expected]
    for (_, _, reason), (_, _, want) in zip(got, expected, strict=True):
        assert want in reason

    with session_factory() as session:
        stored = session.scalars(
            select(IngestError).where(IngestError.run_id == summary.run_id).order_by(IngestError.row_number)
        ).all()
        run = session.get(IngestRun, summary.run_id)
    assert [(e.row_number, e.field, e.reason) for e in stored] == got
    assert stored[1].raw == {"external_id": "B-003", "title": "预算错误", "budget_yuan": "abc"}  # raw row kept
    assert stored[5].raw["_unreadable"].startswith('{"external_id": "B-006"')
    assert (run.inserted, run.rejected, run.status) == (2, 7, RunStatus.finished)


def test_changed_title_is_an_update_with_a_new_hash(session_factory, tmp_path: Path) -> None:
    rows = [{"external_id": f"U-{i}", "title": f"成果{i}", "price_yuan": "100"} for i in range(5)]
    path = write_jsonl(tmp_path / "feed.jsonl", rows)
    ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=path)
    before = by_external_id(session_factory, Achievement)

    rows[2]["title"] = "成果2（修訂）"
    write_jsonl(path, rows)
    summary = ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=path)

    after = by_external_id(session_factory, Achievement)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 4)
    assert summary.updated_ids == [before["U-2"].id]
    assert after["U-2"].id == before["U-2"].id
    assert after["U-2"].title == "成果2(修订)"
    assert after["U-2"].content_hash != before["U-2"].content_hash
    assert after["U-2"].updated_at >= before["U-2"].updated_at
    for key in ("U-0", "U-1", "U-3", "U-4"):
        assert (after[key].content_hash, after[key].updated_at) == (before[key].content_hash, before[key].updated_at)


def test_source_precedence_row_over_argument_over_file_stem(session_factory, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "stem.jsonl",
        [
            {"external_id": "S-1", "title": "a", "source": "own"},
            {"external_id": "S-2", "title": "b"},
        ],
    )
    ingest_file(session_factory=session_factory, kind=NEEDS, path=path)
    ingest_file(session_factory=session_factory, kind=NEEDS, path=path, source="given")
    with session_factory() as session:
        pairs = sorted(session.execute(select(Need.source, Need.external_id)).all())
    # The same external_id under another source is another listing.
    assert pairs == [("given", "S-2"), ("own", "S-1"), ("stem", "S-2")]


def test_the_same_id_in_two_sources_is_not_a_duplicate(session_factory) -> None:
    summary = ingest_rows(
        session_factory=session_factory,
        kind=NEEDS,
        source="x",
        location="memory",
        rows=[(1, {"external_id": "1", "title": "a"}), (2, {"external_id": "1", "title": "a", "source": "y"})],
    )
    assert (summary.inserted, summary.rejected) == (2, 0)


def test_small_batches_commit_counts_with_the_rows(session_factory, tmp_path: Path) -> None:
    rows = [{"external_id": f"K-{i}", "title": f"t{i}"} for i in range(7)] + [{"external_id": "K-bad"}]
    path = write_jsonl(tmp_path / "k.jsonl", rows)
    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=path, batch_size=3)
    with session_factory() as session:
        run = session.get(IngestRun, summary.run_id)
        count = session.scalar(select(func.count()).select_from(Need))
    assert (run.inserted, run.rejected, count) == (7, 1, 7)
    assert (summary.inserted, summary.rejected) == (7, 1)


def test_money_stays_decimal_through_the_database(session_factory, tmp_path: Path) -> None:
    path = tmp_path / "money.jsonl"
    path.write_text(
        '{"external_id": "M-1", "title": "t", "price_yuan": 0.1}\n'
        '{"external_id": "M-2", "title": "t", "price_yuan": 1234567890.12}\n',
        encoding="utf-8",
    )
    ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=path)
    rows = by_external_id(session_factory, Achievement)
    assert rows["M-1"].price_yuan == Decimal("0.10")
    assert rows["M-2"].price_yuan == Decimal("1234567890.12")
    assert all(isinstance(r.price_yuan, Decimal) for r in rows.values())


def test_unknown_extension_fails_before_a_run_starts(session_factory, tmp_path: Path) -> None:
    path = tmp_path / "needs.txt"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(UnsupportedFile, match="needs.txt"):
        ingest_file(session_factory=session_factory, kind=NEEDS, path=path)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(IngestRun)) == 0


def test_format_summary_and_errors(session_factory) -> None:
    summary = ingest_file(session_factory=session_factory, kind=NEEDS, path=FILES / "needs_bad.jsonl")
    assert format_summary(summary) == f"needs: 2 inserted, 0 updated, 0 unchanged, 7 rejected (run {summary.run_id})"
    text = format_errors(summary)
    assert text.splitlines()[0] == "row 2, field title: required"
    assert "row 7: malformed JSON" in text
    assert format_errors(summary, limit=2).splitlines()[-1] == "… and 5 more"


def test_progress_bar_writes_to_stderr(session_factory, capsys) -> None:
    ingest_file(session_factory=session_factory, kind=NEEDS, path=FILES / "needs_good.jsonl", progress=True)
    captured = capsys.readouterr()
    assert "4/4" in captured.err
    assert captured.out == ""


def test_reingest_keeps_what_staff_moderated_through_the_api(session_factory, tmp_path: Path) -> None:
    from catalog import service
    from catalog.schemas import NeedUpdate

    src = write_jsonl(
        tmp_path / "needs.jsonl",
        [
            {"external_id": "M-1", "title": "海水淡化膜污染控制", "description": "需解决膜污染问题"},
            {"external_id": "M-2", "title": "刺参育苗水质监测", "visibility": "public"},
        ],
    )
    ingest_file(session_factory=session_factory, kind=NEEDS, path=src)
    rows = by_external_id(session_factory, Need)
    with session_factory() as session:
        service.withdraw_need(session=session, need_id=rows["M-1"].id)
        service.update_need(session=session, need_id=rows["M-2"].id, data=NeedUpdate(visibility=Visibility.private))
        session.commit()

    again = ingest_file(session_factory=session_factory, kind=NEEDS, path=src)
    rows = by_external_id(session_factory, Need)
    assert rows["M-1"].status == ListingStatus.withdrawn, "a re-ingest never republishes what staff withdrew"
    assert rows["M-2"].visibility == Visibility.private, "nor makes a private need public"
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2), "moderation alone is no content change"

    # A content change from the source still lands, moderation still kept.
    src = write_jsonl(
        tmp_path / "needs.jsonl",
        [
            {"external_id": "M-1", "title": "海水淡化膜污染控制技术", "description": "需解决膜污染问题"},
            {"external_id": "M-2", "title": "刺参育苗水质监测", "visibility": "public"},
        ],
    )
    third = ingest_file(session_factory=session_factory, kind=NEEDS, path=src)
    rows = by_external_id(session_factory, Need)
    assert (third.updated, third.unchanged) == (1, 1)
    assert rows["M-1"].title == "海水淡化膜污染控制技术" and rows["M-1"].status == ListingStatus.withdrawn


def test_api_and_ingest_hash_content_the_same_way(session_factory, tmp_path: Path) -> None:
    from catalog import service
    from catalog.schemas import AchievementUpdate

    src = write_jsonl(
        tmp_path / "a.jsonl",
        [{"external_id": "H-1", "title": "碳纤维模压成型", "keywords": ["碳纤维"], "price_yuan": "12.3"}],
    )
    ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=src)
    row = by_external_id(session_factory, Achievement)["H-1"]
    with session_factory() as session:
        # Writes the values the row already has: the API's hash must equal the one ingest computed.
        written = service.update_achievement(
            session=session, achievement_id=row.id, data=AchievementUpdate(title="碳纤维模压成型")
        )
        assert written.row.content_hash == row.content_hash
        session.commit()
    again = ingest_file(session_factory=session_factory, kind=ACHIEVEMENTS, path=src)
    assert again.unchanged == 1 and again.updated == 0
