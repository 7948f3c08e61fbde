"""A programme's selection round (measures 11 and 12): candidates, enterprises with their needs and preferences, an
assignment by min-cost flow (networkx, as the review assignment), and the placements it proposes, tracked like deals.

source → researcher (capacity per_researcher) → enterprise (capacity 1, only without a conflict: the enterprise
refused the researcher (preference 0) or the researcher works for it) → sink (capacity per_enterprise). The maximum
flow places as many researchers as the capacities allow; its minimum cost prefers, half and half, how well the
researcher matches the enterprise's need (the researcher ranking, scaled to [0, 1] over the round) and the
enterprise's stated preference (3 first choice … 1 acceptable; none stated counts as acceptable).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import networkx as nx
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from accounts import audit
from accounts.policy import Principal
from catalog.indexing import Indexes
from core.errors import Conflict, Forbidden, InvalidInput, NotFound
from models.base import utcnow
from models.db import locked
from models.tables import (
    ListingStatus,
    Need,
    Organisation,
    OrgKind,
    Placement,
    PlacementEvent,
    PlacementState,
    Programme,
    ProgrammeCandidate,
    ProgrammePreference,
    ProgrammeRequest,
    ProgrammeStatus,
    Researcher,
)
from workflow.researchers.schemas import PreferenceIn, ProgrammeCreate, TransitionIn
from workflow.researchers.service import match_need

_COST_SCALE = 1000
NEUTRAL_PREFERENCE = 1
FORWARD = (PlacementState.proposed, PlacementState.confirmed, PlacementState.in_post, PlacementState.completed)
ENDED = (PlacementState.completed, PlacementState.withdrawn)


def create_programme(*, session: Session, data: ProgrammeCreate, actor: Principal) -> Programme:
    programme = Programme(
        name=data.name,
        kind=data.kind,
        year=data.year,
        per_enterprise=data.per_enterprise,
        per_researcher=data.per_researcher,
        created_by=actor.user_id,
    )
    session.add(programme)
    session.flush()
    audit.record(
        session=session, actor=actor, action="programme.create", target_kind="programme", target_id=programme.id
    )
    return programme


def get_programme(*, session: Session, programme_id: int) -> Programme:
    programme = session.get(Programme, programme_id)
    if programme is None:
        raise NotFound(f"programme {programme_id} not found")
    return programme


def list_programmes(*, session: Session) -> list[Programme]:
    return list(session.scalars(select(Programme).order_by(Programme.id.desc())))


def _open(session: Session, programme_id: int) -> Programme:
    """The programme, locked for this transaction (a round's changes and its assignment queue), while it is open."""
    programme = locked(session, Programme, programme_id)
    if programme is None:
        raise NotFound(f"programme {programme_id} not found")
    if programme.status != ProgrammeStatus.open:
        raise Conflict(f"programme {programme.id} was assigned: its round is closed")
    return programme


def set_candidates(*, session: Session, programme_id: int, researcher_ids: list[int], actor: Principal) -> list[int]:
    """Replace the round's candidates (staff): active researchers."""
    programme = _open(session, programme_id)
    wanted = list(dict.fromkeys(researcher_ids))
    found = {r.id: r for r in session.scalars(select(Researcher).where(Researcher.id.in_(wanted)))}
    for i, researcher_id in enumerate(wanted):
        if researcher_id not in found or not found[researcher_id].active:
            raise InvalidInput(f"researcher {researcher_id} is not an active researcher", field=f"researcher_ids.{i}")
    session.execute(delete(ProgrammeCandidate).where(ProgrammeCandidate.programme_id == programme.id))
    session.add_all(ProgrammeCandidate(programme_id=programme.id, researcher_id=r) for r in wanted)
    session.flush()
    audit.record(
        session=session, actor=actor, action="programme.candidates", target_kind="programme", target_id=programme.id
    )
    return wanted


def candidates_of(session: Session, programme_id: int) -> list[int]:
    stmt = select(ProgrammeCandidate.researcher_id).where(ProgrammeCandidate.programme_id == programme_id)
    return list(session.scalars(stmt.order_by(ProgrammeCandidate.id)))


def add_request(*, session: Session, programme_id: int, need_id: int, actor: Principal) -> ProgrammeRequest:
    """An enterprise joins the round with one of its published needs (its users, or staff)."""
    programme = _open(session, programme_id)
    need = session.get(Need, need_id)
    if need is None or not (actor.is_staff or actor.owns(need.owner_id)):
        raise NotFound(f"need {need_id} of your organisation not found", field="need_id")
    if need.status != ListingStatus.published or need.owner_id is None:
        raise InvalidInput(f"need {need.id} must be published and owned by an enterprise", field="need_id")
    owner = session.get_one(Organisation, need.owner_id)
    if owner.kind != OrgKind.enterprise:
        raise InvalidInput(f"need {need.id} belongs to a {owner.kind}, not an enterprise", field="need_id")
    request = ProgrammeRequest(programme_id=programme.id, organisation_id=owner.id, need_id=need.id)
    try:
        with session.begin_nested():
            session.add(request)
            session.flush()
    except IntegrityError:
        raise Conflict(f"organisation {owner.id} already takes part in programme {programme.id}") from None
    audit.record(
        session=session, actor=actor, action="programme.request", target_kind="programme", target_id=programme.id
    )
    return request


def requests_of(session: Session, programme_id: int) -> list[ProgrammeRequest]:
    stmt = select(ProgrammeRequest).where(ProgrammeRequest.programme_id == programme_id)
    return list(session.scalars(stmt.order_by(ProgrammeRequest.id)))


def set_preference(*, session: Session, programme_id: int, data: PreferenceIn, actor: Principal) -> ProgrammePreference:
    """An enterprise in the round states how much it wants a candidate (0 refuses: never assigned)."""
    programme = _open(session, programme_id)
    org_id = data.organisation_id if actor.is_staff else actor.organisation_id
    if not actor.is_staff and data.organisation_id not in (None, actor.organisation_id):
        raise Forbidden("you state your own organisation's preferences", field="organisation_id")
    joined = {r.organisation_id for r in requests_of(session, programme.id)}
    if org_id is None or org_id not in joined:
        raise InvalidInput(f"organisation {org_id} takes no part in programme {programme.id}", field="organisation_id")
    if data.researcher_id not in candidates_of(session, programme.id):
        raise InvalidInput(f"researcher {data.researcher_id} is no candidate of this round", field="researcher_id")
    if not session.get_one(Researcher, data.researcher_id).active:
        raise InvalidInput(f"researcher {data.researcher_id} is no longer active", field="researcher_id")
    found = session.scalar(
        select(ProgrammePreference).where(
            ProgrammePreference.programme_id == programme.id,
            ProgrammePreference.organisation_id == org_id,
            ProgrammePreference.researcher_id == data.researcher_id,
        )
    )
    if found is None:
        found = ProgrammePreference(
            programme_id=programme.id, organisation_id=org_id, researcher_id=data.researcher_id, level=data.level
        )
        session.add(found)
    else:
        found.level = data.level
    session.flush()
    return found


def clear_preference(*, session: Session, programme_id: int, researcher_id: int, actor: Principal) -> None:
    """Take back the enterprise's stated preference for a candidate (neutral again; none stated is no error)."""
    programme = _open(session, programme_id)
    if actor.organisation_id is None:
        raise Forbidden("an enterprise's user takes back its own preferences", field="organisation_id")
    session.execute(
        delete(ProgrammePreference).where(
            ProgrammePreference.programme_id == programme.id,
            ProgrammePreference.organisation_id == actor.organisation_id,
            ProgrammePreference.researcher_id == researcher_id,
        )
    )


def preferences_of(session: Session, programme_id: int) -> list[ProgrammePreference]:
    stmt = select(ProgrammePreference).where(ProgrammePreference.programme_id == programme_id)
    return list(session.scalars(stmt.order_by(ProgrammePreference.id)))


def assign(
    *, session: Session, indexes: Indexes, embedder: Any, programme_id: int, actor: Principal
) -> tuple[list[Placement], list[dict[str, Any]]]:
    """Solve the round: proposed placements, and each enterprise left without one with the reason."""
    programme = _open(session, programme_id)
    researchers = {
        r.id: r
        for r in session.scalars(select(Researcher).where(Researcher.id.in_(candidates_of(session, programme.id))))
    }
    # A candidate who stopped being active since the round opened is not placed.
    candidates = [r for r in candidates_of(session, programme.id) if researchers[r].active]
    requests = requests_of(session, programme.id)
    if not candidates or not requests:
        raise InvalidInput("a round needs active candidates and enterprises with their needs", field="programme_id")
    preference = {(p.organisation_id, p.researcher_id): p.level for p in preferences_of(session, programme.id)}

    # How well each candidate matches each enterprise's need: the researcher ranking, restricted to the round.
    fit: dict[tuple[int, int], dict[str, Any]] = {}
    for request in requests:
        for m in match_need(
            session=session,
            indexes=indexes,
            embedder=embedder,
            need_id=request.need_id,
            viewer=actor,
            k=len(candidates),
            among=candidates,
        ):
            fit[(request.organisation_id, m.researcher.id)] = {"score": m.score, **m.reasons()}
    top = max((f["score"] for f in fit.values()), default=0.0)

    graph = nx.DiGraph()
    graph.add_node("sink")
    for researcher_id in candidates:
        graph.add_edge("source", ("r", researcher_id), capacity=programme.per_researcher, weight=0)
    for request in requests:
        org = request.organisation_id
        graph.add_edge(("e", org), "sink", capacity=programme.per_enterprise, weight=0)
        for researcher_id in candidates:
            level = preference.get((org, researcher_id), NEUTRAL_PREFERENCE)
            if level == 0 or researchers[researcher_id].organisation_id == org:
                continue  # refused, or the researcher's own employer: a conflict of interest
            affinity = fit.get((org, researcher_id), {}).get("score", 0.0) / top if top > 0 else 0.0
            cost = int(round((1.0 - (0.5 * affinity + 0.5 * level / 3)) * _COST_SCALE))
            graph.add_edge(("r", researcher_id), ("e", org), capacity=1, weight=cost)
    flow = nx.max_flow_min_cost(graph, "source", "sink")

    placements = []
    for researcher_id in candidates:
        for (kind, org), units in flow.get(("r", researcher_id), {}).items():
            if kind != "e" or units <= 0:
                continue
            request = next(r for r in requests if r.organisation_id == org)
            basis = {
                "preference": preference.get((org, researcher_id)),
                "match": fit.get((org, researcher_id)),
            }
            placement = Placement(
                programme_id=programme.id,
                researcher_id=researcher_id,
                organisation_id=org,
                need_id=request.need_id,
                basis=basis,
            )
            session.add(placement)
            placements.append(placement)
    session.flush()
    for placement in placements:
        session.add(
            PlacementEvent(
                placement_id=placement.id,
                from_state=None,
                to_state=PlacementState.proposed,
                actor=actor.actor,
                note=f"programme {programme.id} selection round",
            )
        )
    placed = {p.organisation_id for p in placements}
    unplaced = []
    for request in requests:
        if request.organisation_id in placed:
            continue
        allowed = [
            r
            for r in candidates
            if preference.get((request.organisation_id, r), NEUTRAL_PREFERENCE) != 0
            and researchers[r].organisation_id != request.organisation_id
        ]
        reason = (
            "every candidate was refused or is in a conflict of interest"
            if not allowed
            else "the candidates it accepts were placed where they fit better (per_researcher limits each one)"
        )
        unplaced.append({"organisation_id": request.organisation_id, "need_id": request.need_id, "reason": reason})
    programme.status = ProgrammeStatus.assigned
    programme.unplaced = unplaced
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="programme.assign",
        target_kind="programme",
        target_id=programme.id,
        detail={"placements": [p.id for p in placements], "unplaced": unplaced},
    )
    return placements, unplaced


