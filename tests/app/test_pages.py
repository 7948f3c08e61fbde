"""The pages in a real headless Chromium (Debian's `chromium`, driven by Playwright): an expert grades three items
with the keyboard and the grades are stored; an enterprise never sees another enterprise's private need; a publisher
publishes and edits through the forms. The server is uvicorn on a loopback port over the module's runtime."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.runtime import Runtime
from models.tables import ReviewItem
from tests.app.conftest import STAFF, sign_in_page
from tests.app.conftest import shot as _shot
from tests.app.conftest import sign_in_browser as _sign_in

pytestmark = pytest.mark.slow


def test_an_expert_grades_three_items_with_the_keyboard(
    browser: Any, live: str, client: TestClient, runtime: Runtime, people: dict[str, dict]
) -> None:
    for title, abstract in (
        ("高通量反渗透复合膜制备技术", "界面聚合制备聚酰胺复合膜，用于海水淡化，通量提升30%"),
        ("耐污染超滤膜及其制备方法", "亲水改性聚偏氟乙烯超滤膜，用于海水淡化预处理"),
        ("船用海水淡化装置能量回收", "压力交换式能量回收装置，降低反渗透能耗"),
        ("碳纤维复合材料船体成型工艺", "真空导入成型，游艇船体减重"),
    ):
        assert client.post(
            "/api/v1/achievements", json={"title": title, "abstract": abstract}, headers=STAFF
        ).is_success
    need = client.post(
        "/api/v1/needs",
        json={"title": "海水淡化反渗透膜材料", "description": "需要高通量、耐污染的反渗透膜，用于海岛供水"},
        headers=STAFF,
    ).json()
    r = client.post(
        "/api/v1/review/rounds",
        json={"name": "页面测试", "need_ids": [need["id"]], "depth": 3, "judges_per_pair": 1},
        headers=STAFF,
    )
    assert r.status_code == 201, r.text
    round_id = r.json()["id"]
    expert_id = people["expert"]["id"]
    with runtime.session_factory() as session:
        mine = session.scalars(
            select(ReviewItem).where(ReviewItem.round_id == round_id, ReviewItem.expert_id == expert_id)
        ).all()
    assert len(mine) >= 3

    page = _sign_in(browser, live, "expert-1")
    assert page.url.endswith("/review"), page.url  # an expert lands on the queue
    _shot(page, "expert-queue")
    shown = []
    for key in ("2", "0", "n"):
        item = page.locator("article.item:not([hidden])")
        shown.append(int(item.get_attribute("data-id") or 0))
        page.keyboard.press(key)
        # the next item is on screen at once, before the server has answered
        page.wait_for_function(f"!document.querySelector('article.item[data-id=\"{shown[-1]}\"]:not([hidden])')")
    page.wait_for_function("document.getElementById('status').textContent.includes('已保存')")
    page.wait_for_function(f"document.getElementById('remaining').textContent === '{len(mine) - 3}'")
    assert shown == sorted(i.id for i in mine)[:3]

    with runtime.session_factory() as session:
        graded = {
            i.id: (i.grade, i.cant_judge)
            for i in session.scalars(select(ReviewItem).where(ReviewItem.id.in_(shown))).all()
        }
    assert graded == {shown[0]: (2, False), shown[1]: (0, False), shown[2]: (None, True)}
    page.close()


def test_an_enterprise_never_sees_another_enterprises_private_need(
    browser: Any, live: str, client: TestClient, people: dict[str, dict]
) -> None:
    secret = {"title": "盐碱地改良微生物菌剂配方优化", "description": "滨海盐碱地土壤改良", "visibility": "private"}
    r = client.post("/api/v1/needs", json=secret, headers=people["enterprise_b"]["headers"])
    assert r.status_code == 201 and r.json()["searchable"], r.text
    need_id = r.json()["id"]

    owner = _sign_in(browser, live, "ent-b")  # its own organisation finds it: the search itself works
    owner.goto(f"{live}/?q=盐碱地改良微生物菌剂&target=needs")
    assert secret["title"] in owner.inner_text("main")
    owner.close()

    page = _sign_in(browser, live, "ent-a")
    page.goto(f"{live}/?q=盐碱地改良微生物菌剂&target=needs")
    _shot(page, "search")
    assert secret["title"] not in page.content()
    response = page.goto(f"{live}/needs/{need_id}")
    assert response is not None and response.status == 404
    assert secret["title"] not in page.content() and "未找到" in page.inner_text("main")
    page.close()


def test_a_publisher_publishes_and_edits_through_the_forms(browser: Any, live: str, people: dict[str, dict]) -> None:
    page = _sign_in(browser, live, "ent-a")
    page.goto(f"{live}/publish/needs")
    page.fill("input[name=title]", "风电叶片无损检测机器人")
    page.fill("textarea[name=description]", "需要超声相控阵检测叶片内部缺陷的爬壁机器人")
    page.fill("input[name=budget_yuan]", "800000.50")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "/needs/" in page.url and "风电叶片无损检测机器人" in page.inner_text("h1")
    _shot(page, "need")
    with page.expect_navigation():
        page.click("text=编辑")
    page.fill("input[name=budget_yuan]", "12.345")  # more than fen: refused, named, nothing lost
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert (
        "请修改标红的字段" in page.inner_text("main")
        and page.input_value("input[name=title]") == "风电叶片无损检测机器人"
    )
    page.fill("input[name=budget_yuan]", "900000")
    page.fill("input[name=title]", "风电叶片无损检测爬壁机器人")
    with page.expect_navigation():
        page.click("main button[type=submit]")
    assert "风电叶片无损检测爬壁机器人" in page.inner_text("h1")
    page.goto(f"{live}/my")
    assert "风电叶片无损检测爬壁机器人" in page.inner_text("main")
    page.close()


def test_staff_settle_a_pair_from_the_round_page(client: TestClient, runtime: Runtime, people: dict[str, dict]) -> None:
    """The round page's form posts the grade that stands (with the session's CSRF secret); it becomes a graded pair."""

    from models.tables import GradedPair, ReviewPair

    achievement = {"title": "海参深加工低温干燥技术", "abstract": "低温真空干燥保持海参活性成分"}
    assert client.post("/api/v1/achievements", json=achievement, headers=STAFF).is_success
    need = client.post("/api/v1/needs", json={"title": "海参干燥工艺改进"}, headers=STAFF).json()
    r = client.post(
        "/api/v1/review/rounds",
        json={"name": "裁定", "need_ids": [need["id"]], "depth": 1, "judges_per_pair": 1},
        headers=STAFF,
    )
    assert r.status_code == 201, r.text
    with runtime.session_factory() as session:
        pair = session.scalars(select(ReviewPair).where(ReviewPair.round_id == r.json()["id"])).first()
    assert pair is not None
    staff, csrf = sign_in_page(client, "staff-1")
    page = staff.get(f"/review/rounds/{pair.round_id}")
    assert page.status_code == 200 and "nDCG@10" in page.text
    url = f"/review/pairs/{pair.id}/adjudicate"
    assert staff.post(url, data={"grade": "3", "csrf": "forged"}).status_code == 403
    r = staff.post(url, data={"grade": "3", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"/review/rounds/{pair.round_id}"
    with runtime.session_factory() as session:
        assert session.get(ReviewPair, pair.id).grade == 3  # type: ignore[union-attr]
        stored = session.scalars(select(GradedPair).where(GradedPair.achievement_id == pair.achievement_id)).all()
    assert [g.grade for g in stored if g.need_id == pair.need_id] == [3]


def test_a_demo_servers_anonymous_post_must_come_from_the_site() -> None:
    """On the demo server a signed-out visitor acts as staff: a post from another site's page is refused."""
    from starlette.requests import Request

    from app.deps import DEMO
    from app.routers.pages import _safe_next
    from app.web import PageSession, check_csrf
    from core.errors import Forbidden

    def request(headers: dict[str, str]) -> Request:
        return Request({"type": "http", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})

    demo = PageSession(principal=DEMO)
    check_csrf(demo, None, request({"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000"}))
    for headers in ({"host": "127.0.0.1:8000", "origin": "http://evil.example"}, {"host": "127.0.0.1:8000"}):
        with pytest.raises(Forbidden):
            check_csrf(demo, None, request(headers))
    assert [_safe_next(t) for t in ("/my", "//evil.com", "/\\evil.com", "https://evil.com", "/x\r\nSet-Cookie")] == [
        "/my",
        "/",
        "/",
        "/",
        "/",
    ]
