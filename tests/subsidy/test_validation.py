"""Invalid input: schema errors and reference errors name the field; amounts are decimal strings on the fen."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import InvalidInput
from subsidy.schemas import EvaluateRequest, parse_yuan
from subsidy.service import check_references

BASE: dict[str, Any] = {
    "year": 2025,
    "parties": [
        {"id": "E1", "kind": "enterprise", "in_weihai": True, "has_rd_activity": True},
        {"id": "U1", "kind": "university", "in_weihai": True},
        {"id": "A1", "kind": "agency", "in_weihai": True, "filed": True},
    ],
    "contracts": [
        {
            "id": "C1",
            "type": "development",
            "buyer": "E1",
            "seller": "U1",
            "agency": "A1",
            "registered": True,
            "signed_on": "2025-01-01",
            "amount_yuan": "1000.00",
            "payments": [
                {"paid_on": "2025-02-01", "amount_yuan": "600.00"},
                {"paid_on": "2025-03-01", "amount_yuan": "400.00"},
            ],
        }
    ],
    "listings": [{"id": "L1", "kind": "tackling", "party": "E1", "accepted": True, "transaction_yuan": "10"}],
}


def _with(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0"),
        ("12", "12"),
        ("12.3", "12.3"),
        ("12.34", "12.34"),
        (" 7.00 ", "7.00"),
        (15, "15"),
        (Decimal("1.5"), "1.5"),
    ],
)
def test_amounts_accepted(value: object, expected: str) -> None:
    assert parse_yuan(value) == Decimal(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("12.345", "more than 2 decimal places"),
        ("-1", "negative"),
        ("-0.01", "negative"),
        (12.5, "JSON number"),
        (True, "JSON number"),
        ("1e5", "plain decimal"),
        ("NaN", "plain decimal"),
        ("１２", "plain decimal"),
        ("1234567890123456", "integer digits"),
        ("", "plain decimal"),
        (None, "decimal string"),
        (Decimal("Infinity"), "finite"),
        ("12.", "plain decimal"),
        (".5", "plain decimal"),
    ],
)
def test_amounts_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_yuan(value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["contracts"][0].update(amount_yuan="1000.001"), ("contracts", 0, "amount_yuan")),
        (
            lambda d: d["contracts"][0]["payments"][1].update(amount_yuan="-5"),
            ("contracts", 0, "payments", 1, "amount_yuan"),
        ),
        (lambda d: d["contracts"][0].update(type="licence"), ("contracts", 0, "type")),
        (lambda d: d["parties"][0].update(kind="ministry"), ("parties", 0, "kind")),
        (lambda d: d["listings"][0].update(kind="other"), ("listings", 0, "kind")),
        (lambda d: d["parties"][0].update(has_rd_activty=True), ("parties", 0, "has_rd_activty")),
        (lambda d: d["contracts"][0].update(signed_on="2025-02-30"), ("contracts", 0, "signed_on")),
        (lambda d: d.update(year=1999), ("year",)),
        (lambda d: d.pop("parties"), ("parties",)),
    ],
    ids=["3-decimals", "negative", "type", "kind", "listing-kind", "misspelt-key", "bad-date", "year", "no-parties"],
)
def test_schema_errors_name_the_field(change: Any, field: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as err:
        EvaluateRequest.model_validate(_with(change))
    assert err.value.errors()[0]["loc"] == field


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda d: d["contracts"][0].update(buyer="E9"), "contracts[0].buyer", "unknown party id 'E9'"),
        (lambda d: d["contracts"][0].update(seller="X"), "contracts[0].seller", "unknown party id"),
        (lambda d: d["contracts"][0].update(agency="X"), "contracts[0].agency", "unknown party id"),
        (lambda d: d["listings"][0].update(party="X"), "listings[0].party", "unknown party id"),
        (lambda d: d["parties"].append(dict(d["parties"][0])), "parties[3].id", "duplicate party id"),
        (lambda d: d["contracts"].append({**d["contracts"][0], "payments": []}), "contracts[1].id", "duplicate id"),
        (lambda d: d["listings"][0].update(id="C1"), "listings[0].id", "duplicate id 'C1'"),
        (
            lambda d: d["contracts"][0]["payments"][1].update(amount_yuan="400.01"),
            "contracts[0].payments[1].amount_yuan",
            "above the contract amount",
        ),
        (lambda d: d["contracts"][0].update(seller="E1"), "contracts[0].seller", "different parties"),
        (
            lambda d: d.update(
                evaluations=[
                    {"id": "V1", "measure": "9.2", "party": "A1", "grade": "good"},
                    {"id": "V2", "measure": "9.2", "party": "A1", "grade": "good"},
                ]
            ),
            "evaluations[1].party",
            "more than one 9.2 evaluation",
        ),
        (
            lambda d: d.update(loans=[{"id": "K1", "party": "Z", "filed_with_province": True, "balance_yuan": "1"}]),
            "loans[0].party",
            "unknown party id",
        ),
    ],
)
def test_reference_errors_name_the_field(change: Any, field: str, message: str) -> None:
    request = EvaluateRequest.model_validate(_with(change))
    with pytest.raises(InvalidInput) as err:
        check_references(request=request)
    assert err.value.field == field and message in err.value.detail and err.value.status == 422


def test_payments_equal_to_the_contract_amount_are_fine() -> None:
    check_references(request=EvaluateRequest.model_validate(BASE))
