"""Carriers and their annual performance evaluations (measures 2, 3, 6, 9): matchmaking events, cloud R&D centres,
pilot bases and proof-of-concept centres, transfer agencies.

An evaluation sheet puts the result staff record (grade, score, chosen on merit, assessed amount, provincial money)
beside the platform's own counts for the organisation behind the carrier in the evaluated year (leads, responses,
deals, contracts, payments: workflow/reports), computed, never typed in; the counts are kept with the result as its
evidence. The award measures' ledger items come from these records through the subsidy engine (workflow/ledger).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, InvalidInput, NotFound
from models.tables import Carrier, CarrierKind, Organisation, OrgKind, PerformanceEvaluation
from subsidy.schemas import format_yuan
from workflow.ledger.party import party_key

# Which measure pays each kind of carrier, and how the engine's request names it.
MEASURES: dict[CarrierKind, str] = {
    CarrierKind.event: "2",
    CarrierKind.cloud_rd_center: "3",
    CarrierKind.pilot_base: "6",
    CarrierKind.proof_of_concept_center: "6",
    CarrierKind.agency: "9.2",
}
GRADES = ("excellent", "good", "qualified", "unqualified")
EVAL_PREFIX = "eval-"


def evaluation_key(evaluation_id: int) -> str:
    return f"{EVAL_PREFIX}{evaluation_id}"


def create_carrier(
    *, session: Session, kind: CarrierKind, organisation_id: int, name: str, filed: bool, actor: Principal
) -> Carrier:
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound(f"organisation {organisation_id} not found", field="organisation_id")
    if kind == CarrierKind.agency and org.kind != OrgKind.agency:
        raise InvalidInput(f"organisation {org.id} is a {org.kind}, not an agency", field="organisation_id")
    carrier = Carrier(kind=kind, organisation_id=org.id, name=name, filed=filed)
    session.add(carrier)
    session.flush()
    audit.record(session=session, actor=actor, action="carrier.create", target_kind="carrier", target_id=carrier.id)
    return carrier


def get_carrier(*, session: Session, carrier_id: int) -> Carrier:
    carrier = session.get(Carrier, carrier_id)
    if carrier is None:
        raise NotFound(f"carrier {carrier_id} not found")
    return carrier


def list_carriers(*, session: Session, kind: CarrierKind | None = None) -> list[Carrier]:
    stmt = select(Carrier).order_by(Carrier.id)
    if kind is not None:
        stmt = stmt.where(Carrier.kind == kind)
    return list(session.scalars(stmt))


def evidence(session: Session, carrier: Carrier, year: int) -> dict[str, Any]:
    """The platform's own counts for the carrier's organisation in the evaluated year (workflow/reports)."""
    from workflow.reports import service as reports  # reports → ledger → here: imported when first used

    (row,) = reports.yearly(session, year, organisation_id=carrier.organisation_id)
    keep = (
        "leads_received",
        "responses",
        "listings_pushed",
        "listings_pushed_interest",
        "deals_opened",
        "deals_by_state",
        "deals_as",
        "contracts_signed",
        "contract_amount_yuan",
        "payments",
        "paid_yuan",
    )
    return {key: row[key] for key in keep}


def record_evaluation(
    *,
    session: Session,
    carrier_id: int,
    year: int,
    grade: str | None,
    score: Decimal | None,
    selected: bool | None,
    assessed_yuan: Decimal | None,
    provincial_yuan: Decimal | None,
    evaluator: str,
    decided_on: date,
    actor: Principal,
) -> PerformanceEvaluation:
    """Record (or correct) a carrier's evaluation of a year, with the counts it was judged beside."""
    carrier = get_carrier(session=session, carrier_id=carrier_id)
    if carrier.kind == CarrierKind.agency and grade is None:
        raise InvalidInput("an agency's evaluation has a grade (优秀 excellent, 良好 good, …)", field="grade")
    if grade is not None and grade not in GRADES:
        raise InvalidInput(f"grade is one of {', '.join(GRADES)}", field="grade")
    if decided_on.year < year:
        raise InvalidInput(f"decided_on {decided_on} is before the evaluated year {year}", field="decided_on")
    found = session.scalar(
        select(PerformanceEvaluation).where(
            PerformanceEvaluation.carrier_id == carrier.id, PerformanceEvaluation.year == year
        )
    )
    values = {
        "grade": grade,
        "score": score,
        "selected": selected,
        "assessed_yuan": assessed_yuan,
        "provincial_yuan": provincial_yuan,
        "evaluator": evaluator,
        "decided_on": decided_on,
        "evidence": evidence(session, carrier, year),
        "recorded_by": actor.actor,
    }
    if found is None:
        found = PerformanceEvaluation(carrier_id=carrier.id, year=year, **values)
        try:
            with session.begin_nested():
                session.add(found)
                session.flush()
        except IntegrityError:
            raise Conflict(f"carrier {carrier.id} was evaluated for {year} at the same moment; retry") from None
    else:
        for key, value in values.items():
            setattr(found, key, value)
        session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="carrier.evaluate",
        target_kind="carrier",
        target_id=carrier.id,
        detail={"year": year, "grade": grade},
    )
    return found


