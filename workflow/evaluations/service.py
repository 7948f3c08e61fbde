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

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from core.errors import Conflict, InvalidInput, NotFound
from models.base import year_span
from models.db import locked
from models.tables import (
    Carrier,
    CarrierKind,
    CarrierParticipant,
    Contract,
    Deal,
    Lead,
    LeadResponse,
    Organisation,
    OrgKind,
    Payment,
    PerformanceEvaluation,
    PushBatch,
)
from subsidy.schemas import format_yuan
from workflow.ledger.party import party_key

# Which measure pays each kind of carrier, and how the engine's request names it.
MEASURES: dict[CarrierKind, str] = {
    CarrierKind.event: "2",
    CarrierKind.cloud_rd_center: "3",
    CarrierKind.pilot_base: "6",
    CarrierKind.proof_of_concept_center: "6",
    CarrierKind.agency: "9.2",
    CarrierKind.training_base: "10",
}
GRADES = ("excellent", "good", "qualified", "unqualified")
LEVELS = ("national", "provincial", "municipal")
TRAINING_FIELDS = (
    "base_level",
    "first_recognition",
    "trainees",
    "qualified_and_filed",
    "trainees_in_weihai",
    "waived_fees_yuan",
)
RECOGNITION_SUFFIX = "-recognition"
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


def set_participants(*, session: Session, carrier_id: int, organisation_ids: list[int], actor: Principal) -> list[int]:
    """Replace the carrier's participants (an event's attending organisations); the ids it now has. The carrier's
    row is locked, so two replacements queue instead of colliding on the unique pair."""
    carrier = locked(session, Carrier, carrier_id)
    if carrier is None:
        raise NotFound(f"carrier {carrier_id} not found")
    wanted = list(dict.fromkeys(organisation_ids))
    found = set(session.scalars(select(Organisation.id).where(Organisation.id.in_(wanted))))
    missing = [i for i in wanted if i not in found]
    if missing:
        raise InvalidInput(f"no organisation with id {missing[:20]}", field="organisation_ids")
    # Kept rows keep the day they were added (a year's sheet counts those who had joined by its end).
    have = set(participants(session, carrier.id))
    session.execute(
        delete(CarrierParticipant).where(
            CarrierParticipant.carrier_id == carrier.id, CarrierParticipant.organisation_id.not_in(wanted)
        )
    )
    session.add_all(CarrierParticipant(carrier_id=carrier.id, organisation_id=i) for i in wanted if i not in have)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="carrier.participants",
        target_kind="carrier",
        target_id=carrier.id,
        detail={"organisation_ids": wanted[:1000]},
    )
    return wanted


def participants(session: Session, carrier_id: int) -> list[int]:
    """The organisations taking part in the carrier's work, in the order they were added."""
    stmt = select(CarrierParticipant.organisation_id).where(CarrierParticipant.carrier_id == carrier_id)
    return list(session.scalars(stmt.order_by(CarrierParticipant.id)))


def attributed(session: Session, carrier: Carrier, year: int) -> dict[str, Any]:
    """What the platform records as coming through the carrier itself in the year: its participants (those taking part
    now who had joined by the year's end), the leads of the push batches run for it and the interest they found, the
    deals attributed to it, their contracts signed and payments made in the year."""
    start, end = year_span(year)
    first, last = date(year, 1, 1), date(year, 12, 31)
    leads = session.execute(
        select(Lead.response, func.count())
        .join(PushBatch, PushBatch.id == Lead.batch_id)
        .where(PushBatch.carrier_id == carrier.id, Lead.created_at >= start, Lead.created_at < end)
        .group_by(Lead.response)
    ).tuples()
    counts = dict(leads.all())
    interest = (LeadResponse.interested, LeadResponse.already_in_contact)
    deals_opened = session.scalar(
        select(func.count()).where(Deal.carrier_id == carrier.id, Deal.created_at >= start, Deal.created_at < end)
    )
    contracts = session.execute(
        select(func.count(), func.coalesce(func.sum(Contract.amount_yuan), 0))
        .join(Deal, Deal.id == Contract.deal_id)
        .where(Deal.carrier_id == carrier.id, Contract.signed_on.between(first, last))
    ).one()
    paid = session.execute(
        select(func.count(), func.coalesce(func.sum(Payment.amount_yuan), 0))
        .join(Deal, Deal.id == Payment.deal_id)
        .where(Deal.carrier_id == carrier.id, Payment.paid_on.between(first, last))
    ).one()
    joined = session.scalar(
        select(func.count()).where(CarrierParticipant.carrier_id == carrier.id, CarrierParticipant.added_at < end)
    )
    return {
        "carrier_participants": int(joined or 0),
        "carrier_leads": sum(counts.values()),
        "carrier_leads_interest": sum(n for r, n in counts.items() if r in interest),
        "carrier_deals_opened": int(deals_opened or 0),
        "carrier_contracts_signed": int(contracts[0]),
        "carrier_contract_amount_yuan": format_yuan(Decimal(contracts[1])),
        "carrier_payments": int(paid[0]),
        "carrier_paid_yuan": format_yuan(Decimal(paid[1])),
    }


