"""Demand lists and key-achievement lists (measure 1: 企业产业技术需求清单, 产业链共性技术难题, 重点成果):
compiled by staff from published listings for a period, marked up (industry chain, common problems and their
co-signers, notes), exported to XLSX in the layout a bureau circulates (a cover sheet with counts, one sheet per
field), and imported back after offline editing with an error per bad row while the good rows apply. Every change
keeps the items it replaced as a numbered version."""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from catalog.indexing import MODELS
from core.errors import InvalidInput, NotFound
from ingest.readers import Unreadable
from models.tables import (
    Achievement,
    CatalogueList,
    IngestKind,
    ListingStatus,
    ListItem,
    ListVersion,
    Need,
    Visibility,
)
from workflow.xlsx import row as xlsx_row

UNFILED = "未分类"
COVER = "封面"
# The item sheets' columns: header → item attribute. 编号 is the list item's id (empty on a row added offline).
COLUMNS: list[tuple[str, str]] = [
    ("编号", "id"),
    ("清单对象编号", "listing_id"),
    ("标题", "title"),
    ("领域", "field"),
    ("区市", "region"),
    ("产业链", "industry_chain"),
    ("共性难题", "common_problem"),
    ("联合提出单位", "co_signers"),
    ("备注", "note"),
]
EDITABLE = ("field", "region", "industry_chain", "common_problem", "co_signers", "note")
YES = {"是", "Y", "y", "yes", "true", "1", "√"}
NO = {"否", "N", "n", "no", "false", "0", ""}
# Excel sheet names: at most 31 characters, none of []:*?/\
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _model(kind: IngestKind) -> type[Need] | type[Achievement]:
    return MODELS[kind]


def compile_list(
    *,
    session: Session,
    kind: IngestKind,
    title: str,
    period: str,
    fields: list[str],
    regions: list[str],
    since: date | None,
    listing_ids: list[int],
    actor: Principal,
) -> CatalogueList:
    """A new list from the published, public listings that match (by field, region, published since), or the given
    ones; each item starts with its listing's field and region."""
    model = _model(kind)
    stmt = select(model).where(model.status == ListingStatus.published).order_by(model.id)
    if kind == IngestKind.needs:
        stmt = stmt.where(Need.visibility == Visibility.public)
    if listing_ids:
        stmt = stmt.where(model.id.in_(listing_ids))
    if fields:
        stmt = stmt.where(model.field.in_(fields))
    if regions and kind == IngestKind.needs:
        stmt = stmt.where(Need.region.in_(regions))
    if since is not None:
        stmt = stmt.where(model.created_at >= since)
    rows: list[Any] = list(session.scalars(stmt))
    found = {r.id for r in rows}
    missing = [i for i in listing_ids if i not in found]
    if missing:
        raise InvalidInput(f"not published (or not public): {kind} {', '.join(map(str, missing))}", field="listing_ids")
    catalogue = CatalogueList(kind=kind, title=title, period=period, created_by=actor.user_id)
    session.add(catalogue)
    session.flush()
    for row in rows:
        session.add(
            ListItem(list_id=catalogue.id, listing_id=row.id, field=row.field, region=getattr(row, "region", None))
        )
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="list.compile",
        target_kind="list",
        target_id=catalogue.id,
        detail={"items": len(rows)},
    )
    return catalogue


def get_list(*, session: Session, list_id: int) -> CatalogueList:
    found = session.get(CatalogueList, list_id)
    if found is None:
        raise NotFound(f"list {list_id} not found")
    return found


def list_lists(*, session: Session) -> list[CatalogueList]:
    return list(session.scalars(select(CatalogueList).order_by(CatalogueList.id.desc())))


def items_of(session: Session, catalogue: CatalogueList) -> list[tuple[ListItem, str]]:
    """The list's items in order, each with its listing's title."""
    items = list(session.scalars(select(ListItem).where(ListItem.list_id == catalogue.id).order_by(ListItem.id)))
    model = _model(catalogue.kind)
    ids = {i.listing_id for i in items}
    titles: dict[int, str] = {}
    if ids:
        found: list[Any] = list(session.scalars(select(model).where(model.id.in_(ids))))
        for row in found:
            shown = row.status == ListingStatus.published and getattr(row, "visibility", Visibility.public) == "public"
            titles[row.id] = row.title if shown else "（已撤回或不公开）"  # a list is circulated: never a private title
    return [(i, titles.get(i.listing_id, "")) for i in items]


