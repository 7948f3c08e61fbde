"""Researchers as a supply side over HTTP (measures 11 and 12): profiles matched to enterprise needs (their
achievements as the achievement ranking orders them, their profiles by dense similarity, fused), a programme's
selection round solved by min-cost flow under preferences and refusals, and placements tracked from proposal to
completion."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.runtime import Runtime
from models.db import session_scope
from models.tables import Researcher
from tests.app.conftest import STAFF, organisation, sign_up
from workflow.researchers.service import profile_text, reembed_stale

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def supply(client: TestClient, people: dict[str, dict]) -> dict[str, Any]:
    orgs = people["orgs"]
    institute = organisation(client, "海洋食品研究所", "research_institute")
    sign_up(client, "inst-user", "university", institute)
    achievements = {}
    for key, title, abstract, owner in (
        ("membrane", "石墨烯改性反渗透复合膜", "提高海水淡化膜通量与抗污染性能，脱盐率99.7%", orgs["uni"]),
        ("composite", "碳纤维复合材料真空导入成型工艺", "游艇船体减重30%，适用于船舶轻量化", orgs["uni"]),
    ):
        body = {"title": title, "abstract": abstract, "owner_id": owner}
        r = client.post("/api/v1/achievements", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        achievements[key] = r.json()["id"]
    uni = people["university"]["headers"]
    profiles = {
        "membrane": {
            "name": "张膜",
            "title": "教授",
            "fields": ["膜分离", "海水淡化"],
            "self_description": "长期从事反渗透膜材料研究",
            "achievement_ids": [achievements["membrane"]],
        },
        "composite": {
            "name": "李纤",
            "title": "副教授",
            "fields": ["复合材料"],
            "self_description": "船舶复合材料成型与结构设计",
            "achievement_ids": [achievements["composite"]],
        },
    }
    researchers = {}
    for key, body in profiles.items():
        r = client.post("/api/v1/researchers", json=body, headers=uni)  # the university's own user, its own org
        assert r.status_code == 201, r.text
        assert r.json()["organisation_id"] == orgs["uni"] and r.json()["achievement_ids"] == body["achievement_ids"]
        researchers[key] = r.json()["id"]
    cold = {
        "name": "王鲜",
        "organisation_id": institute,
        "fields": ["冷链物流", "食品保鲜"],
        "self_description": "水产品冷链保鲜包装与货架期延长技术",
    }
    r = client.post("/api/v1/researchers", json=cold, headers=STAFF)
    assert r.status_code == 201, r.text
    researchers["cold"] = r.json()["id"]
    needs = {}
    for key, title, description, owner in (
        ("membrane", "海水淡化反渗透膜抗污染改性", "现有反渗透膜污染快、通量衰减，寻求改性膜材料", orgs["ent_a"]),
        ("cold", "冷链水产品保鲜包装", "冷冻鱼糜运输中品质下降，寻求保鲜包装与货架期延长方案", orgs["ent_b"]),
    ):
        r = client.post(
            "/api/v1/needs", json={"title": title, "description": description, "owner_id": owner}, headers=STAFF
        )
        assert r.status_code == 201, r.text
        needs[key] = r.json()["id"]
    return {"institute": institute, "achievements": achievements, "researchers": researchers, "needs": needs}


def test_profiles_are_checked_where_they_enter(
    client: TestClient, people: dict[str, dict], supply: dict[str, Any]
) -> None:
    uni = people["university"]["headers"]
    # Another organisation's achievement is not the researcher's; an enterprise has no researchers to offer.
    r = client.post(
        "/api/v1/researchers",
        json={"name": "赵", "achievement_ids": [supply["achievements"]["membrane"], 999999]},
        headers=uni,
    )
    assert r.status_code == 422 and r.json()["field"] == "achievement_ids.1", r.text
    r = client.post(
        "/api/v1/researchers", json={"name": "钱", "organisation_id": people["orgs"]["ent_a"]}, headers=STAFF
    )
    assert r.status_code == 422 and "universities and institutes" in r.json()["detail"]
    r = client.post("/api/v1/researchers", json={"name": "孙"}, headers=people["enterprise"]["headers"])
    assert r.status_code == 403
    # A university user adds researchers of its own organisation only.
    r = client.post("/api/v1/researchers", json={"name": "周", "organisation_id": supply["institute"]}, headers=uni)
    assert r.status_code == 403


def test_a_need_finds_researchers_by_their_achievements_and_their_profiles(
    client: TestClient, runtime: Runtime, people: dict[str, dict], supply: dict[str, Any]
) -> None:
    ids = supply["researchers"]
    ent_a = people["enterprise"]["headers"]
    hits = client.get(f"/api/v1/needs/{supply['needs']['membrane']}/researchers", headers=ent_a).json()
    first = hits[0]
    assert first["researcher"]["id"] == ids["membrane"], hits
    assert first["reasons"]["ranks"]["profile"] == 1
    assert first["reasons"]["achievements"][0]["id"] == supply["achievements"]["membrane"]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    # The cold-chain researcher has no achievement on the platform: the profile alone ranks them for a cold-chain need.
    hits = client.get(f"/api/v1/needs/{supply['needs']['cold']}/researchers", headers=STAFF).json()
    cold = next(h for h in hits if h["researcher"]["id"] == ids["cold"])
    assert cold["reasons"]["ranks"] == {"achievements": None, "profile": 1} and cold["reasons"]["achievements"] == []
    assert cold["reasons"]["profile_similarity"] > max(
        h["reasons"]["profile_similarity"] for h in hits if h["researcher"]["id"] != ids["cold"]
    )
    # A stored vector made by another encoder (before a swap) is never compared with this one's: the profile is
    # embedded again for the query. The stored bytes here point the wrong way, so using them would rank it last.
    with session_scope(runtime.write_session_factory) as session:
        row = session.get(Researcher, ids["cold"])
        row.profile_vector = (-np.frombuffer(row.profile_vector, dtype=np.float32)).tobytes()
        row.profile_model = "another-encoder"
    again = client.get(f"/api/v1/needs/{supply['needs']['cold']}/researchers", headers=STAFF).json()
    assert next(h for h in again if h["researcher"]["id"] == ids["cold"])["reasons"]["ranks"]["profile"] == 1
    # Start-up re-embeds it (once: the second pass finds nothing stale), and stored vectors are compared again.
    assert reembed_stale(session_factory=runtime.write_session_factory, embedder=runtime.embedder) == 1
    assert reembed_stale(session_factory=runtime.write_session_factory, embedder=runtime.embedder) == 0
    with runtime.session_factory() as session:
        row = session.get_one(Researcher, ids["cold"])
        assert row.profile_model == runtime.embedder.name
        stored = np.frombuffer(row.profile_vector, dtype=np.float32)
        assert float(stored @ runtime.embedder.encode_passages([profile_text(row)])[0]) > 0.99
    # A profile's text changes: its vector follows (the need now reads closest to the rewritten profile).
    r = client.patch(
        f"/api/v1/researchers/{ids['composite']}",
        json={"fields": ["冷链物流"], "self_description": "冷冻水产品保鲜包装材料与货架期延长"},
        headers=people["university"]["headers"],
    )
    assert r.status_code == 200, r.text
    hits = client.get(f"/api/v1/needs/{supply['needs']['cold']}/researchers", headers=STAFF).json()
    ranks = {h["researcher"]["id"]: h["reasons"]["ranks"]["profile"] for h in hits}
    assert ranks[ids["composite"]] < ranks[ids["membrane"]]
    # Another enterprise's user does not see the researchers (nor anything else) of a need it may not see.
    private = client.post(
        "/api/v1/needs",
        json={"title": "保密需求", "description": "内部", "visibility": "private"},
        headers=people["enterprise_b"]["headers"],
    ).json()["id"]
    assert client.get(f"/api/v1/needs/{private}/researchers", headers=ent_a).status_code == 404


def test_a_selection_round_places_researchers_and_placements_are_tracked(
    client: TestClient, people: dict[str, dict], supply: dict[str, Any]
) -> None:
    ids, needs, orgs = supply["researchers"], supply["needs"], people["orgs"]
    body = {"name": "2026 年科技专员选派", "kind": "tech_commissioner", "year": 2026}
    r = client.post("/api/v1/programmes", json=body, headers=STAFF)
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = client.put(f"/api/v1/programmes/{pid}/candidates", json={"researcher_ids": list(ids.values())}, headers=STAFF)
    assert r.status_code == 200 and r.json()["candidates"] == list(ids.values())
    ent_a, ent_b = people["enterprise"]["headers"], people["enterprise_b"]["headers"]
    assert (
        client.post(
            f"/api/v1/programmes/{pid}/requests", json={"need_id": needs["membrane"]}, headers=ent_a
        ).status_code
        == 201
    )
    # Only your own need; once per enterprise.
    assert (
        client.post(f"/api/v1/programmes/{pid}/requests", json={"need_id": needs["cold"]}, headers=ent_a).status_code
        == 404
    )
    assert (
        client.post(f"/api/v1/programmes/{pid}/requests", json={"need_id": needs["cold"]}, headers=ent_b).status_code
        == 201
    )
    assert (
        client.post(f"/api/v1/programmes/{pid}/requests", json={"need_id": needs["cold"]}, headers=ent_b).status_code
        == 409
    )
    # A third enterprise refuses every candidate: it is left out, and the answer says why.
    ent_c = organisation(client, "丙海洋科技", "enterprise")
    third = client.post(
        "/api/v1/needs", json={"title": "海洋牧场监测", "description": "水质监测", "owner_id": ent_c}, headers=STAFF
    ).json()["id"]
    assert client.post(f"/api/v1/programmes/{pid}/requests", json={"need_id": third}, headers=STAFF).status_code == 201
    for researcher in ids.values():
        pref = {"researcher_id": researcher, "level": 0, "organisation_id": ent_c}
        assert client.put(f"/api/v1/programmes/{pid}/preferences", json=pref, headers=STAFF).status_code == 200
    # Enterprise B refuses the membrane researcher; enterprise A wants them first.
    assert (
        client.put(
            f"/api/v1/programmes/{pid}/preferences", json={"researcher_id": ids["membrane"], "level": 0}, headers=ent_b
        ).status_code
        == 200
    )
    assert (
        client.put(
            f"/api/v1/programmes/{pid}/preferences", json={"researcher_id": ids["membrane"], "level": 3}, headers=ent_a
        ).status_code
        == 200
    )
    # Only an enterprise of the round states preferences, and only for candidates.
    bad = client.put(f"/api/v1/programmes/{pid}/preferences", json={"researcher_id": 999999, "level": 2}, headers=ent_a)
    assert bad.status_code == 422 and bad.json()["field"] == "researcher_id"

    # A candidate who leaves (inactive) takes no preference and is never placed, though still on the list.
    body = {
        "name": "赵离",
        "organisation_id": supply["institute"],
        "fields": ["海水淡化"],
        "self_description": "反渗透膜",
    }
    gone = client.post("/api/v1/researchers", json=body, headers=STAFF).json()["id"]
    candidates = [*ids.values(), gone]
    r = client.put(f"/api/v1/programmes/{pid}/candidates", json={"researcher_ids": candidates}, headers=STAFF)
    assert r.status_code == 200, r.text
    # The third enterprise, which refused everyone else, wants this one: only their leaving keeps it unplaced.
    want = {"researcher_id": gone, "level": 3, "organisation_id": ent_c}
    assert client.put(f"/api/v1/programmes/{pid}/preferences", json=want, headers=STAFF).status_code == 200
    assert client.patch(f"/api/v1/researchers/{gone}", json={"active": False}, headers=STAFF).status_code == 200
    late = client.put(f"/api/v1/programmes/{pid}/preferences", json={"researcher_id": gone, "level": 3}, headers=ent_a)
    assert late.status_code == 422 and "no longer active" in late.json()["detail"]
    # An enterprise reads the round: the candidates, and its own request and preferences only.
    seen = client.get(f"/api/v1/programmes/{pid}", headers=ent_a).json()
    assert seen["candidates"] == candidates
    assert seen["requests"] == [{"organisation_id": orgs["ent_a"], "need_id": needs["membrane"]}]
    assert {p["organisation_id"] for p in seen["preferences"]} == {orgs["ent_a"]}
    assert [p["id"] for p in client.get("/api/v1/programmes", headers=ent_b).json()] == [pid]
    assert client.get(f"/api/v1/programmes/{pid}", headers=people["university"]["headers"]).status_code == 403

    r = client.post(f"/api/v1/programmes/{pid}/assign", headers=STAFF)
    assert r.status_code == 200, r.text
    result = r.json()
    assert gone not in {p["researcher_id"] for p in result["placements"]}
    placed = {p["organisation_id"]: p for p in result["placements"]}
    assert placed[orgs["ent_a"]]["researcher_id"] == ids["membrane"]
    assert placed[orgs["ent_b"]]["researcher_id"] != ids["membrane"]  # refused, never assigned
    assert len({p["researcher_id"] for p in result["placements"]}) == len(result["placements"])  # one-to-one
    assert placed[orgs["ent_a"]]["basis"]["preference"] == 3 and placed[orgs["ent_a"]]["basis"]["match"]["score"] > 0
    assert [(u["organisation_id"], "refused" in u["reason"]) for u in result["unplaced"]] == [(ent_c, True)]
    assert client.post(f"/api/v1/programmes/{pid}/assign", headers=STAFF).status_code == 409
    assert (
        client.put(f"/api/v1/programmes/{pid}/candidates", json={"researcher_ids": []}, headers=STAFF).status_code
        == 409
    )

    # The placement is tracked: confirmed once both sides agree, in post, completed; steps are not skipped.
    placement = placed[orgs["ent_a"]]["id"]
    step = f"/api/v1/placements/{placement}/transitions"
    uni = people["university"]["headers"]
    assert client.post(step, json={"to": "in_post"}, headers=STAFF).status_code == 409
    assert client.post(step, json={"to": "confirmed"}, headers=ent_b).status_code == 404  # not theirs
    first = client.post(step, json={"to": "confirmed"}, headers=ent_a).json()
    assert first["state"] == "proposed" and first["enterprise_agreed_at"] and first["researcher_agreed_at"] is None
    assert client.post(step, json={"to": "confirmed"}, headers=ent_a).json() == first  # once is enough
    both = client.post(step, json={"to": "confirmed"}, headers=uni).json()  # the researcher's organisation
    assert both["state"] == "confirmed" and both["researcher_agreed_at"]
    r = client.post(step, json={"to": "in_post", "on": "2026-03-01"}, headers=STAFF)
    assert r.json()["state"] == "in_post" and r.json()["started_on"] == "2026-03-01"
    early = client.post(step, json={"to": "completed", "on": "2026-02-01"}, headers=STAFF)
    assert early.status_code == 422
    # The enterprise served says the service is completed, not the researcher's side.
    assert client.post(step, json={"to": "completed", "on": "2026-11-30"}, headers=uni).status_code == 403
    r = client.post(step, json={"to": "completed", "on": "2026-11-30"}, headers=ent_a)
    assert r.json()["state"] == "completed" and r.json()["ended_on"] == "2026-11-30"
    notes = [
        (e["from_state"], e["to_state"])
        for e in client.get(f"/api/v1/placements/{placement}/history", headers=ent_a).json()
    ]
    assert notes[:3] == [(None, "proposed"), ("proposed", "proposed"), ("proposed", "confirmed")]
    assert client.post(step, json={"to": "withdrawn"}, headers=STAFF).status_code == 409
    mine = client.get("/api/v1/placements", headers=ent_a).json()
    assert [p["id"] for p in mine] == [placement]