def evidence(session: Session, carrier: Carrier, year: int) -> dict[str, Any]:
    """The platform's own counts in the evaluated year: the carrier's organisation's (workflow/reports), and what
    came through the carrier itself (`carrier_…`)."""
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
    return {key: row[key] for key in keep} | attributed(session, carrier, year)


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
    training: dict[str, Any] | None = None,
) -> PerformanceEvaluation:
    """Record (or correct) a carrier's evaluation of a year, with the counts it was judged beside. A training base's
    year also records its level, a first recognition (10.1: assessed_yuan) and the brokers it trained (10.2). The
    carrier's row is locked: two years recorded at once cannot both claim the same first recognition."""
    carrier = locked(session, Carrier, carrier_id)
    if carrier is None:
        raise NotFound(f"carrier {carrier_id} not found")
    training = {k: v for k, v in (training or {}).items() if v is not None}
    unknown = set(training) - set(TRAINING_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown training fields {sorted(unknown)}", field=sorted(unknown)[0])
    if carrier.kind == CarrierKind.training_base:
        if training.get("base_level") not in LEVELS:
            raise InvalidInput(
                f"a training base's year names its level: one of {', '.join(LEVELS)}", field="base_level"
            )
        if "waived_fees_yuan" in training:
            # 10.2 pays only for trainees qualified and filed who work in the city: both facts are stated, never
            # assumed from a form's default.
            for key in ("qualified_and_filed", "trainees_in_weihai"):
                if key not in training:
                    raise InvalidInput(f"waived fees (10.2) need {key} stated, yes or no", field=key)
    elif training:
        raise InvalidInput(f"only a training base records {', '.join(sorted(training))}", field=sorted(training)[0])
    if carrier.kind == CarrierKind.agency and grade is None:
        raise InvalidInput("an agency's evaluation has a grade (优秀 excellent, 良好 good, …)", field="grade")
    if grade is not None and grade not in GRADES:
        raise InvalidInput(f"grade is one of {', '.join(GRADES)}", field="grade")
    if decided_on.year < year:
        raise InvalidInput(f"decided_on {decided_on} is before the evaluated year {year}", field="decided_on")
    if training.get("first_recognition"):
        # 10.1 rewards a base once per level, the year it is first recognised at it (provincial, later national):
        # another year's claim at the same level stands.
        earlier = session.scalar(
            select(PerformanceEvaluation.year).where(
                PerformanceEvaluation.carrier_id == carrier.id,
                PerformanceEvaluation.year != year,
                PerformanceEvaluation.base_level == training.get("base_level"),
                PerformanceEvaluation.first_recognition.is_(True),
            )
        )
        if earlier is not None:
            raise Conflict(
                f"carrier {carrier.id}'s first {training.get('base_level')} recognition is recorded in {earlier}; "
                "a base is first recognised at a level once",
                field="first_recognition",
            )
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
        **{key: training.get(key) for key in TRAINING_FIELDS},
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
        "training": {
            key: (format_yuan(value) if isinstance(value, Decimal) else value)
            for key in TRAINING_FIELDS
            if (value := getattr(evaluation, key)) is not None
        },
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
        keys = {evaluation_key(evaluation.id), evaluation_key(evaluation.id) + RECOGNITION_SUFFIX}
        computed = ledger.compute(session, evaluation.decided_on.year)
        items = [i for i in computed["items"] if any(link.get("evaluation_id") == evaluation.id for link in i["links"])]
        out["ledger"] = {
            "year": evaluation.decided_on.year,
            "item": items[0] if items else None,  # the first; a training base's year may give two (10.1, 10.2)
            "items": items,
            "rejections": [r["reason"] for r in computed["rejections"] if r["source"] in keys],
            "pending": [p["reason"] for p in computed["pending"] if p["source"] in keys],
        }
    return out


def evaluation_of(session: Session, carrier: Carrier, year: int) -> PerformanceEvaluation | None:
    return session.scalar(
        select(PerformanceEvaluation).where(
            PerformanceEvaluation.carrier_id == carrier.id, PerformanceEvaluation.year == year
        )
    )


def engine_rows(session: Session, year: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The evaluations decided in `year` as the engine's rows — activities (2), evaluations (3, 6, 9.2),
    recognitions (10.1) and trainings (10.2) — and, by the engine's source id, the evaluation and carrier each came
    from (the organisations they pay are the carriers')."""
    rows: dict[str, list[dict[str, Any]]] = {"activities": [], "evaluations": [], "recognitions": [], "trainings": []}
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
            rows["activities"].append(common | {"filed": carrier.filed, "selected": evaluation.selected})
        elif carrier.kind == CarrierKind.agency:
            rows["evaluations"].append(
                common | {"measure": "9.2", "grade": evaluation.grade, "provincial_yuan": evaluation.provincial_yuan}
            )
        elif carrier.kind == CarrierKind.training_base:
            level = evaluation.base_level or "municipal"
            if evaluation.first_recognition:
                found[key + RECOGNITION_SUFFIX] = (evaluation, carrier)
                rows["recognitions"].append(
                    common | {"id": key + RECOGNITION_SUFFIX, "measure": "10.1", "level": level, "first_time": True}
                )
            if evaluation.waived_fees_yuan is not None:
                rows["trainings"].append(
                    {
                        "id": key,
                        "party": party,
                        "base_level": level,
                        "qualified_and_filed": bool(evaluation.qualified_and_filed),
                        "trainees_work_in_weihai": bool(evaluation.trainees_in_weihai),
                        "trainees": evaluation.trainees or 0,
                        "waived_fees_yuan": evaluation.waived_fees_yuan,
                        "provincial_yuan": evaluation.provincial_yuan,
                        "decided_on": evaluation.decided_on,
                    }
                )
        else:
            rows["evaluations"].append(
                common
                | {
                    "measure": MEASURES[carrier.kind],
                    "facility": str(carrier.kind),
                    "filed": carrier.filed,
                    "selected": evaluation.selected,
                }
            )
    return rows, found