def placements_of(*, session: Session, viewer: Principal, programme_id: int | None = None) -> list[Placement]:
    """Placements the viewer may see: staff all; an organisation those in it or of its researchers."""
    stmt = select(Placement).order_by(Placement.id)
    if programme_id is not None:
        stmt = stmt.where(Placement.programme_id == programme_id)
    rows = list(session.scalars(stmt))
    if viewer.is_staff:
        return rows
    mine = set(session.scalars(select(Researcher.id).where(Researcher.organisation_id == viewer.organisation_id)))
    return [p for p in rows if viewer.owns(p.organisation_id) or p.researcher_id in mine]


def transition(*, session: Session, placement_id: int, data: TransitionIn, actor: Principal, today: date) -> Placement:
    """Move a placement on: proposed → confirmed (once the enterprise and the researcher's organisation have both
    agreed; the first to agree leaves it proposed, with its agreement recorded) → in_post → completed (the
    enterprise or staff), or withdrawn before it ends (staff, the enterprise, or the researcher's organisation)."""
    placement = locked(session, Placement, placement_id)
    researcher = session.get(Researcher, placement.researcher_id) if placement is not None else None
    if placement is None or researcher is None:
        raise NotFound(f"placement {placement_id} not found")
    if not (actor.is_staff or actor.owns(placement.organisation_id) or actor.owns(researcher.organisation_id)):
        raise NotFound(f"placement {placement_id} not found")
    current = placement.state
    if current in ENDED:
        raise Conflict(f"placement {placement.id} is {current}: it moves no more")
    if data.to != PlacementState.withdrawn and (
        data.to not in FORWARD or FORWARD.index(data.to) != FORWARD.index(current) + 1
    ):
        raise Conflict(f"placement {placement.id} is {current}: it goes to {FORWARD[FORWARD.index(current) + 1]} next")
    enterprise_side = actor.is_staff or actor.owns(placement.organisation_id)
    if data.to == PlacementState.completed and not enterprise_side:
        raise Forbidden("the enterprise served (or staff) records that a placement's service is completed", field="to")
    on = data.on or today
    if on > today:
        raise InvalidInput(f"{on} is in the future", field="on")
    agreed_before = (placement.enterprise_agreed_at, placement.researcher_agreed_at)
    if data.to == PlacementState.confirmed and not _both_agree(placement, researcher, actor):
        if (placement.enterprise_agreed_at, placement.researcher_agreed_at) == agreed_before:
            return placement  # this side had agreed already: nothing new to record
        waiting = "the researcher's organisation" if placement.researcher_agreed_at is None else "the enterprise"
        session.add(
            PlacementEvent(
                placement_id=placement.id,
                from_state=current,
                to_state=current,
                actor=actor.actor,
                note=f"agreed; waiting for {waiting}" + (f": {data.note}" if data.note else ""),
            )
        )
        session.flush()
        audit.record(
            session=session,
            actor=actor,
            action="placement.agree",
            target_kind="placement",
            target_id=placement.id,
        )
        return placement
    if data.to == PlacementState.in_post:
        placement.started_on = on
    if data.to in ENDED:
        if placement.started_on is not None and on < placement.started_on:
            raise InvalidInput(f"{on} is before the service started ({placement.started_on})", field="on")
        placement.ended_on = on
    placement.state = data.to
    placement.state_changed_at = utcnow()
    session.add(
        PlacementEvent(
            placement_id=placement.id, from_state=current, to_state=data.to, actor=actor.actor, note=data.note
        )
    )
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="placement.transition",
        target_kind="placement",
        target_id=placement.id,
        detail={"from": str(current), "to": str(data.to)},
    )
    return placement


def _both_agree(placement: Placement, researcher: Researcher, actor: Principal) -> bool:
    """Record the actor's side's agreement to a proposal (staff record both: the bureau confirms on the record);
    whether both sides have now agreed."""
    now = utcnow()
    if actor.is_staff or actor.owns(placement.organisation_id):
        placement.enterprise_agreed_at = placement.enterprise_agreed_at or now
    if actor.is_staff or actor.owns(researcher.organisation_id):
        placement.researcher_agreed_at = placement.researcher_agreed_at or now
    return placement.enterprise_agreed_at is not None and placement.researcher_agreed_at is not None


def history(*, session: Session, placement_id: int) -> list[PlacementEvent]:
    stmt = select(PlacementEvent).where(PlacementEvent.placement_id == placement_id).order_by(PlacementEvent.id)
    return list(session.scalars(stmt))
