"""Policy simulator: the budget of the same cases under two parameter sets, per measure and per party."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel

from subsidy.parameters import PolicyParameters
from subsidy.schemas import EvaluateRequest, EvaluateResponse, Money
from subsidy.service import evaluate

ZERO = Decimal("0")


class BudgetLine(BaseModel):
    """One row of the side-by-side budget."""

    key: str
    label: str
    current_yuan: Money
    alternative_yuan: Money
    difference_yuan: Money


class SimulationReport(BaseModel):
    """Totals of every case under the current and the alternative parameters."""

    current_version: str
    alternative_version: str
    cases: int
    by_measure: list[BudgetLine]
    by_party: list[BudgetLine]
    total: BudgetLine


def _line(key: str, label: str, current: Decimal, alternative: Decimal) -> BudgetLine:
    return BudgetLine(
        key=key, label=label, current_yuan=current, alternative_yuan=alternative, difference_yuan=alternative - current
    )


def _totals(responses: Sequence[EvaluateResponse]) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    by_measure: dict[str, Decimal] = {}
    by_party: dict[str, Decimal] = {}
    for response in responses:
        for item in response.items:
            by_measure[item.measure] = by_measure.get(item.measure, ZERO) + item.amount_yuan
            by_party[item.party] = by_party.get(item.party, ZERO) + item.amount_yuan
    return by_measure, by_party


def simulate(
    *, requests: Sequence[EvaluateRequest], current: PolicyParameters, alternative: PolicyParameters
) -> SimulationReport:
    """Evaluate every case under both parameter sets and total them side by side (parties keyed by id)."""
    now = [evaluate(request=request, params=current) for request in requests]
    alt = [evaluate(request=request, params=alternative) for request in requests]
    now_measure, now_party = _totals(now)
    alt_measure, alt_party = _totals(alt)
    by_measure = [
        _line(
            measure_id,
            f"{measure.clause} {measure.title}",
            now_measure.get(measure_id, ZERO),
            alt_measure.get(measure_id, ZERO),
        )
        for measure_id, measure in current.measures.money()
    ]
    by_party = [
        _line(party, party, now_party.get(party, ZERO), alt_party.get(party, ZERO))
        for party in sorted(set(now_party) | set(alt_party))
    ]
    total = _line("total", "Total", sum(now_measure.values(), ZERO), sum(alt_measure.values(), ZERO))
    return SimulationReport(
        current_version=current.version,
        alternative_version=alternative.version,
        cases=len(requests),
        by_measure=by_measure,
        by_party=by_party,
        total=total,
    )
