"""Properties: no item above its ceiling, yearly ceilings hold for any split, order does not matter, idempotent."""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_DOWN, Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from subsidy.parameters import default_parameters
from subsidy.schemas import EvaluateRequest
from subsidy.service import evaluate
from tests.subsidy.conftest import request_of

FEN = Decimal("0.01")


def floor_fen(amount: Decimal) -> Decimal:
    return amount.quantize(FEN, rounding=ROUND_DOWN)


PARAMS = default_parameters()
M = PARAMS.measures
SETTINGS = settings(max_examples=60, deadline=None)

KINDS = ["enterprise", "university", "research_institute", "new_rd_institution", "agency", "bank"]
LEVELS = ["national", "provincial", "municipal"]
GRADES = ["excellent", "good", "qualified", "unqualified"]

fen = st.integers(min_value=0, max_value=10**11)  # up to ¥1,000,000,000.00
opt_fen = st.none() | fen
likely = st.sampled_from([True, True, True, True, False])
opt_likely = st.sampled_from([True, True, True, False, None])
dates = st.dates(min_value=dt.date(2024, 10, 1), max_value=dt.date(2027, 3, 31))
# Boundary amounts around the thresholds and ceilings of the text, in fen.
near = st.sampled_from(
    [
        99_999_999,
        100_000_000,
        3_000_000,
        3_000_001,
        10_000_000,
        10_000_001,
        50_000_000,
        50_000_001,
        250_000_000,
        250_000_001,
        600_000_000,
        600_000_020,
        2_000_000_000_000,
    ]
)


def yuan(amount: int) -> str:
    """Fen as a decimal string in yuan."""
    return f"{amount // 100}.{amount % 100:02d}"


