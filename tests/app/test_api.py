"""The HTTP API end to end: publish, read, list, update, withdraw, match both ways, problem+json errors."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.runtime import Runtime
from tests.app.conftest import STAFF

ACHIEVEMENTS = [
    {
        "title": "高安全性防爆锂离子电池电解液",
        "abstract": "开发阻燃电解液添加剂，抑制锂离子电池热失控，针刺不起火不爆炸。",
        "keywords": ["锂离子电池", "阻燃", "电解液"],
        "field": "新能源",
        "external_id": "a-li",
    },
    {
        "title": "水稻抗旱高产育种技术",
        "abstract": "利用分子标记辅助选择培育抗旱水稻新品种，亩产提高百分之十五。",
        "keywords": ["水稻", "育种", "抗旱"],
        "field": "现代农业",
        "external_id": "a-rice",
    },
    {
        "title": "海参养殖水质智能监测系统",
        "abstract": "基于物联网传感器实时监测溶解氧、温度和盐度，自动预警。",
        "keywords": ["海参", "水质监测", "物联网"],
        "field": "海洋生物",
        "external_id": "a-sea",
    },
    {
        "title": "碳纤维复合材料低成本成型工艺",
        "abstract": "采用快速固化树脂与模压工艺，降低碳纤维复合材料构件成本。",
        "keywords": ["碳纤维", "复合材料", "模压成型"],
        "field": "新材料",
        "external_id": "a-cf",
    },
]
NEEDS = [
    {
        "title": "动力电池热失控防护技术",
        "description": "需求内容：我公司生产锂电池组，需解决电池过热起火、爆炸的安全隐患。",
        "field": "新能源",
        "region": "环翠区",
        "budget_yuan": "800000.00",
        "external_id": "n-bat",
    },
    {
        "title": "刺参育苗池水质在线监测",
        "description": "需要实时监测养殖池溶解氧和水温，异常时自动报警。",
        "field": "海洋生物",
        "region": "荣成市",
        "external_id": "n-sea",
        "visibility": "private",
    },
]


@pytest.fixture(scope="module")
def seeded(client: TestClient) -> dict[str, int]:
    ids: dict[str, int] = {}
    for body in ACHIEVEMENTS:
        r = client.post("/api/v1/achievements", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        ids[body["external_id"]] = r.json()["id"]
    for body in NEEDS:
        r = client.post("/api/v1/needs", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        ids[body["external_id"]] = r.json()["id"]
    return ids


def test_healthz_counts_indexed_documents(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["indexed"]["achievements"] >= len(ACHIEVEMENTS)


def test_match_ranks_the_relevant_achievement_first_with_reasons(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "锂电池起火爆炸的安全防护", "target": "achievements", "k": 3})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["external_id"] == "a-li"
    assert results[0]["score"] >= results[-1]["score"]
    assert results[0]["reasons"], "each hit explains itself"


def test_match_reads_while_another_process_holds_the_sqlite_write_lock(
    client: TestClient, runtime: Runtime, seeded: dict[str, int]
) -> None:
    """POST /match only reads: it must not queue for SQLite's one write lock (it did, as a writer session, so
    concurrent matches waited for each other and for every write, up to busy_timeout and then a 500)."""
    url = runtime.settings.database_url
    if not url.startswith("sqlite"):
        pytest.skip("SQLite's write lock; PostgreSQL readers never wait for writers")
    other = sqlite3.connect(url.split("///", 1)[1], timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process mid-write (an ingest, a write request)
        t0 = time.monotonic()
        r = client.post("/api/v1/match", json={"text": "锂电池起火爆炸的安全防护", "k": 3})
        waited = time.monotonic() - t0
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["external_id"] == "a-li"
        assert waited < 5, f"the match waited {waited:.1f} s for the write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_traditional_query_matches_simplified_text(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "海參養殖水質監測", "k": 1})
    assert r.json()["results"][0]["external_id"] == "a-sea"


def test_need_matches_and_achievement_matches(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.get(f"/api/v1/needs/{seeded['n-bat']}/matches", params={"k": 2})
    assert r.status_code == 200
    assert r.json()["results"][0]["external_id"] == "a-li"
    # The private need is shown to staff only.
    anon = client.get(f"/api/v1/achievements/{seeded['a-sea']}/matches").json()["results"]
    staff = client.get(f"/api/v1/achievements/{seeded['a-sea']}/matches", headers=STAFF).json()["results"]
    assert "n-sea" not in [h["external_id"] for h in anon]
    assert staff[0]["external_id"] == "n-sea"


def test_filters_restrict_results(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "锂电池安全", "filters": {"field": "现代农业"}})
    assert [h["external_id"] for h in r.json()["results"]] == ["a-rice"]


def test_update_and_withdraw_follow_into_the_index(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.post(
        "/api/v1/achievements", json={"title": "石墨烯导热膜制备方法", "external_id": "a-tmp"}, headers=STAFF
    )
    new_id, created_seq = r.json()["id"], r.json()["change_seq"]
    assert r.json()["searchable"] is True, "the write answers once its change is applied to the index"
    r = client.post("/api/v1/match", json={"text": "石墨烯导热膜", "k": 1})
    assert r.json()["results"][0]["id"] == new_id
    r = client.patch(f"/api/v1/achievements/{new_id}", json={"title": "超疏水自清洁涂层"}, headers=STAFF)
    assert r.status_code == 200 and r.json()["title"] == "超疏水自清洁涂层"
    assert r.json()["searchable"] is True and r.json()["change_seq"] > created_seq
    r = client.post("/api/v1/match", json={"text": "超疏水涂层", "k": 1})
    assert r.json()["results"][0]["id"] == new_id
    assert client.post(f"/api/v1/achievements/{new_id}/withdraw", headers=STAFF).json()["status"] == "withdrawn"
    r = client.post("/api/v1/match", json={"text": "超疏水涂层", "k": 10})
    assert new_id not in [h["id"] for h in r.json()["results"]]
    assert client.get(f"/api/v1/achievements/{new_id}").status_code == 404
    assert client.get(f"/api/v1/achievements/{new_id}", headers=STAFF).status_code == 200


def test_list_paginates_and_filters(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.get("/api/v1/achievements", params={"page_size": 2, "page": 1, "field": "新材料"})
    body = r.json()
    assert body["total"] == 1 and body["items"][0]["external_id"] == "a-cf"
    r = client.get("/api/v1/achievements", params={"page_size": 2, "page": 2})
    assert r.json()["page"] == 2 and len(r.json()["items"]) <= 2
    # Private needs are not listed for anonymous callers.
    anon = [n["external_id"] for n in client.get("/api/v1/needs").json()["items"]]
    assert "n-sea" not in anon


def test_money_is_exact_decimal(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.get(f"/api/v1/needs/{seeded['n-bat']}", headers=STAFF)
    assert r.json()["budget_yuan"] == "800000.00"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", "/api/v1/needs", {"title": ""}, 422, "title"),
        ("post", "/api/v1/needs", {"title": "x", "budget_yuan": "1.234"}, 422, "budget_yuan"),
        ("post", "/api/v1/needs", {"title": "x", "budget_yuan": 12.5}, 422, "budget_yuan"),
        ("post", "/api/v1/needs", {"title": "x", "budget_yuan": "-1"}, 422, "budget_yuan"),
        ("post", "/api/v1/needs", {"title": "x", "deadline": "2025-13-01"}, 422, "deadline"),
        ("post", "/api/v1/needs", {"title": "x", "colour": "red"}, 422, "colour"),
        ("post", "/api/v1/achievements", {"title": "x", "owner_id": 999999}, 422, "owner_id"),
        ("post", "/api/v1/match", {"text": "x", "k": 0}, 422, "k"),
        ("post", "/api/v1/match", {"text": "x", "target": "patents"}, 422, "target"),
        ("post", "/api/v1/match", {"text": "x", "filters": {"owner": "y"}}, 422, "filters.owner"),
        ("post", "/api/v1/match", {"text": "   "}, 422, "text"),
        ("get", "/api/v1/needs/999999", None, 404, None),
        # An explicit null for a NOT NULL column is invalid input (was a 500 from the database's constraint).
        ("patch", "/api/v1/needs/999999", {"title": None}, 422, "title"),
        ("patch", "/api/v1/achievements/999999", {"keywords": None}, 422, "keywords"),
        # Ids and pages past the database's integers are invalid input (were a 500: OverflowError in the driver).
        ("get", f"/api/v1/needs/{2**63}", None, 422, "need_id"),
        ("post", f"/api/v1/achievements/{2**31}/withdraw", None, 422, "achievement_id"),
        ("get", f"/api/v1/needs?page={2**63}", None, 422, "page"),
        ("post", "/api/v1/needs", {"title": "x", "owner_id": 2**63}, 422, "owner_id"),
        # PostgreSQL's text cannot hold NUL: invalid input, in a body or a query (was a 500: DataError).
        ("post", "/api/v1/organisations", {"name": "a\x00b", "kind": "agency"}, 422, "name"),
        ("post", "/api/v1/tokens", {"username": "\x00", "password": "x"}, 422, "username"),
        ("get", "/api/v1/needs?field=%00", None, 422, "field"),
    ],
)
def test_bad_input_is_problem_json_naming_the_field(
    client: TestClient, seeded: dict[str, int], method: str, path: str, body: object, status: int, field: str | None
) -> None:
    r = client.request(method, path, json=body, headers=STAFF)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    if field:
        assert r.json()["field"] == field


def test_times_carry_their_offset(client: TestClient, seeded: dict[str, int]) -> None:
    # RFC 3339 date-times, as the schema declares, on SQLite too (which hands stored times back naive).
    r = client.get(f"/api/v1/needs/{seeded['n-bat']}", headers=STAFF)
    assert datetime.fromisoformat(r.json()["created_at"]).utcoffset() == timedelta(0)


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    r = client.post("/api/v1/match", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


def test_duplicate_external_id_is_409(client: TestClient, seeded: dict[str, int]) -> None:
    r = client.post("/api/v1/achievements", json=ACHIEVEMENTS[0], headers=STAFF)
    assert r.status_code == 409 and r.json()["field"] == "external_id"


def test_writes_need_the_staff_token(client: TestClient) -> None:
    assert client.post("/api/v1/needs", json={"title": "x"}).status_code == 401
    r = client.post("/api/v1/needs", json={"title": "x"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")


def test_subsidy_evaluate_is_served_by_the_app(client: TestClient) -> None:
    case = {
        "year": 2025,
        "parties": [
            {"id": "ent", "kind": "enterprise", "in_weihai": True, "has_rd_activity": True},
            {"id": "uni", "kind": "university", "in_weihai": True},
        ],
        "contracts": [
            {
                "id": "c1",
                "type": "development",
                "buyer": "ent",
                "seller": "uni",
                "agency": None,
                "registered": True,
                "signed_on": "2025-03-01",
                "amount_yuan": "1000000.00",
                "payments": [{"paid_on": "2025-04-01", "amount_yuan": "600000.00"}],
            },
        ],
        "listings": [],
    }
    r = client.post("/api/v1/subsidies/evaluate", json=case)
    assert r.status_code == 200, r.text
    items = {(i["measure"], i["party"]): i["amount_yuan"] for i in r.json()["items"]}
    assert items[("4.1", "ent")] == "30000.00"  # 5% of 600,000 paid in 2025 (第4条)
    assert items[("4.2", "uni")] == "6000.00"  # 1% of 600,000 received
    case["contracts"][0]["seller"] = "nobody"
    r = client.post("/api/v1/subsidies/evaluate", json=case)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert "contracts[0].seller" in r.json()["field"]
