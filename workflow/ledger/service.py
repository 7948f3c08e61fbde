"""The subsidy ledger (补助台账): the subsidy engine applied to the platform's own deals, contracts, payments and
parties for a year, each item traced back through payment → contract → deal → pushed lead → match.

The engine stays the one place the rules live: this module only builds its input from the database (one contract per
deal with a contract, its payments, the organisations' recorded facts) and links its output back to the rows behind
it. Computing is a pure read, so recomputing is idempotent; freezing stores the answer as a numbered version, and
every later computation shows its difference against the newest frozen version.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, NotFound
from models.tables import Call, Contract, Deal, DealState, Lead, Organisation, Payment, SubsidyLedger
from subsidy import service as subsidy
from subsidy.parameters import PolicyParameters, default_parameters
from subsidy.schemas import EvaluateRequest, EvaluateResponse, format_yuan
from workflow.calls.service import call_key, engine_listing
from workflow.evaluations.service import engine_rows
from workflow.ledger.party import PARTY_PREFIX, party_key, party_of
from workflow.xlsx import row as xlsx_row

CONTRACT_PREFIX = "deal-"
CALL_PREFIX = "call-"


def contract_key(deal_id: int) -> str:
    return f"{CONTRACT_PREFIX}{deal_id}"


@dataclass
class Inputs:
    """The engine's request for a year, the rows behind it, and the deals left out (with why)."""

    request: EvaluateRequest
    deals: dict[int, Deal]
    contracts: dict[int, Contract]
    payments: dict[int, list[Payment]]
    organisations: dict[int, Organisation]
    leads: dict[int, Lead]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[int, Call] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)  # "eval-<id>" → (evaluation, carrier)


def build_inputs(session: Session, year: int) -> Inputs:
    """Every deal with a contract signed by the end of `year`, as the engine's contracts; its parties as parties."""
    end = date(year, 12, 31)
    rows = session.execute(
        select(Deal, Contract)
        .join(Contract, Contract.deal_id == Deal.id)
        .where(Contract.signed_on <= end)
        .order_by(Deal.id)
    ).all()
    deals: dict[int, Deal] = {}
    contracts: dict[int, Contract] = {}
    skipped: list[dict[str, Any]] = []
    for deal, contract in rows:
        if deal.state == DealState.lost:
            skipped.append({"deal_id": deal.id, "reason": "the deal is lost (未成交): its contract pays nothing"})
            continue
        if deal.buyer_id is None or deal.seller_id is None:
            missing = "buyer (the need's owner)" if deal.buyer_id is None else "seller (the achievement's owner)"
            skipped.append({"deal_id": deal.id, "reason": f"no {missing} is recorded: the rules need both parties"})
            continue
        if deal.buyer_id == deal.seller_id:
            skipped.append({"deal_id": deal.id, "reason": "buyer and seller are the same organisation"})
            continue
        deals[deal.id] = deal
        contracts[deal.id] = contract
    payments: dict[int, list[Payment]] = {deal_id: [] for deal_id in deals}
    if deals:
        for payment in session.scalars(
            select(Payment).where(Payment.deal_id.in_(deals)).order_by(Payment.paid_on, Payment.id)
        ):
            payments[payment.deal_id].append(payment)
    # 揭榜 calls whose measure-5 subsidy was decided in the year (at award for conversion, at acceptance for tackling).
    calls: dict[int, Call] = {}
    listings: list[dict[str, Any]] = []
    for call in session.scalars(select(Call).where(Call.recipient_id.is_not(None)).order_by(Call.id)):
        listing = engine_listing(call)
        if listing is not None and listing["decided_on"].year == year:
            calls[call.id] = call
            listings.append({"id": call_key(call.id), **listing})
    org_ids = {o for d in deals.values() for o in (d.buyer_id, d.seller_id, d.agency_id) if o is not None}
    org_ids |= {c.recipient_id for c in calls.values() if c.recipient_id is not None}
    # Carriers' performance evaluations decided in the year (measures 2, 3, 6, 9.2, 10).
    carrier_rows, evaluations = engine_rows(session, year)
    org_ids |= {carrier.organisation_id for _, carrier in evaluations.values()}
    organisations = {
        o.id: o
        for o in session.scalars(select(Organisation).where(Organisation.id.in_(org_ids)).order_by(Organisation.id))
    }
    lead_ids = {d.lead_id for d in deals.values() if d.lead_id is not None}
    leads = {lead.id: lead for lead in session.scalars(select(Lead).where(Lead.id.in_(lead_ids)))} if lead_ids else {}
    request = EvaluateRequest.model_validate(
        {
            "year": year,
            "parties": [party_of(o) for o in organisations.values()],
            "contracts": [_contract(deals[i], contracts[i], payments[i], end) for i in deals],
            "listings": listings,
            **carrier_rows,
        }
    )
    return Inputs(request, deals, contracts, payments, organisations, leads, skipped, calls, evaluations)