def carrier_out(carrier: Carrier) -> dict[str, Any]:
    """A carrier as the API and the pages show it."""
    return {
        "id": carrier.id,
        "kind": str(carrier.kind),
        "organisation_id": carrier.organisation_id,
        "name": carrier.name,
        "filed": carrier.filed,
        "measure": MEASURES[carrier.kind],
    }


def evaluation_out(evaluation: PerformanceEvaluation | None) -> dict[str, Any] | None:
    """A recorded evaluation with the evidence kept beside it (money as decimal strings)."""
    if evaluation is None:
        return None
    return {
        "id": evaluation.id,
        "year": evaluation.year,
        "grade": evaluation.grade,
        "score": str(evaluation.score) if evaluation.score is not None else None,
        "selected": evaluation.selected,
        "assessed_yuan": format_yuan(evaluation.assessed_yuan) if evaluation.assessed_yuan is not None else None,
        "provincial_yuan": format_yuan(evaluation.provincial_yuan) if evaluation.provincial_yuan is not None else None,
        "evaluator": evaluation.evaluator,
        "decided_on": evaluation.decided_on.isoformat(),
        "recorded_by": evaluation.recorded_by,
        "evidence": evaluation.evidence,
    }


def sheet(session: Session, carrier: Carrier, year: int) -> dict[str, Any]:
    """The evaluation sheet: the carrier, the recorded result with the evidence it was judged beside, the counts as
    they stand now, and the ledger's item for it (or why not) in the year it was decided."""
    from workflow.ledger import service as ledger  # the ledger reads this module's rows: imported when first used

    evaluation = evaluation_of(session, carrier, year)
    org = session.get_one(Organisation, carrier.organisation_id)
    out: dict[str, Any] = {
        "carrier": carrier_out(carrier),
        "organisation": {"id": org.id, "name": org.name, "filed": org.filed, "in_weihai": org.in_weihai},
        "year": year,
        "evaluation": evaluation_out(evaluation),
        "evidence": evidence(session, carrier, year),
        "ledger": None,
    }
    if evaluation is not None:
        key = evaluation_key(evaluation.id)
        computed = ledger.compute(session, evaluation.decided_on.year)
        item = next(
            (i for i in computed["items"] if any(link.get("evaluation_id") == evaluation.id for link in i["links"])),
            None,
        )
        out["ledger"] = {
            "year": evaluation.decided_on.year,
            "item": item,
            "rejections": [r["reason"] for r in computed["rejections"] if r["source"] == key],
            "pending": [p["reason"] for p in computed["pending"] if p["source"] == key],
        }
    return out


def evaluation_of(session: Session, carrier: Carrier, year: int) -> PerformanceEvaluation | None:
    return session.scalar(
        select(PerformanceEvaluation).where(
            PerformanceEvaluation.carrier_id == carrier.id, PerformanceEvaluation.year == year
        )
    )


def engine_rows(session: Session, year: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The evaluations decided in `year` as the engine's activities (2) and evaluations (3, 6, 9.2); the organisations
    they pay, by id; keyed by evaluation."""
    activities: list[dict[str, Any]] = []
    evaluations: list[dict[str, Any]] = []
    found: dict[str, Any] = {}
    stmt = select(PerformanceEvaluation, Carrier).join(Carrier, Carrier.id == PerformanceEvaluation.carrier_id)
    for evaluation, carrier in session.execute(stmt.order_by(PerformanceEvaluation.id)).tuples():
        if evaluation.decided_on.year != year:
            continue
        key = evaluation_key(evaluation.id)
        found[key] = (evaluation, carrier)
        party = party_key(carrier.organisation_id)
        common = {
            "id": key,
            "party": party,
            "assessed_yuan": evaluation.assessed_yuan,
            "decided_on": evaluation.decided_on,
        }
        if carrier.kind == CarrierKind.event:
            activities.append(common | {"filed": carrier.filed, "selected": evaluation.selected})
        elif carrier.kind == CarrierKind.agency:
            evaluations.append(
                common | {"measure": "9.2", "grade": evaluation.grade, "provincial_yuan": evaluation.provincial_yuan}
            )
        else:
            evaluations.append(
                common
                | {
                    "measure": MEASURES[carrier.kind],
                    "facility": str(carrier.kind),
                    "filed": carrier.filed,
                    "selected": evaluation.selected,
                }
            )
    return activities, evaluations, found
