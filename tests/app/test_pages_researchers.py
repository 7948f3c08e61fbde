"""Researchers' pages in a real headless Chromium: an enterprise opens its need's matched researchers (with the
achievements and profile that placed them), staff solve a programme's selection round on its page, and the
enterprise confirms its placement; every click is checked in the database."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.runtime import Runtime
from models.tables import Placement, PlacementState, Programme, ProgrammePreference
from tests.app.conftest import STAFF, organisation, shot, sign_in_browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def round_(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    orgs = people["orgs"]
    institute = organisation(client, "海洋食品研究所", "research_institute")
    body = {"title": "石墨烯改性反渗透复合膜", "abstract": "提高海水淡化膜通量与抗污染性能", "owner_id": orgs["uni"]}
    achievement = client.post("/api/v1/achievements", json=body, headers=STAFF).json()["id"]
    researchers = {}
    for key, profile in {
        "membrane": {
            "name": "张膜",
            "title": "教授",
            "organisation_id": orgs["uni"],
            "fields": ["膜分离", "海水淡化"],
            "self_description": "长期从事反渗透膜材料研究",
            "achievement_ids": [achievement],
        },
        "cold": {
            "name": "王鲜",
            "organisation_id": institute,
            "fields": ["冷链物流", "食品保鲜"],
            "self_description": "水产品冷链保鲜包装",
        },
    }.items():
        r = client.post("/api/v1/researchers", json=profile, headers=STAFF)
        assert r.status_code == 201, r.text
        researchers[key] = r.json()["id"]
    need = {"title": "海水淡化反渗透膜抗污染改性", "description": "反渗透膜污染快、通量衰减，寻求改性膜材料"}
    need_id = client.post("/api/v1/needs", json=need, headers=people["enterprise"]["headers"]).json()["id"]
    body = {"name": "2026 年科技专员选派", "kind": "tech_commissioner", "year": 2026}
    programme = client.post("/api/v1/programmes", json=body, headers=STAFF).json()["id"]
    r = client.put(
        f"/api/v1/programmes/{programme}/candidates",
        json={"researcher_ids": list(researchers.values())},
        headers=STAFF,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/api/v1/programmes/{programme}/requests", json={"need_id": need_id}, headers=people["enterprise"]["headers"]
    )
    assert r.status_code == 201, r.text
    cold = {"title": "冷链水产品保鲜包装", "description": "冷冻鱼糜运输中品质下降，寻求保鲜包装方案"}
    cold_need = client.post("/api/v1/needs", json=cold, headers=people["enterprise_b"]["headers"]).json()["id"]
    return {"need": need_id, "cold_need": cold_need, "programme": programme, "researchers": researchers}


def test_an_enterprise_finds_researchers_and_confirms_the_one_staff_assign(
    browser: Any, live: str, runtime: Runtime, people: dict[str, dict], round_: dict[str, Any]
) -> None:
    ent = sign_in_browser(browser, live, "ent-a")
    ent.goto(f"{live}/needs/{round_['need']}")
    with ent.expect_navigation():
        ent.locator("#researchers-link").click()
    first = ent.locator("#researchers li.hit").first
    assert first.get_attribute("data-researcher") == str(round_["researchers"]["membrane"])
    assert "石墨烯改性反渗透复合膜" in first.locator(".achievements").inner_text()
    shot(ent, "researchers")

    # Enterprise B finds the round, joins it with its cold-chain need and states its preferences on the page.
    ent_b = sign_in_browser(browser, live, "ent-b")
    ent_b.goto(f"{live}/programmes")
    with ent_b.expect_navigation():
        ent_b.locator(f"#programmes a[href='/programmes/{round_['programme']}']").click()
    ent_b.locator("#join-form select[name=need_id]").select_option(str(round_["cold_need"]))
    with ent_b.expect_navigation():
        ent_b.locator("#join").click()
    assert ent_b.locator("#joined").count() == 1
    researchers = round_["researchers"]
    ent_b.locator(f"select[name=level_{researchers['membrane']}]").select_option("0")
    ent_b.locator(f"select[name=level_{researchers['cold']}]").select_option("3")
    with ent_b.expect_navigation():
        ent_b.locator("#save-preferences").click()
    shot(ent_b, "programme-enterprise")
    with runtime.session_factory() as session:
        stated = {
            (p.organisation_id, p.researcher_id): p.level
            for p in session.scalars(
                select(ProgrammePreference).where(ProgrammePreference.programme_id == round_["programme"])
            )
        }
    ent_b_id = people["orgs"]["ent_b"]
    assert stated == {(ent_b_id, researchers["membrane"]): 0, (ent_b_id, researchers["cold"]): 3}
    # "未表态" takes a stated preference back.
    ent_b.locator(f"select[name=level_{researchers['membrane']}]").select_option("")
    with ent_b.expect_navigation():
        ent_b.locator("#save-preferences").click()
    with runtime.session_factory() as session:
        left = session.scalars(
            select(ProgrammePreference.researcher_id).where(ProgrammePreference.programme_id == round_["programme"])
        ).all()
    assert left == [researchers["cold"]]
    ent_b.locator(f"select[name=level_{researchers['membrane']}]").select_option("0")
    with ent_b.expect_navigation():
        ent_b.locator("#save-preferences").click()

    staff = sign_in_browser(browser, live, "staff-1")
    staff.goto(f"{live}/programmes/{round_['programme']}")
    with staff.expect_navigation():
        staff.locator("#assign").click()
    rows = staff.locator("#placements tr[data-placement]")
    placed = {
        rows.nth(i).locator(".enterprise").inner_text(): rows.nth(i).locator(".researcher").inner_text()
        for i in range(rows.count())
    }
    assert placed == {"甲科技有限公司": "张膜", "乙制造股份公司": "王鲜"}, placed
    assert rows.first.locator(".state").inner_text() == "拟选派"
    shot(staff, "programme")
    with runtime.session_factory() as session:
        placement = session.scalars(
            select(Placement).where(
                Placement.programme_id == round_["programme"], Placement.organisation_id == people["orgs"]["ent_a"]
            )
        ).one()
        assert placement.researcher_id == round_["researchers"]["membrane"]
        assert session.get_one(Programme, round_["programme"]).status == "assigned"
    # B reads its own placement on the round's page, nobody else's.
    ent_b.goto(f"{live}/programmes/{round_['programme']}")
    assert [
        ent_b.locator("#placements .researcher").nth(i).inner_text()
        for i in range(ent_b.locator("#placements .researcher").count())
    ] == ["王鲜"]

    # Confirmed once both sides agree: the enterprise first (it waits), then the researcher's university.
    ent.goto(f"{live}/placements")
    with ent.expect_navigation():
        ent.locator(f"tr[data-placement='{placement.id}'] button.next").click()
    row = ent.locator(f"tr[data-placement='{placement.id}']")
    assert row.locator(".state").inner_text() == "拟选派" and row.locator(".agreed").count() == 1
    uni = sign_in_browser(browser, live, "uni-1")
    uni.goto(f"{live}/placements")
    with uni.expect_navigation():
        uni.locator(f"tr[data-placement='{placement.id}'] button.next").click()
    assert uni.locator(f"tr[data-placement='{placement.id}'] .state").inner_text() == "已确认"
    with runtime.session_factory() as session:
        assert session.get_one(Placement, placement.id).state == PlacementState.confirmed