def _contract(deal: Deal, contract: Contract, payments: Sequence[Payment], end: date) -> dict[str, Any]:
    assert deal.buyer_id is not None and deal.seller_id is not None
    registered = bool(contract.registration_no) and contract.registered_on is not None and contract.registered_on <= end
    return {
        "id": contract_key(deal.id),
        "type": str(contract.type),
        "buyer": party_key(deal.buyer_id),
        "seller": party_key(deal.seller_id),
        "agency": party_key(deal.agency_id) if deal.agency_id is not None else None,
        "registered": registered,
        "signed_on": contract.signed_on,
        "amount_yuan": contract.amount_yuan,
        "payments": [{"paid_on": p.paid_on, "amount_yuan": p.amount_yuan} for p in payments],
    }


def compute(session: Session, year: int, params: PolicyParameters | None = None) -> dict[str, Any]:
    """The ledger of `year` as it stands (a pure read): items linked to their rows, the total, the rejections, the
    deals left out, and the difference against the newest frozen version of the year."""
    inputs = build_inputs(session, year)
    answer = subsidy.evaluate(request=inputs.request, params=params or default_parameters())
    items = [_item(item.model_dump(mode="json"), inputs, year) for item in answer.items]
    frozen = latest_frozen(session, year)
    return {
        "year": year,
        "policy": answer.policy.model_dump(mode="json"),
        "items": items,
        "total_yuan": format_yuan(answer.totals.total_yuan),
        "by_measure": {k: format_yuan(v) for k, v in answer.totals.by_measure.items()},
        "rejections": [_rejection(r.model_dump(mode="json")) for r in answer.rejections],
        "pending": [_rejection(p.model_dump(mode="json")) for p in answer.pending],
        "skipped": inputs.skipped,
        "frozen": _version(frozen) if frozen is not None else None,
        "diff": diff(frozen.items, items) if frozen is not None else [],
    }


def _org_id(key: str) -> int | None:
    return int(key.removeprefix(PARTY_PREFIX)) if key.startswith(PARTY_PREFIX) else None


def _deal_id(key: str) -> int | None:
    return int(key.removeprefix(CONTRACT_PREFIX)) if key.startswith(CONTRACT_PREFIX) else None