def _opt_yuan(amount: int | None) -> str | None:
    return None if amount is None else yuan(amount)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid request touching every kind of input, biased towards eligible rows and boundary amounts."""
    kinds = [*KINDS, *draw(st.lists(st.sampled_from(KINDS), max_size=3))]
    parties = [
        {
            "id": f"P{i}",
            "kind": kind,
            "in_weihai": draw(likely),
            "has_rd_activity": draw(opt_likely),
            "public_institution": draw(opt_likely),
            "filed": draw(opt_likely),
            "tech_sme": draw(opt_likely),
            "early_stage_assessed": draw(opt_likely),
        }
        for i, kind in enumerate(kinds)
    ]

    def pick(*wanted: str) -> str:
        pool = [p["id"] for p in parties if p["kind"] in wanted] if draw(likely) else []
        return draw(st.sampled_from(pool or [p["id"] for p in parties]))

    money = fen | near
    opt_money = st.none() | money
    contracts = []
    for i in range(draw(st.integers(min_value=0, max_value=5))):
        buyer = pick("enterprise")
        seller = pick("university", "research_institute", "new_rd_institution")
        if seller == buyer:
            continue
        payments = draw(st.lists(st.tuples(dates, money), max_size=4))
        total = sum(amount for _, amount in payments) + draw(st.integers(min_value=0, max_value=10**6))
        contracts.append(
            {
                "id": f"C{i}",
                "type": draw(st.sampled_from(["development", "transfer", "development", "consulting", "service"])),
                "buyer": buyer,
                "seller": seller,
                "agency": pick("agency") if draw(likely) else None,
                "registered": draw(likely),
                "signed_on": "2025-01-01",
                "amount_yuan": yuan(total),
                "payments": [{"paid_on": d.isoformat(), "amount_yuan": yuan(a)} for d, a in payments],
            }
        )
    listings = [
        {
            "id": f"L{i}",
            "kind": draw(st.sampled_from(["tackling", "transformation"])),
            "party": pick(*KINDS),
            "accepted": draw(opt_likely),
            "transaction_yuan": _opt_yuan(draw(opt_money)),
            "target_yuan": _opt_yuan(draw(opt_money)),
        }
        for i in range(draw(st.integers(0, 4)))
    ]
    activities = [
        {
            "id": f"A{i}",
            "party": pick(*KINDS),
            "filed": draw(likely),
            "selected": draw(opt_likely),
            "assessed_yuan": _opt_yuan(draw(opt_money)),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    evaluations = []
    agencies: set[str] = set()
    for i in range(draw(st.integers(0, 5))):
        measure = draw(st.sampled_from(["3", "6", "9.2"]))
        party = pick({"3": "enterprise", "6": "university", "9.2": "agency"}[measure])
        if measure == "9.2":
            if party in agencies:
                continue
            agencies.add(party)
        facility = {"3": "cloud_rd_center", "6": "pilot_base", "9.2": None}[measure] if draw(likely) else None
        evaluations.append(
            {
                "id": f"V{i}",
                "measure": measure,
                "party": party,
                "facility": facility,
                "filed": draw(opt_likely),
                "selected": draw(opt_likely),
                "grade": draw(st.sampled_from(["excellent", "good", "excellent", "qualified", None])),
                "assessed_yuan": _opt_yuan(draw(opt_money)),
                "provincial_yuan": _opt_yuan(draw(opt_money)),
            }
        )
    recognitions = []
    for i in range(draw(st.integers(0, 3))):
        measure = draw(st.sampled_from(["7", "9.1", "10.1"]))
        recognitions.append(
            {
                "id": f"R{i}",
                "measure": measure,
                "party": pick("agency" if measure == "9.1" else "enterprise"),
                "level": draw(st.sampled_from(LEVELS)),
                "first_time": draw(likely),
                "assessed_yuan": _opt_yuan(draw(opt_money)),
            }
        )
    landings = [
        {
            "id": f"G{i}",
            "party": pick("enterprise"),
            "via_exchange_event": draw(likely),
            "registered": draw(likely),
            "operating_normally": draw(likely),
            "physical_workload_yuan": yuan(draw(money)),
            "assessed_yuan": _opt_yuan(draw(opt_money)),
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    studios = [
        {
            "id": f"S{i}",
            "party": pick("enterprise", "university"),
            "construction_completed": draw(likely),
            "grade": draw(st.sampled_from(["excellent", "excellent", "good"])),
        }
        for i in range(draw(st.integers(0, 2)))
    ]
    trainings = [
        {
            "id": f"T{i}",
            "party": pick("university", "agency"),
            "base_level": draw(st.sampled_from(["national", "provincial", "municipal"])),
            "qualified_and_filed": draw(likely),
            "trainees_work_in_weihai": draw(likely),
            "waived_fees_yuan": yuan(draw(money)),
            "provincial_yuan": _opt_yuan(draw(st.none() | money)),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    loans = [
        {
            "id": f"K{i}",
            "party": pick("enterprise"),
            "bank": pick("bank") if draw(likely) else None,
            "filed_with_province": draw(likely),
            "balance_yuan": yuan(draw(money)),
            "non_performing_principal_yuan": _opt_yuan(draw(opt_money)),
            "repaid_on_time": draw(opt_likely),
            "interest_subsidy_yuan": _opt_yuan(draw(opt_money)),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    return {
        "year": draw(st.sampled_from([2025, 2025, 2026, 2024, 2027])),
        "parties": parties,
        "contracts": contracts,
        "listings": listings,
        "activities": activities,
        "evaluations": evaluations,
        "recognitions": recognitions,
        "landings": landings,
        "expert_studios": studios,
        "trainings": trainings,
        "loans": loans,
    }


# The ceiling parameters each measure may apply, read from the parameter file, not from the items.
ANNUAL = {
    "4.1": M.m4_1.annual_ceiling.value,
    "4.2": M.m4_2.annual_ceiling.value,
    "9.3": M.m9_3.annual_ceiling.value,
    "10.2": M.m10_2.annual_ceiling.value,
    "15.2": M.m15_2.ceiling.value,
}
PER_SOURCE = {
    "2": {M.m2.ceiling.value},
    "3": {M.m3.ceiling.value},
    "5.1": {M.m5_1.ceiling.value},
    "5.2": {M.m5_2.ceiling.value},
    "6": {M.m6.ceiling.value},
    "7": {M.m7.ceiling.value},
    "8": {M.m8.ceiling.value},
    "9.1": {M.m9_1.ceiling.value},
    "9.2": {M.m9_2.ceiling_excellent.value, M.m9_2.ceiling_good.value},
    "10.1": {M.m10_1.ceiling_national.value, M.m10_1.ceiling_provincial.value},
    "14": {M.m14.amount.value},
    # Per borrower: the city's part of the most the two levels pay on the covered balance.
    "15.1": {
        floor_fen(floor_fen(M.m15_1.balance_limit.value * rate.value) * M.m15_1.municipal_share.value)
        for rate in (M.m15_1.rate, M.m15_1.rate_early_stage)
    },
}
RATES = {"4.1": M.m4_1.rate.value, "4.2": M.m4_2.rate.value, "9.3": M.m9_3.rate.value}


@SETTINGS
@given(data=requests())
def test_no_item_above_its_ceiling(data: dict[str, Any]) -> None:
    response = evaluate(request=request_of(data))
    assert len({(it.measure, it.party) for it in response.items}) == len(response.items)  # one per (measure, party)
    for item in response.items:
        amount = item.amount_yuan
        assert amount >= 0 and amount == amount.quantize(FEN)
        if item.measure in ANNUAL:
            assert amount <= ANNUAL[item.measure], item.measure
        else:
            assert len(item.parts) == len(item.sources)
            for part in item.parts:
                assert part.ceiling_yuan in PER_SOURCE[item.measure]
                assert part.amount_yuan is not None and part.amount_yuan <= part.ceiling_yuan
            whole = sum(p.amount_yuan or 0 for p in item.parts)
            if item.non_stacking is not None:  # the city pays the difference above the provincial money, or all
                assert amount == item.non_stacking.paid_yuan <= whole == item.non_stacking.municipal_yuan
            else:
                assert amount == whole
        if item.measure in RATES:  # never above rate × basis either
            assert amount <= item.basis_yuan * RATES[item.measure]
        assert item.ceiling_yuan is not None and amount <= item.ceiling_yuan
        assert item.trace and item.trace[0].step == "parameter"
    for rejection in response.rejections:
        assert rejection.reason.startswith(rejection.clause) and rejection.condition


@st.composite
def splits(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Payments in 2025 (fen) and the contract each goes to."""
    amounts = draw(st.lists(st.integers(min_value=0, max_value=5 * 10**10), min_size=1, max_size=8))
    k = draw(st.integers(min_value=1, max_value=len(amounts)))
    owners = draw(st.lists(st.integers(min_value=0, max_value=k - 1), min_size=len(amounts), max_size=len(amounts)))
    return amounts, owners


