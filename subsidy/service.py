"""Service entry points of the subsidy engine: check a request's references, then evaluate it."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from core.errors import InvalidInput
from subsidy.engine import evaluate_case
from subsidy.parameters import PolicyParameters, default_parameters
from subsidy.schemas import EvaluateRequest, EvaluateResponse

# The lists whose rows are sources of money; their ids share one namespace so `sources` is unambiguous.
_SOURCE_LISTS = (
    "contracts",
    "listings",
    "activities",
    "evaluations",
    "recognitions",
    "landings",
    "expert_studios",
    "trainings",
    "loans",
)
# Every source list but contracts names its recipient in `party` (contracts name buyer, seller and agency).
_PARTY_LISTS = tuple(name for name in _SOURCE_LISTS if name != "contracts")


def check_references(*, request: EvaluateRequest) -> None:
    """Raise InvalidInput (422, naming the field) for duplicate ids, unknown parties and overpaid contracts."""
    party_ids: set[str] = set()
    for i, party in enumerate(request.parties):
        if party.id in party_ids:
            raise InvalidInput(f"duplicate party id {party.id!r}", field=f"parties[{i}].id")
        party_ids.add(party.id)

    source_ids: dict[str, str] = {}
    for name in _SOURCE_LISTS:
        rows: Iterable[object] = getattr(request, name)
        for i, row in enumerate(rows):
            row_id: str = row.id  # type: ignore[attr-defined]
            if row_id in source_ids:
                raise InvalidInput(
                    f"duplicate id {row_id!r} (already used in {source_ids[row_id]})", field=f"{name}[{i}].id"
                )
            source_ids[row_id] = name

    def known(party_id: str, field: str) -> None:
        if party_id not in party_ids:
            raise InvalidInput(f"unknown party id {party_id!r}", field=field)

    for i, contract in enumerate(request.contracts):
        known(contract.buyer, f"contracts[{i}].buyer")
        known(contract.seller, f"contracts[{i}].seller")
        if contract.agency is not None:
            known(contract.agency, f"contracts[{i}].agency")
        if contract.buyer == contract.seller:
            raise InvalidInput("buyer and seller must be different parties", field=f"contracts[{i}].seller")
        paid = Decimal(0)
        for j, payment in enumerate(contract.payments):
            paid += payment.amount_yuan
            if paid > contract.amount_yuan:
                raise InvalidInput(
                    f"payments on contract {contract.id!r} reach {paid} yuan, above the contract amount "
                    f"{contract.amount_yuan} yuan",
                    field=f"contracts[{i}].payments[{j}].amount_yuan",
                )

    for name in _PARTY_LISTS:
        for i, row in enumerate(getattr(request, name)):
            known(row.party, f"{name}[{i}].party")
    for i, loan in enumerate(request.loans):
        if loan.bank is not None:
            known(loan.bank, f"loans[{i}].bank")

    # 第9条: one annual evaluation per agency and year.
    agencies: set[str] = set()
    for i, evaluation in enumerate(request.evaluations):
        if evaluation.measure == "9.2":
            if evaluation.party in agencies:
                raise InvalidInput(
                    f"more than one 9.2 evaluation for agency {evaluation.party!r} in one year",
                    field=f"evaluations[{i}].party",
                )
            agencies.add(evaluation.party)


def evaluate(*, request: EvaluateRequest, params: PolicyParameters | None = None) -> EvaluateResponse:
    """Every item each party is entitled to for the request's year, with traces and rejections."""
    check_references(request=request)
    return evaluate_case(request, params or default_parameters())