def _snapshot(session: Session, catalogue: CatalogueList, reason: str, actor: Principal) -> None:
    items = [
        {"id": i.id, "listing_id": i.listing_id, **{k: getattr(i, k) for k in EDITABLE}}
        for i, _ in items_of(session, catalogue)
    ]
    session.add(
        ListVersion(list_id=catalogue.id, version=catalogue.version, items=items, reason=reason, created_by=actor.actor)
    )
    catalogue.version += 1
    session.flush()


def versions(*, session: Session, list_id: int) -> list[ListVersion]:
    stmt = select(ListVersion).where(ListVersion.list_id == list_id).order_by(ListVersion.version.desc())
    return list(session.scalars(stmt))


def _sheet_name(name: str, taken: set[str]) -> str:
    base = _SHEET_BAD.sub("_", name)[:28] or UNFILED
    out, n = base, 2
    while out in taken:
        out, n = f"{base}~{n}", n + 1
    taken.add(out)
    return out


def export_xlsx(session: Session, catalogue: CatalogueList) -> bytes:
    """The list as a bureau circulates it: a cover sheet (title, period, version, counts per field and of common
    problems), then one sheet per field with one row per item."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    rows = items_of(session, catalogue)
    by_field: dict[str, list[tuple[ListItem, str]]] = {}
    for item, title in rows:
        by_field.setdefault(item.field or UNFILED, []).append((item, title))
    book = Workbook()
    cover = book.active
    assert cover is not None
    cover.title = COVER
    kind_name = "企业产业技术需求清单" if catalogue.kind == IngestKind.needs else "重点推介科技成果清单"
    cover.append(xlsx_row([catalogue.title]))
    cover["A1"].font = Font(bold=True, size=14)
    cover.append(xlsx_row(["清单类型", kind_name]))
    cover.append(xlsx_row(["期间", catalogue.period]))
    cover.append(xlsx_row(["清单编号", catalogue.id]))
    cover.append(xlsx_row(["版本", catalogue.version]))
    cover.append(xlsx_row(["条目总数", len(rows)]))
    cover.append(xlsx_row(["其中产业链共性技术难题", sum(1 for i, _ in rows if i.common_problem)]))
    cover.append(xlsx_row([]))
    cover.append(xlsx_row(["领域", "条目数"]))
    for name, group in sorted(by_field.items()):
        cover.append(xlsx_row([name, len(group)]))
    cover.append(xlsx_row([]))
    cover.append(
        xlsx_row(
            [
                "说明",
                "各领域一页；修改后可导回平台。「编号」为空的行为新增条目（填写清单对象编号）；共性难题填“是”或“否”。",
            ]
        )
    )
    taken = {COVER}
    for name, group in sorted(by_field.items()):
        sheet = book.create_sheet(_sheet_name(name, taken))
        sheet.append(xlsx_row([header for header, _ in COLUMNS]))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for item, title in group:
            sheet.append(
                xlsx_row(
                    [
                        item.id,
                        item.listing_id,
                        title,
                        item.field or "",
                        item.region or "",
                        item.industry_chain or "",
                        "是" if item.common_problem else "否",
                        item.co_signers,
                        item.note,
                    ]
                )
            )
        for column, width in zip("ABCDEFGHI", (8, 12, 40, 14, 10, 16, 10, 30, 30), strict=True):
            sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass
class ImportReport:
    updated: int = 0
    added: int = 0
    unchanged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, version: int) -> dict[str, Any]:
        return {
            "version": version,
            "updated": self.updated,
            "added": self.added,
            "unchanged": self.unchanged,
            "errors": self.errors,
            "rows": self.rows,
        }


class _RowError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _flag(value: Any) -> bool:
    text = _text(value)
    if text in YES:
        return True
    if text in NO:
        return False
    raise _RowError("共性难题", f"{text!r} is neither 是 nor 否")


def _int(value: Any, column: str) -> int | None:
    text = _text(value)
    if not text:
        return None
    try:
        number = int(float(text)) if re.fullmatch(r"\d+(\.0+)?", text) else int(text)
    except ValueError:
        raise _RowError(column, f"{text!r} is not a number") from None
    if not 1 <= number <= 2**31 - 1:
        raise _RowError(column, f"{number} is out of range")
    return number


def _sheet_rows(path: Path) -> list[tuple[str, int, dict[str, Any] | Unreadable]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable workbook is the caller's bad input
        raise InvalidInput(f"not an Excel .xlsx workbook: {exc}", field="file") from None
    out: list[tuple[str, int, dict[str, Any] | Unreadable]] = []
    try:
        for sheet in book.worksheets:
            if sheet.title == COVER:
                continue
            header: list[str] | None = None
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                if header is None:
                    header = [_text(v) for v in values]
                    continue
                if all(v is None or _text(v) == "" for v in values):
                    continue
                out.append((sheet.title, number, dict(zip(header, values, strict=False))))
    finally:
        book.close()
    return out


def import_xlsx(*, session: Session, catalogue: CatalogueList, path: Path, actor: Principal) -> dict[str, Any]:
    """Apply an edited export: rows with an 编号 update that item's editable columns, rows without one add the
    listing named by 清单对象编号; a bad row is reported (sheet, row, column, why) and the others still apply."""
    items = {i.id: i for i, _ in items_of(session, catalogue)}
    on_list = {i.listing_id for i in items.values()}
    model = _model(catalogue.kind)
    report = ImportReport()
    changes: list[tuple[ListItem | None, dict[str, Any], int | None]] = []
    for sheet, number, raw in _sheet_rows(path):
        where = {"sheet": sheet, "row": number}
        if isinstance(raw, Unreadable):
            report.errors.append(where | {"field": None, "reason": raw.reason})
            continue
        try:
            item_id = _int(raw.get("编号"), "编号")
            listing_id = _int(raw.get("清单对象编号"), "清单对象编号")
            values: dict[str, Any] = {
                "field": _text(raw.get("领域")) or None,
                "region": _text(raw.get("区市")) or None,
                "industry_chain": _text(raw.get("产业链")) or None,
                "common_problem": _flag(raw.get("共性难题")),
                "co_signers": _text(raw.get("联合提出单位")),
                "note": _text(raw.get("备注")),
            }
            for key, limit in (("field", 100), ("region", 100), ("industry_chain", 100)):
                if values[key] is not None and len(values[key]) > limit:
                    raise _RowError(key, f"longer than {limit} characters")
            if item_id is not None:
                item = items.get(item_id)
                if item is None:
                    raise _RowError("编号", f"item {item_id} is not on list {catalogue.id}")
                if listing_id is not None and listing_id != item.listing_id:
                    raise _RowError("清单对象编号", f"item {item_id} is listing {item.listing_id}, not {listing_id}")
                changes.append((item, values, None))
            else:
                if listing_id is None:
                    raise _RowError("清单对象编号", "a new row (no 编号) names the listing to add")
                row: Any = session.get(model, listing_id)
                if row is None or row.status != ListingStatus.published:
                    raise _RowError("清单对象编号", f"{catalogue.kind} {listing_id} is not published")
                if getattr(row, "visibility", Visibility.public) != Visibility.public:
                    raise _RowError("清单对象编号", f"{catalogue.kind} {listing_id} is not public")
                if listing_id in on_list:
                    raise _RowError("清单对象编号", f"{catalogue.kind} {listing_id} is already on the list")
                on_list.add(listing_id)
                changes.append((None, values, listing_id))
        except _RowError as exc:
            report.errors.append(where | {"field": exc.field, "reason": exc.reason})
    touched = [
        (item, values, listing_id)
        for item, values, listing_id in changes
        if item is None or any(getattr(item, k) != v for k, v in values.items())
    ]
    report.unchanged = len(changes) - len(touched)
    if touched:
        _snapshot(session, catalogue, "import", actor)
    for item, values, listing_id in touched:
        if item is None:
            assert listing_id is not None
            session.add(ListItem(list_id=catalogue.id, listing_id=listing_id, **values))
            report.added += 1
        else:
            for key, value in values.items():
                setattr(item, key, value)
            report.updated += 1
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="list.import",
        target_kind="list",
        target_id=catalogue.id,
        detail={"updated": report.updated, "added": report.added, "errors": len(report.errors)},
    )
    return report.as_dict(catalogue.version)


def counts(session: Session, catalogue: CatalogueList) -> dict[str, int]:
    """Items per field."""
    return dict(Counter(i.field or UNFILED for i, _ in items_of(session, catalogue)))
