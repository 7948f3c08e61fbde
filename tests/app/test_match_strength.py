"""What a match answer says beyond the order: each hit's calibrated strength, "nothing good" when the best hit is
weak, and one result for the same achievement filed twice."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import STAFF

DEMO = Path(__file__).resolve().parents[2] / "ingest" / "demo_data"
SHIPPED = 300  # real shipped achievements (CSL abstracts, patents): BM25 and dense scores on a realistic scale

TWIN = {
    "title": "一种基于深度学习的输电线路绝缘子缺陷检测方法",
    "abstract": "针对无人机巡检图像中绝缘子自爆、破损等缺陷，提出一种改进的目标检测网络，"
    "在自建数据集上检测精度达到百分之九十二，可部署于边缘计算设备。",
    "keywords": ["绝缘子", "缺陷检测", "深度学习"],
    "field": "电子信息",
}


@pytest.fixture(scope="module")
def catalogue(client: TestClient) -> dict[str, int]:
    with gzip.open(DEMO / "achievements.jsonl.gz", "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for _, line in zip(range(SHIPPED), handle, strict=False)]
    for row in rows:
        body = {k: row[k] for k in ("external_id", "title", "abstract", "keywords", "field")}
        assert client.post("/api/v1/achievements", json=body, headers=STAFF).status_code == 201
    ids = {}
    # The same result filed by two units: one copy re-typed in traditional script, full-width punctuation and spaces.
    retyped = {
        **TWIN,
        "title": "一種基於深度學習的輸電線路絕緣子缺陷檢測方法",
        "abstract": TWIN["abstract"].replace("，", "， ").replace("。", "．") + "（第二单位登记）",
    }
    for name, body in (("first", TWIN), ("twin", retyped)):
        r = client.post("/api/v1/achievements", json={**body, "external_id": f"dup-{name}"}, headers=STAFF)
        assert r.status_code == 201 and r.json()["searchable"], r.text
        ids[name] = r.json()["id"]
    return ids


def test_near_identical_achievements_collapse_under_the_first(client: TestClient, catalogue: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "输电线路绝缘子缺陷的无人机巡检图像检测", "k": 5})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    ids = [hit["id"] for hit in results]
    # One of the two copies answers; the other is listed under it, never as a result of its own.
    assert len({catalogue["first"], catalogue["twin"]} & set(ids)) == 1
    head = next(hit for hit in results if hit["id"] in (catalogue["first"], catalogue["twin"]))
    assert [d["id"] for d in head["duplicates"]] == [({catalogue["first"], catalogue["twin"]} - {head["id"]}).pop()]
    assert all(not hit["duplicates"] for hit in results if hit is not head)
    # Collapsing does not cost results: k distinct answers still come back.
    assert len(results) == 5


def test_different_results_are_not_collapsed(client: TestClient, catalogue: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "锂离子电池电极材料", "k": 10})
    assert all(not hit["duplicates"] for hit in r.json()["results"])


def test_every_hit_carries_its_calibrated_strength(client: TestClient, catalogue: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "输电线路绝缘子缺陷的无人机巡检图像检测", "k": 10})
    body = r.json()
    assert body["ranker_version"].startswith("learned-")
    hits = body["results"]
    assert all(0.0 <= hit["probability"] <= 1.0 for hit in hits)
    assert all(hit["strength"] in ("strong", "possible", "weak") for hit in hits)
    # The probability follows the score (a calibration never reorders).
    assert [h["probability"] for h in hits] == sorted((h["probability"] for h in hits), reverse=True)
    # A need stated in the words of a filed result is not "nothing good".
    assert hits[0]["id"] in (catalogue["first"], catalogue["twin"]) and hits[0]["strength"] != "weak"
    assert body["weak_only"] is False and body["notice"] is None


def test_a_query_nothing_answers_says_so(client: TestClient, catalogue: dict[str, int]) -> None:
    r = client.post("/api/v1/match", json={"text": "海水淡化的膜材料", "k": 10})
    body = r.json()
    assert body["results"], "the rows are still shown"
    assert body["weak_only"] is True and "没有找到有把握的匹配" in body["notice"]
    assert all(hit["strength"] == "weak" for hit in body["results"])
    page = client.get("/", params={"q": "海水淡化的膜材料"})
    assert page.status_code == 200 and "没有找到有把握的匹配" in page.text and "弱匹配" in page.text
    strong = client.get("/", params={"q": "输电线路绝缘子缺陷的无人机巡检图像检测"})
    assert "没有找到有把握的匹配" not in strong.text and "相同内容的其他登记" in strong.text
