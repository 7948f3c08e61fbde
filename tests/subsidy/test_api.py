"""POST /api/v1/subsidies/evaluate over HTTP: the contract's names, problem+json 422s, never a 5xx."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.subsidy.test_validation import BASE

URL = "/api/v1/subsidies/evaluate"


@pytest.fixture(scope="module")
def client(http_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(http_app, raise_server_exceptions=False) as c:
        yield c


def test_evaluate_follows_the_contract(client: TestClient) -> None:
    response = client.post(URL, json=BASE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"items", "rejections"}
    by_key = {(it["measure"], it["party"]): it for it in body["items"]}
    # 5% of 1,000 = 50; 1% of 1,000 = 10 (4.2 and 9.3); 20% of 10 = 2.
    assert {k: v["amount_yuan"] for k, v in by_key.items()} == {
        ("4.1", "E1"): "50.00",
        ("4.2", "U1"): "10.00",
        ("5.1", "E1"): "2.00",
        ("9.3", "A1"): "10.00",
    }
    item = by_key[("4.1", "E1")]
    assert {"measure", "party", "amount_yuan", "basis_yuan", "sources", "trace"} <= set(item)
    assert item["basis_yuan"] == "1000.00" and item["sources"] == ["C1"]
    steps = [step["step"] for step in item["trace"]]
    assert steps[0] == "parameter" and {"eligibility", "basis", "rate", "ceiling", "floor"} <= set(steps)
    assert all(isinstance(step["text"], str) and step["text"] for step in item["trace"])
    for rejection in body["rejections"]:
        assert {"measure", "party", "source", "reason"} <= set(rejection)


def test_unknown_party_is_a_422_problem(client: TestClient) -> None:
    data = copy.deepcopy(BASE)
    data["contracts"][0]["buyer"] = "NOPE"
    response = client.post(URL, json=data)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "contracts[0].buyer"
    assert "NOPE" in response.json()["detail"]


def test_three_decimal_places_is_a_422_problem(client: TestClient) -> None:
    data = copy.deepcopy(BASE)
    data["contracts"][0]["payments"][1]["amount_yuan"] = "400.005"
    response = client.post(URL, json=data)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "contracts[0].payments[1].amount_yuan"
    assert "2 decimal places" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["contracts"][0].update(amount_yuan="-1"), "contracts[0].amount_yuan"),
        (lambda d: d["contracts"][0].update(type="licence"), "contracts[0].type"),
        (lambda d: d["parties"][1].update(kind="school"), "parties[1].kind"),
        (lambda d: d["parties"].append(dict(d["parties"][0])), "parties[3].id"),
        (
            lambda d: d["contracts"][0]["payments"][0].update(amount_yuan="600.01"),
            "contracts[0].payments[1].amount_yuan",
        ),
    ],
)
def test_other_invalid_inputs_are_422(client: TestClient, change: Any, field: str) -> None:
    data = copy.deepcopy(BASE)
    change(data)
    response = client.post(URL, json=data)
    assert response.status_code == 422 and response.json()["field"] == field


def test_openapi_declares_the_problem_response(http_app: FastAPI) -> None:
    operation = http_app.openapi()["paths"][URL]["post"]
    assert "application/problem+json" in operation["responses"]["422"]["content"]
    assert operation["tags"] == ["subsidies"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """The valid body with one value replaced by arbitrary JSON at a random path."""
    paths = [
        ("year",),
        ("parties", 0, "kind"),
        ("parties", 1, "in_weihai"),
        ("contracts", 0, "amount_yuan"),
        ("contracts", 0, "payments"),
        ("contracts", 0, "payments", 0, "paid_on"),
        ("contracts", 0, "agency"),
        ("listings", 0, "transaction_yuan"),
        ("listings",),
        ("parties",),
        ("loans",),
        ("evaluations",),
    ]

    def put(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        data = copy.deepcopy(BASE)
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return data

    return st.builds(put, st.sampled_from(paths), _json)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_mutations())
def test_never_a_5xx(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(URL, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code in (200, 422), response.text
