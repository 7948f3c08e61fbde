"""Demand lists over HTTP: compiled from published public needs, exported to the bureau's workbook layout (a cover
with counts, a sheet per field), edited offline (a row changed, a row added, bad rows), imported back: the change
applies, each bad row is named, the earlier version is kept."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from tests.app.conftest import STAFF

pytestmark = pytest.mark.slow

NEEDS = [
    ("高盐废水零排放处理工艺", "海洋化工", "环翠区", "public"),
    ("海参育苗水质在线监测", "海洋化工", "荣成市", "public"),
    ("数控机床热误差补偿", "智能制造", "文登区", "public"),
    ("轮胎缺陷视觉检测", "智能制造", "高区", "public"),
    ("内部工艺改进（不公开）", "智能制造", "高区", "private"),
]


@pytest.fixture(scope="module")
def needs(client: TestClient, people: dict[str, dict]) -> list[int]:
    out = []
    for title, field, region, visibility in NEEDS:
        body = {"title": title, "description": title + "，寻求合作", "field": field, "region": region}
        body |= {"visibility": visibility, "owner_id": people["orgs"]["ent_a"]}
        r = client.post("/api/v1/needs", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def _workbook(client: TestClient, list_id: int) -> Any:
    r = client.get(f"/api/v1/lists/{list_id}.xlsx", headers=STAFF)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxml"), r.text
    return load_workbook(io.BytesIO(r.content))


def _upload(client: TestClient, list_id: int, book: Any) -> Any:
    out = io.BytesIO()
    book.save(out)
    files = {"file": ("list.xlsx", out.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")}
    return client.post(f"/api/v1/lists/{list_id}/import", files=files, headers=STAFF)


def test_a_list_goes_out_to_excel_and_comes_back_edited(client: TestClient, needs: list[int]) -> None:
    r = client.post(
        "/api/v1/lists",
        json={"kind": "needs", "title": "2026 年下半年企业产业技术需求清单", "period": "2026H2"},
        headers=STAFF,
    )
    assert r.status_code == 201, r.text
    catalogue = r.json()
    listed = {i["listing_id"] for i in catalogue["items"]}
    assert set(needs[:4]) <= listed and needs[4] not in listed  # the private need is never on a circulated list
    assert catalogue["counts"]["海洋化工"] >= 2 and catalogue["version"] == 1
    assert all(i["matches"].endswith(f"/needs/{i['listing_id']}/matches") for i in catalogue["items"])
    list_id = catalogue["id"]

    book = _workbook(client, list_id)
    assert book.sheetnames[0] == "封面" and {"海洋化工", "智能制造"} <= set(book.sheetnames)
    cover = {row[0]: row[1] for row in book["封面"].iter_rows(values_only=True) if row and row[0]}
    assert cover["条目总数"] == len(catalogue["items"]) and cover["海洋化工"] == catalogue["counts"]["海洋化工"]

    # Offline: mark the zero-discharge need as an industry-chain common problem co-signed by two firms...
    sheet = book["海洋化工"]
    header = [c.value for c in sheet[1]]
    col = {name: header.index(name) + 1 for name in header}
    target_row = next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, col["清单对象编号"]).value == needs[0])
    sheet.cell(target_row, col["共性难题"]).value = "是"
    sheet.cell(target_row, col["联合提出单位"]).value = "甲科技有限公司、乙制造股份公司"
    sheet.cell(target_row, col["产业链"]).value = "海洋化工"
    # ...and add bad rows: an unknown item, a 共性难题 that is neither 是 nor 否, the private need as a new row.
    sheet.append([999999, None, "不存在的条目", "海洋化工", "", "", "否", "", ""])
    bad_flag_row = [sheet.cell(2, c).value for c in range(1, len(header) + 1)]
    bad_flag_row[col["共性难题"] - 1] = "也许"
    sheet.append(bad_flag_row)
    sheet.append([None, needs[4], "内部工艺改进", "智能制造", "", "", "否", "", ""])
    rows_before = sheet.max_row

    r = _upload(client, list_id, book)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["updated"] == 1 and report["added"] == 0 and report["version"] == 2
    errors = {(e["sheet"], e["row"]): e for e in report["errors"]}
    assert set(errors) == {("海洋化工", rows_before - 2), ("海洋化工", rows_before - 1), ("海洋化工", rows_before)}
    assert errors[("海洋化工", rows_before - 2)]["field"] == "编号"
    assert (
        errors[("海洋化工", rows_before - 1)]["field"] == "共性难题"
        and "也许" in errors[("海洋化工", rows_before - 1)]["reason"]
    )
    assert "not public" in errors[("海洋化工", rows_before)]["reason"]

    after = client.get(f"/api/v1/lists/{list_id}", headers=STAFF).json()
    item = next(i for i in after["items"] if i["listing_id"] == needs[0])
    assert item["common_problem"] is True and item["co_signers"] == "甲科技有限公司、乙制造股份公司"
    assert item["industry_chain"] == "海洋化工"
    # The version before the import is kept.
    versions = client.get(f"/api/v1/lists/{list_id}/versions", headers=STAFF).json()
    assert [v["version"] for v in versions] == [1]
    old = next(i for i in versions[0]["items"] if i["listing_id"] == needs[0])
    assert old["common_problem"] is False
    # The next export carries the change; importing it unchanged changes nothing.
    again = _workbook(client, list_id)
    r = _upload(client, list_id, again)
    assert r.json()["updated"] == 0 and r.json()["errors"] == [] and r.json()["version"] == 2


def test_a_row_added_offline_joins_the_list(client: TestClient, needs: list[int]) -> None:
    r = client.post(
        "/api/v1/lists",
        json={"kind": "needs", "title": "智能制造专项清单", "period": "2026", "listing_ids": [needs[2]]},
        headers=STAFF,
    )
    assert r.status_code == 201, r.text
    list_id = r.json()["id"]
    book = _workbook(client, list_id)
    book["智能制造"].append([None, needs[3], "轮胎缺陷视觉检测", "智能制造", "高区", "轮胎", "否", "", "线下补充"])
    report = _upload(client, list_id, book).json()
    assert (report["added"], report["errors"]) == (1, [])
    items = client.get(f"/api/v1/lists/{list_id}", headers=STAFF).json()["items"]
    assert {i["listing_id"] for i in items} == {needs[2], needs[3]}
    # A private need cannot be compiled in by id either; a non-workbook upload is refused naming the file.
    r = client.post(
        "/api/v1/lists",
        json={"kind": "needs", "title": "x", "period": "2026", "listing_ids": [needs[4]]},
        headers=STAFF,
    )
    assert r.status_code == 422 and "listing_ids" in r.text
    r = client.post(
        f"/api/v1/lists/{list_id}/import",
        files={"file": ("list.xlsx", b"not a zip", "application/octet-stream")},
        headers=STAFF,
    )
    assert r.status_code == 422 and "file" in r.text