def _item(item: dict[str, Any], inputs: Inputs, year: int) -> dict[str, Any]:
    party_id = _org_id(item["party"])
    org = inputs.organisations.get(party_id) if party_id is not None else None
    deal_ids = [d for d in (_deal_id(s) for s in item["sources"]) if d is not None and d in inputs.deals]
    links = []
    for deal_id in deal_ids:
        deal, contract = inputs.deals[deal_id], inputs.contracts[deal_id]
        lead = inputs.leads.get(deal.lead_id) if deal.lead_id is not None else None
        links.append(
            {
                "deal_id": deal_id,
                "deal_state": str(deal.state),
                "contract": {
                    "type": str(contract.type),
                    "amount_yuan": format_yuan(contract.amount_yuan),
                    "signed_on": contract.signed_on.isoformat(),
                    "registration_no": contract.registration_no,
                    "registered_on": contract.registered_on.isoformat() if contract.registered_on else None,
                },
                "payments": [
                    {"id": p.id, "paid_on": p.paid_on.isoformat(), "amount_yuan": format_yuan(p.amount_yuan)}
                    for p in inputs.payments[deal_id]
                    if p.paid_on.year == year
                ],
                "need_id": deal.need_id,
                "achievement_id": deal.achievement_id,
                "lead_id": deal.lead_id,
                "match": (
                    {
                        "batch_id": lead.batch_id,
                        "score": lead.score,
                        "probability": lead.probability,
                        "strength": lead.strength,
                        "ranker_version": lead.ranker_version,
                        "reasons": lead.reasons,
                    }
                    if lead is not None
                    else None
                ),
            }
        )
    for call_id in (_call_id(s) for s in item["sources"]):
        call = inputs.calls.get(call_id) if call_id is not None else None
        if call is None:
            continue
        if call.deal_id is not None:
            deal_ids.append(call.deal_id)
        links.append(
            {
                "call_id": call.id,
                "deal_id": call.deal_id,
                "call_type": str(call.call_type),
                "posted_amount_yuan": format_yuan(call.posted_amount_yuan),
                "awarded_on": call.awarded_on.isoformat() if call.awarded_on else None,
                "accepted_on": call.accepted_on.isoformat() if call.accepted_on else None,
                "transaction_yuan": format_yuan(call.transaction_yuan) if call.transaction_yuan is not None else None,
                "lead_id": None,
                "payments": [],
                "match": None,
            }
        )
    for source in item["sources"]:
        if source in inputs.evaluations:
            evaluation, carrier = inputs.evaluations[source]
            links.append(
                {
                    "evaluation_id": evaluation.id,
                    "carrier_id": carrier.id,
                    "carrier": carrier.name,
                    "carrier_kind": str(carrier.kind),
                    "year": evaluation.year,
                    "grade": evaluation.grade,
                    "decided_on": evaluation.decided_on.isoformat(),
                    "evidence": evaluation.evidence,
                    "deal_id": None,
                    "lead_id": None,
                    "payments": [],
                    "match": None,
                }
            )
    return {
        "measure": item["measure"],
        "clause": item["clause"],
        "title": item["title"],
        "party_id": party_id,
        "party_name": org.name if org is not None else item["party"],
        "amount_yuan": item["amount_yuan"],
        "basis_yuan": item["basis_yuan"],
        "ceiling_yuan": item.get("ceiling_yuan"),
        "ceiling_bound": item.get("ceiling_bound"),
        "deal_ids": deal_ids,
        "lead_ids": [link["lead_id"] for link in links if link["lead_id"] is not None],
        "links": links,
        "parts": item.get("parts", []),
        "trace": item["trace"],
    }


def _call_id(key: str) -> int | None:
    return int(key.removeprefix(CALL_PREFIX)) if key.startswith(CALL_PREFIX) else None


def _rejection(rejection: dict[str, Any]) -> dict[str, Any]:
    return rejection | {"party_id": _org_id(rejection["party"]), "deal_id": _deal_id(rejection["source"])}


