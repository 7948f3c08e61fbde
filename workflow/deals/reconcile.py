"""Reconciliation with the technology-contract registration office (技术合同登记机构): its list of registered contracts
(XLSX or CSV, one row per contract) against the platform's deals.

Each registry row is matched on its registration number (登记号). The report lists:
- ``mismatches``: a field on which the registry and the platform's deal disagree (amount, buyer, seller, agency,
  type, signed date, registration date), one line per field, with both values;
- ``registered_without_deal``: registered contracts the platform has no deal for;
- ``missing_from_registry``: platform contracts with a registration number the list does not hold (only those
  registered inside the dates the list covers, so an older or later list does not flag everything);
- ``errors``: rows that could not be read, naming the row, the field and why; the other rows are still reconciled.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ingest.readers import Unreadable, read_rows
from models.tables import Contract, ContractType, Deal, Organisation
from subsidy.schemas import format_yuan, parse_yuan

# Header names accepted for each field (the registry's Chinese export, or English).
COLUMNS: dict[str, tuple[str, ...]] = {
    "registration_no": ("登记号", "合同登记号", "登记编号", "registration_no"),
    "title": ("合同名称", "项目名称", "title"),
    "type": ("合同类型", "技术合同类型", "type"),
    "buyer": ("买方", "委托方", "受让方", "buyer"),
    "seller": ("卖方", "受托方", "让与方", "seller"),
    "agency": ("中介机构", "技术转移服务机构", "agency"),
    "amount_yuan": ("合同金额（元）", "合同金额(元)", "成交金额（元）", "合同金额", "amount_yuan"),
    "signed_on": ("签订日期", "签约日期", "signed_on"),
    "registered_on": ("登记日期", "认定登记日期", "registered_on"),
}
REQUIRED = ("registration_no", "type", "buyer", "seller", "amount_yuan", "signed_on", "registered_on")
TYPES: dict[str, ContractType] = {
    "技术开发": ContractType.development,
    "技术转让": ContractType.transfer,
    "技术许可": ContractType.transfer,  # 技术转让（许可）: registered as a transfer
    "技术咨询": ContractType.consulting,
    "技术服务": ContractType.service,
    **{t.value: t for t in ContractType},
}


@dataclass(frozen=True)
class RegistryRow:
    row: int
    registration_no: str
    title: str
    type: ContractType
    buyer: str
    seller: str
    agency: str | None
    amount_yuan: Decimal
    signed_on: dt.date
    registered_on: dt.date


@dataclass
class Report:
    rows: int = 0
    matched: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    registered_without_deal: list[dict[str, Any]] = field(default_factory=list)
    missing_from_registry: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "matched": self.matched,
            "mismatches": self.mismatches,
            "registered_without_deal": self.registered_without_deal,
            "missing_from_registry": self.missing_from_registry,
            "errors": self.errors,
        }


class _RowError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _name(text: str) -> str:
    """A party's name as compared: no spaces, full-width brackets as half-width (the registry mixes both)."""
    return re.sub(r"\s+", "", text).replace("（", "(").replace("）", ")")


def _pick(raw: Mapping[str, Any], name: str) -> Any:
    for header in COLUMNS[name]:
        if header in raw and raw[header] not in (None, ""):
            return raw[header]
    return None


def _date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip().replace("/", "-").replace(".", "-")
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise _RowError(name, f"{value!r} is not a date (YYYY-MM-DD)") from None


def _amount(value: Any) -> Decimal:
    if isinstance(value, float):
        # An XLSX number cell: its shortest decimal form is what the sheet shows.
        value = repr(value)
        if value.endswith(".0"):
            value = value[:-2]
    try:
        return parse_yuan(str(value).replace(",", "").strip())
    except (ValueError, InvalidOperation) as exc:
        raise _RowError("amount_yuan", str(exc)) from None


def parse_row(number: int, raw: Mapping[str, Any]) -> RegistryRow:
    """One registry row, or _RowError naming the field."""
    values = {name: _pick(raw, name) for name in COLUMNS}
    for name in REQUIRED:
        if values[name] is None:
            raise _RowError(name, f"missing (expected a column named {' or '.join(COLUMNS[name][:2])})")
    kind = TYPES.get(str(values["type"]).strip())
    if kind is None:
        raise _RowError("type", f"{values['type']!r} is not a contract type (技术开发, 技术转让, 技术咨询, 技术服务)")
    return RegistryRow(
        row=number,
        registration_no=str(values["registration_no"]).strip(),
        title=str(values["title"] or "").strip(),
        type=kind,
        buyer=str(values["buyer"]).strip(),
        seller=str(values["seller"]).strip(),
        agency=str(values["agency"]).strip() if values["agency"] else None,
        amount_yuan=_amount(values["amount_yuan"]),
        signed_on=_date(values["signed_on"], "signed_on"),
        registered_on=_date(values["registered_on"], "registered_on"),
    )


