"""Reconciliation of the shipped sample registration-office list against deals on the platform: every kind of
difference is listed, a bad row is named and the others still reconciled."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook
from sqlalchemy.orm import Session, sessionmaker

from models.tables import Achievement, Contract, ContractType, Deal, Need, Organisation, OrgKind
from workflow.deals.reconcile import read_registry, reconcile

SAMPLE = Path(__file__).resolve().parents[2] / "workflow" / "deals" / "samples" / "contract_registry_2025.csv"


def _org(session: Session, name: str, kind: OrgKind) -> int:
    org = Organisation(name=name, kind=kind)
    session.add(org)
    session.flush()
    return org.id


def _deal(
    session: Session,
    buyer: int,
    seller: int,
    agency: int | None,
    *,
    no: str,
    kind: ContractType,
    amount: str,
    signed: str,
    registered: str,
) -> int:
    tag = uuid.uuid4().hex
    need = Need(title="需求", description="", external_id=tag, owner_id=buyer)
    achievement = Achievement(title="成果", abstract="", external_id=tag, owner_id=seller)
    session.add_all([need, achievement])
    session.flush()
    deal = Deal(need_id=need.id, achievement_id=achievement.id, buyer_id=buyer, seller_id=seller, agency_id=agency)
    session.add(deal)
    session.flush()
    session.add(
        Contract(
            deal_id=deal.id,
            type=kind,
            amount_yuan=Decimal(amount),
            signed_on=dt.date.fromisoformat(signed),
            registration_no=no,
            registered_on=dt.date.fromisoformat(registered),
        )
    )
    session.flush()
    return deal.id


def _platform(session: Session) -> dict[str, int]:
    blue = _org(session, "威海蓝港装备有限公司", OrgKind.enterprise)
    food = _org(session, "荣成海川食品有限公司", OrgKind.enterprise)
    tool = _org(session, "文登精工机械有限公司", OrgKind.enterprise)
    uni = _org(session, "威海滨海理工大学", OrgKind.university)
    inst = _org(session, "威海海洋工程研究院", OrgKind.research_institute)
    agency = _org(session, "威海市金桥技术转移中心", OrgKind.agency)
    d = ContractType
    return {
        "exact": _deal(
            session,
            blue,
            uni,
            agency,
            no="2025370010000123",
            kind=d.development,
            amount="800000.00",
            signed="2025-03-10",
            registered="2025-04-02",
        ),
        "amount": _deal(
            session,
            blue,
            uni,
            None,
            no="2025370010000456",
            kind=d.transfer,
            amount="9000000.00",
            signed="2025-05-01",
            registered="2025-05-20",
        ),
        "type": _deal(
            session,
            food,
            uni,
            None,
            no="2025370010000457",
            kind=d.consulting,
            amount="120000.00",
            signed="2025-06-01",
            registered="2025-06-18",
        ),
        "parties": _deal(
            session,
            tool,
            inst,
            None,
            no="2025370010000458",
            kind=d.development,
            amount="450000.00",
            signed="2025-07-01",
            registered="2025-07-15",
        ),
        "dates": _deal(
            session,
            food,
            inst,
            None,
            no="2025370010000459",
            kind=d.consulting,
            amount="60000.00",
            signed="2025-08-01",
            registered="2025-08-21",
        ),
        "unlisted": _deal(
            session,
            blue,
            uni,
            None,
            no="2025370010000555",
            kind=d.service,
            amount="50000.00",
            signed="2025-06-01",
            registered="2025-06-30",
        ),
        "older": _deal(
            session,
            blue,
            uni,
            None,
            no="2024370010000001",
            kind=d.service,
            amount="50000.00",
            signed="2024-01-05",
            registered="2024-02-01",
        ),
    }


def test_every_kind_of_difference_on_the_shipped_sample(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        deals = _platform(session)
        rows, errors = read_registry(SAMPLE)
        report = reconcile(session, rows, errors).as_dict()
    assert report["rows"] == 7 and report["matched"] == 5
    found = {(m["deal_id"], m["field"]): (m["platform"], m["registry"]) for m in report["mismatches"]}
    assert not any(deal_id == deals["exact"] for deal_id, _ in found)
    assert found[(deals["amount"], "amount_yuan")] == ("9000000.00", "9500000.00")
    assert found[(deals["type"], "type")] == ("consulting", "service")
    assert found[(deals["parties"], "seller")] == ("威海海洋工程研究院", "威海滨海理工大学")
    assert found[(deals["parties"], "agency")] == (None, "威海市金桥技术转移中心")
    assert found[(deals["dates"], "signed_on")] == ("2025-08-01", "2025-08-08")
    assert found[(deals["dates"], "registered_on")] == ("2025-08-21", "2025-08-20")
    assert found[(deals["dates"], "buyer")] == ("荣成海川食品有限公司", "荣成海川食品有限公司（荣成）")
    assert len(found) == 7
    # A registered contract the platform has no deal for; a platform contract the list lacks (inside its dates only).
    assert [r["registration_no"] for r in report["registered_without_deal"]] == ["2025370010000999"]
    assert [r["deal_id"] for r in report["missing_from_registry"]] == [deals["unlisted"]]
    # The unreadable row is named by row and field; the rest were still reconciled.
    assert report["errors"] == [
        {"row": 8, "field": "amount_yuan", "reason": report["errors"][0]["reason"]},
    ]
    assert "decimal" in report["errors"][0]["reason"]


def test_an_xlsx_list_reads_the_same(session_factory: sessionmaker[Session], tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["登记号", "合同名称", "合同类型", "买方", "卖方", "中介机构", "合同金额（元）", "签订日期", "登记日期"]
    )
    sheet.append(
        [
            "2025370010000123",
            "海水淡化膜",
            "技术开发",
            "威海蓝港装备有限公司",
            "威海滨海理工大学",
            "威海市金桥技术转移中心",
            800000.1,
            dt.datetime(2025, 3, 10),
            dt.datetime(2025, 4, 2),
        ]
    )
    sheet.append(["2025370010000124", "缺日期", "技术开发", "甲", "乙", None, 1000, None, dt.datetime(2025, 4, 2)])
    path = tmp_path / "registry.xlsx"
    book.save(path)
    rows, errors = read_registry(path)
    assert [(r.registration_no, r.amount_yuan, r.signed_on) for r in rows] == [
        ("2025370010000123", Decimal("800000.1"), dt.date(2025, 3, 10))
    ]
    assert (
        errors == [{"row": 3, "field": "signed_on", "reason": errors[0]["reason"]}] and "missing" in errors[0]["reason"]
    )


def test_a_registration_number_on_two_deals_is_reported(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        deals = _platform(session)
        buyer = session.get_one(Deal, deals["exact"]).buyer_id
        seller = session.get_one(Deal, deals["exact"]).seller_id
        assert buyer is not None and seller is not None
        twin = _deal(
            session,
            buyer,
            seller,
            None,
            no="2025370010000123",
            kind=ContractType.development,
            amount="1.00",
            signed="2025-03-10",
            registered="2025-04-02",
        )
        rows, errors = read_registry(SAMPLE)
        report = reconcile(session, rows, errors).as_dict()
    (dup,) = [m for m in report["mismatches"] if m["field"] == "registration_no"]
    assert dup["deal_id"] == twin and str(deals["exact"]) in dup["platform"]