def diff(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (measure, party): the frozen amount, the amount now and the change, where they differ."""
    old = {(i["measure"], i["party_id"]): Decimal(i["amount_yuan"]) for i in before}
    new = {(i["measure"], i["party_id"]): Decimal(i["amount_yuan"]) for i in after}
    out = []
    for key in sorted(old.keys() | new.keys(), key=lambda k: (k[0], k[1] or 0)):
        was, now = old.get(key, Decimal(0)), new.get(key, Decimal(0))
        if was != now:
            out.append(
                {
                    "measure": key[0],
                    "party_id": key[1],
                    "frozen_yuan": format_yuan(was),
                    "now_yuan": format_yuan(now),
                    "change_yuan": format_yuan(now - was),
                }
            )
    return out


def latest_frozen(session: Session, year: int) -> SubsidyLedger | None:
    """The newest frozen version of a year's ledger."""
    stmt = select(SubsidyLedger).where(SubsidyLedger.year == year).order_by(SubsidyLedger.version.desc()).limit(1)
    return session.scalars(stmt).first()


def _version(ledger: SubsidyLedger) -> dict[str, Any]:
    return {
        "id": ledger.id,
        "version": ledger.version,
        "params_version": ledger.params_version,
        "total_yuan": format_yuan(ledger.total_yuan),
        "frozen_by": ledger.frozen_by,
        "frozen_at": ledger.frozen_at.isoformat(),
        "note": ledger.note,
    }


def freeze(
    *, session: Session, year: int, actor: Principal, note: str = "", params: PolicyParameters | None = None
) -> SubsidyLedger:
    """Approve the year's ledger as it stands now as its next version (the items, the total and the engine's input)."""
    params = params or default_parameters()
    inputs = build_inputs(session, year)
    answer: EvaluateResponse = subsidy.evaluate(request=inputs.request, params=params)
    items = [_item(item.model_dump(mode="json"), inputs, year) for item in answer.items]
    version = (session.scalar(select(func.max(SubsidyLedger.version)).where(SubsidyLedger.year == year)) or 0) + 1
    ledger = SubsidyLedger(
        year=year,
        version=version,
        params_version=answer.policy.version,
        total_yuan=answer.totals.total_yuan,
        items=items,
        request=inputs.request.model_dump(mode="json"),
        note=note,
        frozen_by=actor.actor,
    )
    try:
        with session.begin_nested():
            session.add(ledger)
            session.flush()
    except IntegrityError:
        raise Conflict(f"another version of {year} was frozen at the same moment; look at it, then retry") from None
    audit.record(
        session=session,
        actor=actor,
        action="ledger.freeze",
        target_kind="subsidy_ledger",
        target_id=ledger.id,
        detail={"year": year, "version": version, "total_yuan": format_yuan(ledger.total_yuan)},
    )
    return ledger


def versions(*, session: Session, year: int) -> list[dict[str, Any]]:
    """Every frozen version of a year, newest first."""
    stmt = select(SubsidyLedger).where(SubsidyLedger.year == year).order_by(SubsidyLedger.version.desc())
    return [_version(v) for v in session.scalars(stmt)]


def get_version(*, session: Session, year: int, version: int) -> SubsidyLedger:
    ledger = session.scalar(select(SubsidyLedger).where(SubsidyLedger.year == year, SubsidyLedger.version == version))
    if ledger is None:
        raise NotFound(f"no frozen ledger version {version} for {year}")
    return ledger


def chinese_title(title: str) -> str:
    """A measure's Chinese name: the parenthesised part of its parameter-file title, else the title."""
    found = re.search(r"\(([^()]*)\)\s*$", title)
    return found.group(1) if found else title


def xlsx(ledger: dict[str, Any]) -> bytes:
    """The ledger as a workbook for the public notice (公示): one row per item; a second sheet with every trace."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "公示"
    sheet.append(xlsx_row([f"{ledger['year']} 年度科技成果转化补助拟支持名单（{ledger['policy']['title']}）"]))
    sheet["A1"].font = Font(bold=True)
    header = ["序号", "单位名称", "措施", "条款", "补助项目", "补助金额（元）", "计算基数（元）", "对应交易"]
    sheet.append(xlsx_row(header))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for n, item in enumerate(ledger["items"], 1):
        sheet.append(
            xlsx_row(
                [
                    n,
                    item["party_name"],
                    item["measure"],
                    item["clause"],
                    chinese_title(item["title"]),
                    Decimal(item["amount_yuan"]),
                    Decimal(item["basis_yuan"]),
                    "、".join(f"交易{d}" for d in item["deal_ids"]),
                ]
            )
        )
    sheet.append(xlsx_row(["", "合计", "", "", "", Decimal(ledger["total_yuan"]), "", ""]))
    for row in sheet.iter_rows(min_row=3, min_col=6, max_col=7):
        for cell in row:
            cell.number_format = "#,##0.00"
    for column, width in zip("ABCDEFGH", (6, 30, 8, 10, 28, 16, 16, 24), strict=True):
        sheet.column_dimensions[column].width = width
    traces = book.create_sheet("计算过程")
    traces.append(xlsx_row(["序号", "单位名称", "措施", "步骤", "说明"]))
    for n, item in enumerate(ledger["items"], 1):
        for step in item["trace"]:
            traces.append(xlsx_row([n, item["party_name"], item["measure"], step["step"], step["text"]]))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
