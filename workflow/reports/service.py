"""Yearly reports per organisation (measures 3 and 9: the platform's records as the evidence for evaluating agencies
and units): leads pushed to it and its answers by code, its listings pushed to others, deals it is party to by
state, contracts signed and payments made in the year, and the subsidies the ledger gives it.

Every figure is a count or a sum over the platform's own rows for the calendar year; subsidies come from the ledger
(workflow/ledger), so they are the engine's.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core.errors import NotFound
from models.base import year_span
from models.tables import (
    Achievement,
    Contract,
    Deal,
    DealState,
    IngestKind,
    Lead,
    LeadResponse,
    Need,
    Organisation,
    OrgKind,
    Payment,
)
from subsidy.schemas import format_yuan
from workflow.ledger import service as ledger
from workflow.xlsx import row as xlsx_row

UNANSWERED = "unanswered"
ZERO = Decimal(0)


def _empty(org: Organisation, year: int) -> dict[str, Any]:
    return {
        "organisation_id": org.id,
        "name": org.name,
        "kind": str(org.kind),
        "region": org.region,
        "year": year,
        "leads_received": 0,
        "responses": {**{str(r): 0 for r in LeadResponse}, UNANSWERED: 0},
        "listings_pushed": 0,
        "listings_pushed_interest": 0,
        "deals_opened": 0,
        "deals_by_state": {str(s): 0 for s in DealState},
        "deals_as": {"buyer": 0, "seller": 0, "agency": 0},
        "contracts_signed": 0,
        "contract_amount_yuan": ZERO,
        "payments": 0,
        "paid_yuan": ZERO,
        "subsidy_yuan": ZERO,
        "subsidy_by_measure": {},
    }


def yearly(
    session: Session, year: int, *, kind: OrgKind | None = None, organisation_id: int | None = None
) -> list[dict[str, Any]]:
    """One row per organisation (of a kind, or one organisation) with the year's figures."""
    stmt = select(Organisation).order_by(Organisation.id)
    if kind is not None:
        stmt = stmt.where(Organisation.kind == kind)
    if organisation_id is not None:
        stmt = stmt.where(Organisation.id == organisation_id)
    orgs = list(session.scalars(stmt))
    if organisation_id is not None and not orgs:
        raise NotFound(f"organisation {organisation_id} not found")
    rows = {o.id: _empty(o, year) for o in orgs}
    if not rows:
        return []
    start, end = year_span(year)
    ids = list(rows)

    # Leads the organisation received in the year, and its answers.
    for org_id, response, n in session.execute(
        select(Lead.organisation_id, Lead.response, func.count())
        .where(Lead.organisation_id.in_(ids), Lead.created_at >= start, Lead.created_at < end)
        .group_by(Lead.organisation_id, Lead.response)
    ):
        rows[org_id]["leads_received"] += n
        rows[org_id]["responses"][str(response) if response else UNANSWERED] += n

    # Its own listings pushed to others in the year (and how many of those found interest).
    for model, kind_ in ((Need, IngestKind.needs), (Achievement, IngestKind.achievements)):
        for owner, response, n in session.execute(
            select(model.owner_id, Lead.response, func.count())
            .join(model, and_(Lead.pushed_kind == kind_, Lead.pushed_id == model.id))
            .where(model.owner_id.in_(ids), Lead.created_at >= start, Lead.created_at < end)
            .group_by(model.owner_id, Lead.response)
        ):
            if owner is None:
                continue
            rows[owner]["listings_pushed"] += n
            if response in (LeadResponse.interested, LeadResponse.already_in_contact):
                rows[owner]["listings_pushed_interest"] += n

    # Deals it is party to: opened in the year, by state now, and in which role.
    party = or_(Deal.buyer_id.in_(ids), Deal.seller_id.in_(ids), Deal.agency_id.in_(ids))
    deals = list(session.scalars(select(Deal).where(party, Deal.created_at >= start, Deal.created_at < end)))
    for deal in deals:
        for role, party_id in (("buyer", deal.buyer_id), ("seller", deal.seller_id), ("agency", deal.agency_id)):
            if party_id is not None and party_id in rows:
                row = rows[party_id]
                row["deals_opened"] += 1
                row["deals_by_state"][str(deal.state)] += 1
                row["deals_as"][role] += 1

    # Contracts signed and payments made in the year, on deals it is party to (whenever they were opened).
    first, last = date(year, 1, 1), date(year, 12, 31)
    for deal, contract in session.execute(
        select(Deal, Contract)
        .join(Contract, Contract.deal_id == Deal.id)
        .where(party, Contract.signed_on.between(first, last))
    ).tuples():
        for org_id in _parties(deal, rows):
            rows[org_id]["contracts_signed"] += 1
            rows[org_id]["contract_amount_yuan"] += contract.amount_yuan
    for deal, payment in session.execute(
        select(Deal, Payment)
        .join(Payment, Payment.deal_id == Deal.id)
        .where(party, Payment.paid_on.between(first, last))
    ).tuples():
        for org_id in _parties(deal, rows):
            rows[org_id]["payments"] += 1
            rows[org_id]["paid_yuan"] += payment.amount_yuan

    # Subsidies: the ledger's items for the year (the engine's amounts).
    by_party: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for item in ledger.compute(session, year)["items"]:
        if item["party_id"] in rows:
            measures = by_party[item["party_id"]]
            measures[item["measure"]] = measures.get(item["measure"], ZERO) + Decimal(item["amount_yuan"])
    for org_id, measures in by_party.items():
        rows[org_id]["subsidy_by_measure"] = {m: format_yuan(v) for m, v in sorted(measures.items())}
        rows[org_id]["subsidy_yuan"] = sum(measures.values(), ZERO)

    out = []
    for row in rows.values():
        for key in ("contract_amount_yuan", "paid_yuan", "subsidy_yuan"):
            row[key] = format_yuan(row[key])
        out.append(row)
    return out


def _parties(deal: Deal, rows: dict[int, Any]) -> list[int]:
    return [o for o in {deal.buyer_id, deal.seller_id, deal.agency_id} if o is not None and o in rows]


COLUMNS: list[tuple[str, str]] = [
    ("name", "单位"),
    ("kind", "类型"),
    ("region", "区市"),
    ("leads_received", "收到线索"),
    ("responses.interested", "有意向"),
    ("responses.already_in_contact", "已在联系"),
    ("responses.not_relevant", "不相关"),
    ("responses.too_early", "阶段过早"),
    ("responses.benefit_unclear", "效益不明"),
    ("responses.route_unclear", "路径不清"),
    ("responses.description_unclear", "描述不清"),
    ("responses.unanswered", "未反馈"),
    ("listings_pushed", "本单位发布被推送"),
    ("deals_opened", "新建交易"),
    ("deals_by_state.landed", "已落地"),
    ("contracts_signed", "签约合同数"),
    ("contract_amount_yuan", "合同金额（元）"),
    ("payments", "支付笔数"),
    ("paid_yuan", "支付金额（元）"),
    ("subsidy_yuan", "补助金额（元）"),
]


def _value(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if path.endswith("_yuan") and value is not None:
        return Decimal(value)
    return value


def xlsx(rows: list[dict[str, Any]], year: int) -> bytes:
    """The report as a workbook: one row per organisation, money as numbers with two decimals."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"{year}年度"
    sheet.append(xlsx_row([label for _, label in COLUMNS]))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(xlsx_row([_value(row, path) for path, _ in COLUMNS]))
    for index, (path, _) in enumerate(COLUMNS, start=1):
        if path.endswith("_yuan"):
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = "#,##0.00"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
