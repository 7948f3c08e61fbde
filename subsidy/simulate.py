"""Policy simulator: the budget of the same cases under two parameter sets, per measure and per party."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from subsidy.parameters import PolicyParameters
from subsidy.schemas import EvaluateRequest, EvaluateResponse, Money, Yuan
from subsidy.service import evaluate

ZERO = Decimal("0")
UNKNOWN_REGION = "(no district recorded)"


class BudgetLine(BaseModel):
    """One row of the side-by-side budget; with a budget for the row, how far the alternative stays within it."""

    key: str
    label: str
    current_yuan: Money
    alternative_yuan: Money
    difference_yuan: Money
    budget_yuan: Money | None = None
    over_budget_yuan: Money | None = None


class Budgets(BaseModel):
    """Budgets to price a parameter change against: per measure id, per party id, per district (region)."""

    model_config = ConfigDict(extra="forbid")

    measures: dict[str, Yuan] = Field(default_factory=dict)
    parties: dict[str, Yuan] = Field(default_factory=dict)
    regions: dict[str, Yuan] = Field(default_factory=dict)
    total: Yuan | None = None


class SimulationReport(BaseModel):
    """Totals of every case under the current and the alternative parameters."""

    current_version: str
    alternative_version: str
    cases: int
    by_measure: list[BudgetLine]
    by_party: list[BudgetLine]
    by_region: list[BudgetLine] = Field(default_factory=list)
    total: BudgetLine


def _line(key: str, label: str, current: Decimal, alternative: Decimal, budget: Decimal | None = None) -> BudgetLine:
    return BudgetLine(
        key=key,
        label=label,
        current_yuan=current,
        alternative_yuan=alternative,
        difference_yuan=alternative - current,
        budget_yuan=budget,
        over_budget_yuan=None if budget is None else max(alternative - budget, ZERO),
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
    *,
    requests: Sequence[EvaluateRequest],
    current: PolicyParameters,
    alternative: PolicyParameters,
    budgets: Budgets | None = None,
    regions: Mapping[str, str | None] | None = None,
) -> SimulationReport:
    """Evaluate every case under both parameter sets and total them side by side (parties keyed by id); with
    `regions` (party id → district), per district too; with `budgets`, each line against its budget."""
    budgets = budgets or Budgets()
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
            budgets.measures.get(measure_id),
        )
        for measure_id, measure in current.measures.money()
    ]
    by_party = [
        _line(party, party, now_party.get(party, ZERO), alt_party.get(party, ZERO), budgets.parties.get(party))
        for party in sorted(set(now_party) | set(alt_party) | set(budgets.parties))
    ]
    by_region: list[BudgetLine] = []
    if regions is not None:
        now_region: dict[str, Decimal] = {}
        alt_region: dict[str, Decimal] = {}
        for totals, out in ((now_party, now_region), (alt_party, alt_region)):
            for party, amount in totals.items():
                region = regions.get(party) or UNKNOWN_REGION
                out[region] = out.get(region, ZERO) + amount
        by_region = [
            _line(
                region, region, now_region.get(region, ZERO), alt_region.get(region, ZERO), budgets.regions.get(region)
            )
            for region in sorted(set(now_region) | set(alt_region) | set(budgets.regions))
        ]
    total = _line("total", "Total", sum(now_measure.values(), ZERO), sum(alt_measure.values(), ZERO), budgets.total)
    return SimulationReport(
        current_version=current.version,
        alternative_version=alternative.version,
        cases=len(requests),
        by_measure=by_measure,
        by_party=by_party,
        by_region=by_region,
        total=total,
    )
