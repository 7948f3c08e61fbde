"""Readers give the row numbers a person sees, survive bad lines, and refuse unknown file types clearly."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from core.errors import DomainError
from ingest.readers import Unreadable, UnsupportedFile, count_rows, read_rows

FILES = Path(__file__).parent / "files"


def test_jsonl_line_numbers_skip_blank_lines_and_keep_bad_lines_as_unreadable() -> None:
    rows = list(read_rows(FILES / "needs_bad.jsonl"))
    assert [n for n, _ in rows] == list(range(1, 10))
    bad = dict(rows)[7]
    assert isinstance(bad, Unreadable)
    assert "malformed JSON" in bad.reason
    assert '"B-006"' in bad.text

    good = dict(read_rows(FILES / "needs_good.jsonl"))
    assert sorted(good) == [1, 2, 3, 5]  # line 4 is blank
    assert good[5] == {"external_id": "N-004", "title": "只有标题"}


def test_jsonl_float_literals_are_read_exactly_as_decimal(tmp_path: Path) -> None:
    path = tmp_path / "money.jsonl"
    path.write_text('{"external_id": "m", "title": "t", "budget_yuan": 0.1}\n[1, 2]\n', encoding="utf-8")
    rows = dict(read_rows(path))
    assert rows[1]["budget_yuan"] == Decimal("0.1")
    assert isinstance(rows[1]["budget_yuan"], Decimal)
    assert isinstance(rows[2], Unreadable) and "JSON object" in rows[2].reason


def test_csv_with_bom_uses_sheet_row_numbers_and_clean_headers() -> None:
    rows = list(read_rows(FILES / "achievements.csv"))
    # The quoted abstract spans two lines but is one sheet row: A-002 is still row 3.
    assert [(n, raw["external_id"]) for n, raw in rows] == [(2, "A-001"), (3, "A-002"), (4, "A-003")]
    first = rows[0][1]
    assert "external_id" in first  # no BOM glued to the first header
    assert first["abstract"] == "反滲透膜\n第二行"
    assert count_rows(FILES / "achievements.csv") == 3


def test_csv_in_gbk_is_read_by_fallback(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    path.write_bytes("external_id,title\nG-1,海水淡化膜\n\nG-2,轴承热处理\n".encode("gbk"))
    assert list(read_rows(path)) == [
        (2, {"external_id": "G-1", "title": "海水淡化膜"}),
        (4, {"external_id": "G-2", "title": "轴承热处理"}),
    ]


def test_xlsx_first_sheet_header_row_and_typed_cells(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["external_id", "title", "budget_yuan", "deadline", None])
    sheet.append([1001, "第一行", 12.3, date(2026, 5, 1), "no header: dropped"])
    sheet.append([None, None, None, None, None])
    sheet.append(["X-3", "第三行", None, None, None])
    other = book.create_sheet("ignored")
    other.append(["external_id", "title"])
    other.append(["nope", "second sheet"])
    path = tmp_path / "book.xlsx"
    book.save(path)

    rows = list(read_rows(path))
    assert [n for n, _ in rows] == [2, 4]
    assert rows[0][1] == {"external_id": 1001, "title": "第一行", "budget_yuan": 12.3, "deadline": date(2026, 5, 1)}
    assert rows[1][1]["external_id"] == "X-3"


@pytest.mark.parametrize("name", ["notes.txt", "old.xls", "noext"])
def test_unknown_extension_is_a_clear_domain_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("x", encoding="utf-8")
    with pytest.raises(UnsupportedFile) as caught:
        read_rows(path)
    assert isinstance(caught.value, DomainError)
    assert name in caught.value.detail
    assert ".jsonl" in caught.value.detail  # says what would have worked
    if name.endswith(".xls"):
        assert "save it as .xlsx" in caught.value.detail


def test_a_file_named_xlsx_that_is_not_a_workbook_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "fake.xlsx"
    path.write_text("external_id,title\n1,a\n", encoding="utf-8")
    with pytest.raises(UnsupportedFile, match="not an Excel .xlsx workbook"):
        read_rows(path)


def test_csv_that_is_neither_utf8_nor_gbk_is_refused_up_front(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"external_id,title\n1,\x81\x20\xff\xfe\n")
    with pytest.raises(UnsupportedFile, match="neither UTF-8 nor GBK"):
        read_rows(path)