def read_registry(path: Path) -> tuple[list[RegistryRow], list[dict[str, Any]]]:
    """The rows of a registry file (XLSX, CSV), and the errors of those that could not be read."""
    rows: list[RegistryRow] = []
    errors: list[dict[str, Any]] = []
    for number, raw in read_rows(path):
        if isinstance(raw, Unreadable):
            errors.append({"row": number, "field": None, "reason": raw.reason})
            continue
        try:
            rows.append(parse_row(number, raw))
        except _RowError as exc:
            errors.append({"row": number, "field": exc.field, "reason": exc.reason})
    return rows, errors


def reconcile(session: Session, rows: Iterable[RegistryRow], errors: list[dict[str, Any]] | None = None) -> Report:
    """Compare registry rows with the platform's contracts by registration number."""
    rows = list(rows)
    report = Report(rows=len(rows) + len(errors or []), errors=list(errors or []))
    platform: dict[str, tuple[Contract, Deal]] = {}
    for contract, deal in session.execute(
        select(Contract, Deal)
        .join(Deal, Deal.id == Contract.deal_id)
        .where(Contract.registration_no.is_not(None))
        .order_by(Deal.id)
    ).tuples():
        assert contract.registration_no is not None
        if contract.registration_no in platform:
            # One registration number on two deals: one of them is wrong, and both would be paid.
            report.mismatches.append(
                {
                    "row": None,
                    "registration_no": contract.registration_no,
                    "deal_id": deal.id,
                    "field": "registration_no",
                    "platform": f"also on deal {platform[contract.registration_no][1].id}",
                    "registry": None,
                }
            )
            continue
        platform[contract.registration_no] = (contract, deal)
    names = dict(session.execute(select(Organisation.id, Organisation.name)).tuples().all())
    seen: set[str] = set()
    for row in rows:
        if row.registration_no in seen:
            report.errors.append(
                {
                    "row": row.row,
                    "field": "registration_no",
                    "reason": f"{row.registration_no} appears twice in the list",
                }
            )
            continue
        seen.add(row.registration_no)
        found = platform.get(row.registration_no)
        if found is None:
            report.registered_without_deal.append(
                {
                    "row": row.row,
                    "registration_no": row.registration_no,
                    "title": row.title,
                    "buyer": row.buyer,
                    "seller": row.seller,
                    "amount_yuan": format_yuan(row.amount_yuan),
                    "registered_on": row.registered_on.isoformat(),
                }
            )
            continue
        contract, deal = found
        report.matched += 1
        party = {
            "buyer": names.get(deal.buyer_id) if deal.buyer_id else None,
            "seller": names.get(deal.seller_id) if deal.seller_id else None,
            "agency": names.get(deal.agency_id) if deal.agency_id else None,
        }
        checks: list[tuple[str, Any, Any, bool]] = [
            (
                "amount_yuan",
                format_yuan(contract.amount_yuan),
                format_yuan(row.amount_yuan),
                contract.amount_yuan == row.amount_yuan,
            ),
            ("type", str(contract.type), str(row.type), contract.type == row.type),
            (
                "signed_on",
                contract.signed_on.isoformat(),
                row.signed_on.isoformat(),
                contract.signed_on == row.signed_on,
            ),
            (
                "registered_on",
                contract.registered_on.isoformat() if contract.registered_on else None,
                row.registered_on.isoformat(),
                contract.registered_on == row.registered_on,
            ),
        ]
        for role in ("buyer", "seller", "agency"):
            mine, theirs = party[role], getattr(row, role)
            same = (mine is None and theirs is None) or (
                mine is not None and theirs is not None and _name(mine) == _name(theirs)
            )
            checks.append((role, mine, theirs, same))
        for name, mine, theirs, same in checks:
            if not same:
                report.mismatches.append(
                    {
                        "row": row.row,
                        "registration_no": row.registration_no,
                        "deal_id": deal.id,
                        "field": name,
                        "platform": mine,
                        "registry": theirs,
                    }
                )
    if rows:
        first = min(r.registered_on for r in rows)
        last = max(r.registered_on for r in rows)
        for number, (contract, deal) in sorted(platform.items()):
            if number in seen or contract.registered_on is None or not first <= contract.registered_on <= last:
                continue
            report.missing_from_registry.append(
                {
                    "registration_no": number,
                    "deal_id": deal.id,
                    "amount_yuan": format_yuan(contract.amount_yuan),
                    "registered_on": contract.registered_on.isoformat(),
                }
            )
    return report
