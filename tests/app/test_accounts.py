"""People and permissions over HTTP: organisations, users, tokens, who sees and edits what, the audit log."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from app.runtime import Runtime
from models.base import utcnow
from models.tables import ApiToken, User
from tests.app.conftest import PASSWORD, STAFF, organisation, sign_up

PRIVATE_NEED = {
    "title": "刺参育苗池溶解氧在线监测与自动增氧",
    "description": "需要实时监测育苗池溶解氧和水温，低于阈值时自动启动增氧机，并向手机报警。",
    "visibility": "private",
}
PUBLIC_NEED = {"title": "锂电池组热失控早期预警", "description": "需要在电池过热起火前预警并切断回路。"}


def test_the_contract_creates_organisations_users_and_tokens(client: TestClient) -> None:
    r = client.post(
        "/api/v1/organisations", json={"name": "丙新材料公司", "kind": "enterprise", "in_weihai": True}, headers=STAFF
    )
    assert r.status_code == 201 and r.json()["id"] > 0 and r.json()["in_weihai"] is True
    org = r.json()["id"]
    body = {
        "username": "bing-1",
        "password": PASSWORD,
        "role": "enterprise",
        "organisation_id": org,
        "display_name": "王工",
    }
    u = client.post("/api/v1/users", json=body, headers=STAFF)
    assert (
        u.status_code == 201 and u.json()["id"] > 0 and "password" not in u.json() and "password_hash" not in u.json()
    )
    t = client.post("/api/v1/tokens", json={"username": "bing-1", "password": PASSWORD})
    assert t.status_code == 201
    assert t.json()["token"].startswith("tm_") and t.json()["expires_at"]
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {t.json()['token']}"})
    assert me.json()["username"] == "bing-1" and me.json()["organisation_id"] == org


def test_passwords_and_tokens_are_stored_only_as_hashes(client: TestClient, runtime: Runtime, people: dict) -> None:
    with runtime.session_factory() as session:
        user = session.scalar(select(User).where(User.username == "ent-a"))
        assert user is not None and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        hashes = set(session.scalars(select(ApiToken.token_hash)).all())
    assert people["enterprise"]["token"] not in hashes and all(len(h) == 64 for h in hashes)


def test_a_user_belongs_to_an_organisation_of_its_kind(client: TestClient, people: dict) -> None:
    body = {
        "username": "wrong-kind",
        "password": PASSWORD,
        "role": "university",
        "organisation_id": people["orgs"]["ent_a"],
    }
    r = client.post("/api/v1/users", json=body, headers=STAFF)
    assert r.status_code == 422 and r.json()["field"] == "organisation_id"
    r = client.post("/api/v1/users", json={**body, "role": "enterprise", "organisation_id": None}, headers=STAFF)
    assert r.status_code == 422 and r.json()["field"] == "organisation_id"
    r = client.post("/api/v1/users", json={**body, "role": "enterprise", "username": "ent-a"}, headers=STAFF)
    assert r.status_code == 409


def test_only_admin_manages_users(client: TestClient, people: dict) -> None:
    body = {"username": "by-staff", "password": PASSWORD, "role": "expert"}
    assert client.post("/api/v1/users", json=body, headers=people["staff"]["headers"]).status_code == 403
    assert client.post("/api/v1/users", json=body, headers=people["admin"]["headers"]).status_code == 201


def test_a_private_need_is_its_organisations_and_staffs_only(client: TestClient, people: dict) -> None:
    a, b = people["enterprise"]["headers"], people["enterprise_b"]["headers"]
    r = client.post("/api/v1/needs", json=PRIVATE_NEED, headers=a)
    assert r.status_code == 201, r.text
    need = r.json()
    assert need["owner_id"] == people["orgs"]["ent_a"]
    # Indexed (the answer says so within write_visible_timeout; a busy machine may take longer): staff finds it.
    deadline = time.monotonic() + 20
    while True:
        found = client.post("/api/v1/match", json={"text": PRIVATE_NEED["title"], "target": "needs"}, headers=STAFF)
        if need["id"] in [h["id"] for h in found.json()["results"]] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert need["id"] in [h["id"] for h in found.json()["results"]]
    # Its own organisation matches it too.
    own = client.post("/api/v1/match", json={"text": PRIVATE_NEED["title"], "target": "needs"}, headers=a)
    assert need["id"] in [h["id"] for h in own.json()["results"]]
    url = f"/api/v1/needs/{need['id']}"
    assert client.get(url, headers=a).status_code == 200
    assert client.get(url, headers=STAFF).status_code == 200
    for other in (b, people["university"]["headers"], people["expert"]["headers"], {}):
        assert client.get(url, headers=other).status_code == 404
        assert client.get(f"{url}/matches", headers=other).status_code == 404
        listed = client.get("/api/v1/needs", params={"page_size": 200}, headers=other).json()["items"]
        assert need["id"] not in [n["id"] for n in listed]
        found = client.post("/api/v1/match", json={"text": PRIVATE_NEED["title"], "target": "needs"}, headers=other)
        assert found.status_code == 200 and need["id"] not in [h["id"] for h in found.json()["results"]]
    mine = client.get("/api/v1/needs", params={"page_size": 200}, headers=a).json()["items"]
    assert need["id"] in [n["id"] for n in mine]


def test_an_enterprise_edits_and_withdraws_only_its_own(client: TestClient, people: dict) -> None:
    a, b = people["enterprise"]["headers"], people["enterprise_b"]["headers"]
    public = client.post("/api/v1/needs", json=PUBLIC_NEED, headers=a).json()
    private = client.post("/api/v1/needs", json={**PUBLIC_NEED, "visibility": "private"}, headers=a).json()
    assert client.patch(f"/api/v1/needs/{public['id']}", json={"title": "改"}, headers=b).status_code == 403
    assert client.post(f"/api/v1/needs/{public['id']}/withdraw", headers=b).status_code == 403
    assert client.patch(f"/api/v1/needs/{private['id']}", json={"title": "改"}, headers=b).status_code == 404
    r = client.patch(f"/api/v1/needs/{public['id']}", json={"owner_id": people["orgs"]["ent_b"]}, headers=a)
    assert r.status_code == 422 and r.json()["field"] == "owner_id"  # a listing changes hands by no PATCH
    r = client.post("/api/v1/needs", json={**PUBLIC_NEED, "owner_id": people["orgs"]["ent_b"]}, headers=a)
    assert r.status_code == 403 and r.json()["field"] == "owner_id"
    assert (
        client.patch(f"/api/v1/needs/{public['id']}", json={"title": "锂电池热失控预警"}, headers=a).status_code == 200
    )
    assert client.post(f"/api/v1/needs/{public['id']}/withdraw", headers=a).json()["status"] == "withdrawn"
    # A university publishes achievements for itself and cannot touch another's.
    u = people["university"]["headers"]
    ach = client.post(
        "/api/v1/achievements", json={"title": "溶解氧光学传感器", "abstract": "荧光猝灭法测溶解氧"}, headers=u
    )
    assert ach.status_code == 201 and ach.json()["owner_id"] == people["orgs"]["uni"]
    staff_made = client.post("/api/v1/achievements", json={"title": "无主成果"}, headers=STAFF).json()
    assert client.patch(f"/api/v1/achievements/{staff_made['id']}", json={"title": "x"}, headers=u).status_code == 403


def test_failed_logins_are_rate_limited_per_username(client: TestClient, runtime: Runtime) -> None:
    org = organisation(client, "丁公司", "enterprise")
    sign_up(client, "ding-1", "enterprise", org)
    limit = runtime.settings.login_max_failures
    for _ in range(limit):
        assert (
            client.post("/api/v1/tokens", json={"username": "ding-1", "password": "wrong password"}).status_code == 401
        )
    r = client.post("/api/v1/tokens", json={"username": "ding-1", "password": PASSWORD})
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    # Another username is not affected; an unknown one fails like a wrong password.
    assert client.post("/api/v1/tokens", json={"username": "ent-b", "password": PASSWORD}).status_code == 201
    assert client.post("/api/v1/tokens", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    logged = client.get("/api/v1/audit", params={"action": "login.failed", "actor": "login:ding-1"}, headers=STAFF)
    assert logged.json()["total"] == limit


def test_expired_and_revoked_tokens_stop_working(client: TestClient, runtime: Runtime) -> None:
    org = organisation(client, "戊公司", "enterprise")
    user = sign_up(client, "wu-1", "enterprise", org)
    assert client.get("/api/v1/users/me", headers=user["headers"]).status_code == 200
    assert client.post("/api/v1/tokens/revoke", headers=user["headers"]).status_code == 204
    assert client.get("/api/v1/users/me", headers=user["headers"]).status_code == 401
    t = client.post("/api/v1/tokens", json={"username": "wu-1", "password": PASSWORD}).json()["token"]
    with runtime.session_factory() as session:
        session.execute(
            update(ApiToken).where(ApiToken.user_id == user["id"]).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    r = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {t}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_every_write_and_login_is_audited_and_the_log_is_append_only(
    client: TestClient, runtime: Runtime, people: dict
) -> None:
    a = people["enterprise"]["headers"]
    need = client.post("/api/v1/needs", json={**PUBLIC_NEED, "title": "审计用需求"}, headers=a).json()
    client.patch(f"/api/v1/needs/{need['id']}", json={"description": "改过"}, headers=a)
    got = client.get(
        "/api/v1/audit", params={"target_kind": "need", "target_id": str(need["id"])}, headers=STAFF
    ).json()
    actions = [e["action"] for e in got["items"]]
    assert actions == ["need.update", "need.create"]
    update_entry, create_entry = got["items"]
    assert create_entry["actor"] == "user:ent-a" and create_entry["user_id"] == people["enterprise"]["id"]
    assert create_entry["before_hash"] is None and create_entry["after_hash"]
    assert update_entry["before_hash"] == create_entry["after_hash"] != update_entry["after_hash"]
    logins = client.get("/api/v1/audit", params={"action": "login", "actor": "user:ent-a"}, headers=STAFF).json()
    assert logins["total"] >= 1
    assert client.get("/api/v1/audit", headers=a).status_code == 403
    with runtime.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("UPDATE audit_log SET actor = 'someone else'"))
    with runtime.engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("DELETE FROM audit_log"))