def _split_request(amounts: list[int], owners: list[int]) -> EvaluateRequest:
    contracts = []
    for c in sorted(set(owners)):
        mine = [a for a, o in zip(amounts, owners, strict=True) if o == c]
        contracts.append(
            {
                "id": f"C{c}",
                "type": "development" if c % 2 else "transfer",
                "buyer": "E1",
                "seller": "U1",
                "agency": "A1",
                "registered": True,
                "signed_on": "2025-01-01",
                "amount_yuan": yuan(sum(mine)),
                "payments": [
                    {"paid_on": f"2025-{1 + j % 12:02d}-15", "amount_yuan": yuan(a)} for j, a in enumerate(mine)
                ],
            }
        )
    return request_of(
        {
            "year": 2025,
            "contracts": contracts,
            "parties": [
                {"id": "E1", "kind": "enterprise", "in_weihai": True, "has_rd_activity": True},
                {"id": "U1", "kind": "university", "in_weihai": True},
                {"id": "A1", "kind": "agency", "in_weihai": True, "filed": True},
            ],
        }
    )


@SETTINGS
@given(split=splits())
def test_yearly_ceilings_hold_for_any_split_of_payments(split: tuple[list[int], list[int]]) -> None:
    amounts, owners = split
    total = Decimal(sum(amounts)) / 100
    response = evaluate(request=_split_request(amounts, owners))
    got = {it.measure: it.amount_yuan for it in response.items}
    for measure, party_ceiling in (("4.1", M.m4_1), ("4.2", M.m4_2), ("9.3", M.m9_3)):
        expected = min(total * party_ceiling.rate.value, party_ceiling.annual_ceiling.value)
        expected = expected.quantize(FEN, rounding=ROUND_DOWN)
        assert got[measure] == expected
        assert got[measure] <= party_ceiling.annual_ceiling.value
    # The same money in one contract gives the same result.
    single = evaluate(request=_split_request(amounts, [0] * len(amounts)))
    assert {it.measure: it.amount_yuan for it in single.items} == got


def _shuffled(data: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            rows = [dict(row) for row in value]
            for row in rows:
                if "payments" in row:
                    row["payments"] = rng.sample(row["payments"], len(row["payments"]))
            out[key] = rng.sample(rows, len(rows))
        else:
            out[key] = value
    return dict(rng.sample(list(out.items()), len(out)))


@SETTINGS
@given(data=requests(), seed=st.integers(min_value=0, max_value=2**32))
def test_results_do_not_depend_on_input_order(data: dict[str, Any], seed: int) -> None:
    first = evaluate(request=request_of(data))
    second = evaluate(request=request_of(_shuffled(data, random.Random(seed))))
    assert first.model_dump(mode="json") == second.model_dump(mode="json")


@SETTINGS
@given(data=requests())
def test_evaluation_is_idempotent(data: dict[str, Any]) -> None:
    request = request_of(data)
    before = request.model_dump(mode="json")
    first = evaluate(request=request)
    second = evaluate(request=request)
    assert request.model_dump(mode="json") == before  # the input is not touched
    assert first.model_dump(mode="json") == second.model_dump(mode="json")
    # A round trip through JSON (as over HTTP) gives the same answer.
    again = evaluate(request=EvaluateRequest.model_validate_json(request.model_dump_json()))
    assert again.model_dump(mode="json") == first.model_dump(mode="json")
