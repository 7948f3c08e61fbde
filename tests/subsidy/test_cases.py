"""Clause-by-clause fixtures (cases/*.yaml): expected items, amounts, ceilings and rejections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from subsidy.schemas import EvaluateResponse
from subsidy.service import evaluate
from tests.subsidy.conftest import CASES, request_of

CASE_FILES = sorted(CASES.glob("*.yaml"))


def _runs(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "runs" in case:
        return [
            (f"{path.stem}-{run['year']}", {**case["request"], "year": run["year"]}, run["expect"])
            for run in case["runs"]
        ]
    return [(path.stem, case["request"], case["expect"])]


RUNS = [run for path in CASE_FILES for run in _runs(path)]


def _check_items(response: EvaluateResponse, expect: dict[str, Any]) -> None:
    only = expect.get("only_measures")
    got = {(it.measure, it.party): it for it in response.items if only is None or it.measure in only}
    want = {(e["measure"], e["party"]): e for e in expect.get("items", [])}
    assert sorted(got) == sorted(want), "items differ (measure, party)"
    for key, e in want.items():
        item = got[key]
        dumped = item.model_dump(mode="json")
        assert dumped["amount_yuan"] == e["amount_yuan"], key
        for name in ("basis_yuan", "ceiling_yuan", "sources"):
            if name in e:
                assert dumped[name] == e[name], (key, name)
        if "ceiling_bound" in e:
            assert item.ceiling_bound == e["ceiling_bound"], key
        if "non_stacking" in e:
            assert item.non_stacking is not None and item.non_stacking.chosen == e["non_stacking"], key
        assert item.trace, key


def _check_rejections(response: EvaluateResponse, expect: dict[str, Any]) -> None:
    got = {(r.measure, r.party, r.source, r.condition): r for r in response.rejections}
    for e in expect.get("rejections", []):
        key = (e["measure"], e["party"], e["source"], e["condition"])
        assert key in got, f"missing rejection {key}; got {sorted(got)}"
        rejection = got[key]
        assert rejection.reason.startswith(rejection.clause), rejection.reason
        if "reason_contains" in e:
            assert e["reason_contains"] in rejection.reason
    if expect.get("exact_rejections"):
        assert len(got) == len(expect.get("rejections", []))


def _check_pending(response: EvaluateResponse, expect: dict[str, Any]) -> None:
    got = {(p.measure, p.party, p.source): p.model_dump(mode="json") for p in response.pending}
    want = {(e["measure"], e["party"], e["source"]): e for e in expect.get("pending", [])}
    only = expect.get("only_measures")
    assert {k for k in got if only is None or k[0] in only} == set(want), "pending sources differ"
    for key, e in want.items():
        assert got[key]["ceiling_yuan"] == e["ceiling_yuan"], key
        assert got[key]["reason"].startswith(got[key]["clause"]), key
    # Pending is never money: no item of the same measure and party comes from a pending source.
    for item in response.items:
        assert not {s for s in item.sources if (item.measure, item.party, s) in got}, item


@pytest.mark.parametrize(("name", "data", "expect"), RUNS, ids=[run[0] for run in RUNS])
def test_case(name: str, data: dict[str, Any], expect: dict[str, Any]) -> None:
    response = evaluate(request=request_of(data))
    _check_items(response, expect)
    _check_pending(response, expect)
    _check_rejections(response, expect)


def test_every_money_measure_has_a_case() -> None:
    measures: set[str] = set()
    for _, _, expect in RUNS:
        measures |= {e["measure"] for e in expect.get("items", [])}
    assert measures == {
        "2",
        "3",
        "4.1",
        "4.2",
        "5.1",
        "5.2",
        "6",
        "7",
        "8",
        "9.1",
        "9.2",
        "9.3",
        "10.1",
        "10.2",
        "14",
        "15.1",
        "15.2",
    }
