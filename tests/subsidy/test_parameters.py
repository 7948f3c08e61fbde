"""Parameter files: every money clause is there with its clause and words; the schema refuses unknown keys."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from subsidy.parameters import (
    DEFAULT_PARAMS_FILE,
    MEASURE_ORDER,
    Param,
    ParameterFileError,
    YuanParam,
    load_parameters,
    parse_parameters,
)
from subsidy.service import evaluate
from tests.subsidy.conftest import draft_yaml, request_of, write_yaml

SEED = Path(__file__).resolve().parents[3] / "shared" / "seed" / "000_a2c5bfed3da1a70b.txt"

# The money figures of the seed, read clause by clause.
EXPECTED: dict[tuple[str, str], str] = {
    ("2", "ceiling"): "100000",  # 第2条 最高10万元
    ("3", "ceiling"): "30000",  # 第3条 最高3万元
    ("4.1", "rate"): "0.05",  # 第4条 5%
    ("4.1", "annual_ceiling"): "300000",  # 单个企业年度最高30万元
    ("4.2", "rate"): "0.01",  # 1%
    ("4.2", "annual_ceiling"): "2000000",  # 单个单位年度最高200万元
    ("5.1", "rate"): "0.20",
    ("5.1", "ceiling"): "500000",  # 第5条 最高50万元
    ("5.2", "rate"): "0.20",
    ("5.2", "ceiling"): "2000000",  # 最高200万元
    ("6", "ceiling"): "500000",  # 第6条 最高50万元
    ("7", "ceiling"): "1000000",  # 第7条 最高100万元
    ("8", "ceiling"): "500000",  # 第8条 最高50万元
    ("8", "workload_threshold"): "1000000",  # 100万元(含)以上
    ("9.1", "ceiling"): "100000",  # 第9条 最高10万元
    ("9.2", "ceiling_excellent"): "100000",
    ("9.2", "ceiling_good"): "60000",
    ("9.3", "rate"): "0.01",
    ("9.3", "annual_ceiling"): "500000",
    ("10.1", "ceiling_national"): "200000",  # 第10条
    ("10.1", "ceiling_provincial"): "100000",
    ("10.2", "annual_ceiling"): "500000",
    ("14", "amount"): "200000",  # 第14条 一次性20万元
    ("15.1", "rate"): "0.70",  # 第15条
    ("15.1", "rate_early_stage"): "0.90",
    ("15.1", "balance_limit"): "20000000",
    ("15.2", "ceiling"): "500000",
}


def test_every_money_clause_is_in_the_file_with_its_clause(params: Any) -> None:
    for (measure_id, name), value in EXPECTED.items():
        measure = params.measures.by_id(measure_id)
        param: Param = getattr(measure, name)
        assert param.value == Decimal(value), (measure_id, name)
        assert param.clause.startswith("第") and measure.clause in param.clause
        assert param.window.start == dt.date(2025, 1, 1) and param.window.end == dt.date(2026, 12, 31)
    money_ids = [measure_id for measure_id, _ in params.measures.money()]
    assert {m for m, _ in EXPECTED} == set(money_ids)
    non_monetary = [measure_id for measure_id, _ in params.measures.non_monetary()]
    assert {"4.3", "11", "12", "13", "16"} <= set(non_monetary)
    assert sorted(money_ids + non_monetary, key=MEASURE_ORDER.index) == list(MEASURE_ORDER)


@pytest.mark.skipif(not SEED.is_file(), reason="the seed text is not next to the repository")
def test_every_quote_is_in_the_seed(params: Any) -> None:
    text = SEED.read_text(encoding="utf-8")
    for _, measure in params.measures.money():
        for name, param in measure.parameters():
            if param.quote:
                assert param.quote in text, (measure.title, name, param.quote)


def _variant(tmp_path: Path, change: Any) -> Path:
    data = draft_yaml()
    change(data)
    return write_yaml(tmp_path / "variant.yaml", data)


def test_misspelt_parameter_key_is_an_error(tmp_path: Path) -> None:
    def misspell(data: dict[str, Any]) -> None:
        data["measures"]["4.1"]["rat"] = data["measures"]["4.1"].pop("rate")

    with pytest.raises(ParameterFileError) as err:
        load_parameters(_variant(tmp_path, misspell))
    assert "measures.4.1.rat" in str(err.value) and "measures.4.1.rate" in str(err.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["measures"]["4.1"]["rate"].update(valeu="0.05"), "valeu"),
        (lambda d: d.update(effectiv={"from": "2025-01-01"}), "effectiv"),
        (lambda d: d["measures"].update({"4.4": d["measures"]["4.1"]}), "4.4"),
        (lambda d: d["measures"].pop("9.3"), "9.3"),
        (lambda d: d["measures"]["4.1"]["rate"].update(unit="percent"), "unit"),
        (lambda d: d["measures"]["4.1"]["rate"].update(value="5"), "ratio"),
        (lambda d: d["measures"]["5.1"]["ceiling"].update(value="500000.001"), "2 decimal places"),
        (lambda d: d["measures"]["4.1"]["contract_types"].update(value=["development", "licence"]), "contract_types"),
        (lambda d: d["measures"]["9.2"]["non_stacking_rule"].update(value="both"), "non_stacking_rule"),
        (lambda d: d["measures"]["4.2"]["require_registered"].update(value="yes"), "require_registered"),
        (lambda d: d.update(effective={"from": "2026-01-01", "to": "2025-01-01"}), "starts"),
        (lambda d: d["measures"]["4.1"]["rate"].pop("clause"), "clause"),
    ],
    ids=[
        "param-key",
        "top-key",
        "unknown-measure",
        "missing-measure",
        "unit",
        "ratio>1",
        "fen",
        "type",
        "rule",
        "strict-flag",
        "window",
        "no-clause",
    ],
)
def test_schema_errors(tmp_path: Path, change: Any, message: str) -> None:
    with pytest.raises(ParameterFileError) as err:
        load_parameters(_variant(tmp_path, change))
    assert message in str(err.value)


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    text = DEFAULT_PARAMS_FILE.read_text(encoding="utf-8")
    path.write_text(text.replace("version: weihai-2025-draft", "version: a\nversion: b"), encoding="utf-8")
    with pytest.raises(ParameterFileError, match="duplicate key 'version'"):
        load_parameters(path)


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ParameterFileError, match="cannot read"):
        load_parameters(tmp_path / "absent.yaml")
    with pytest.raises(ParameterFileError, match="mapping"):
        parse_parameters(["not", "a", "mapping"])


def _one_contract(paid_on: str) -> dict[str, Any]:
    return {
        "year": int(paid_on[:4]),
        "parties": [
            {"id": "E1", "kind": "enterprise", "in_weihai": True, "has_rd_activity": True},
            {"id": "U1", "kind": "university", "in_weihai": True},
        ],
        "contracts": [
            {
                "id": "C1",
                "type": "development",
                "buyer": "E1",
                "seller": "U1",
                "registered": True,
                "signed_on": "2025-01-01",
                "amount_yuan": "200000",
                "payments": [{"paid_on": paid_on, "amount_yuan": "100000"}],
            }
        ],
    }


def test_window_is_settable_and_a_payment_outside_it_is_rejected() -> None:
    later = load_parameters(effective_from=dt.date(2025, 7, 1), effective_to=dt.date(2027, 6, 30))
    assert later.measures.m4_1.rate.window.start == dt.date(2025, 7, 1)
    response = evaluate(request=request_of(_one_contract("2025-03-01")), params=later)
    assert response.items == []
    reasons = {(r.measure, r.condition): r.reason for r in response.rejections}
    assert "outside the policy window" in reasons[("4.1", "payment_in_policy_window")]
    assert "2025-03-01" in reasons[("4.1", "payment_in_policy_window")]
    assert "第4条" in reasons[("4.1", "payment_in_policy_window")]
    # The same payment in mid-2027 is inside the moved window.
    response = evaluate(request=request_of(_one_contract("2027-03-01")), params=later)
    assert [(it.measure, str(it.amount_yuan)) for it in response.items] == [("4.1", "5000.00"), ("4.2", "1000.00")]


def test_a_parameter_window_of_its_own_applies_to_that_measure(tmp_path: Path) -> None:
    def from_july(data: dict[str, Any]) -> None:
        data["measures"]["4.1"]["rate"]["effective"] = {"from": "2025-07-01", "to": "2026-12-31"}
        data["measures"]["4.1"]["rate"]["value"] = "0.06"

    params = load_parameters(_variant(tmp_path, from_july))
    march = evaluate(request=request_of(_one_contract("2025-03-01")), params=params)
    assert [it.measure for it in march.items] == ["4.2"]  # 4.2 keeps the policy window
    august = evaluate(request=request_of(_one_contract("2025-08-01")), params=params)
    item = next(it for it in august.items if it.measure == "4.1")
    assert str(item.amount_yuan) == "6000.00"
    rate_step = next(s for s in item.trace if s.step == "parameter" and s.values["name"] == "rate")
    assert rate_step.values["effective_from"] == "2025-07-01" and rate_step.values["value"] == "0.06"


def test_a_measure_window_applies_to_its_parameters(tmp_path: Path) -> None:
    def measure_window(data: dict[str, Any]) -> None:
        data["measures"]["14"]["effective"] = {"from": "2026-01-01", "to": "2026-12-31"}

    params = load_parameters(_variant(tmp_path, measure_window))
    assert isinstance(params.measures.m14.amount, YuanParam)
    assert params.measures.m14.amount.window.start == dt.date(2026, 1, 1)
    assert params.measures.m4_1.rate.window.start == dt.date(2025, 1, 1)


def test_unquoted_measure_ids_are_read_as_text() -> None:
    data = draft_yaml()
    data["measures"] = {(float(k) if "." in k else int(k)): v for k, v in data["measures"].items()}
    assert parse_parameters(data).measures.m4_1.rate.value == Decimal("0.05")
