"""Researchers as a supply side (measures 11 and 12): profiles, their matches to a need, programmes' selection
rounds (candidates, enterprises' needs and preferences, the assignment) and the placements they propose."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from accounts.policy import Principal
from app.deps import (
    AchievementPublisherDep,
    IdPath,
    LeadRecipientDep,
    NeedPublisherDep,
    RuntimeDep,
    SessionDep,
    StaffDep,
)
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from core.errors import NotFound
from models.tables import Programme, Researcher
from workflow.researchers import selection, service
from workflow.researchers.schemas import (
    CandidatesIn,
    PlacementEventOut,
    PlacementOut,
    PreferenceIn,
    ProgrammeCreate,
    ProgrammeOut,
    RequestIn,
    ResearcherCreate,
    ResearcherHit,
    ResearcherOut,
    ResearcherUpdate,
    TransitionIn,
)

router = APIRouter(prefix="/api/v1", tags=["researchers"], responses=PROBLEM_RESPONSES)


def researcher_out(session: Session, researcher: Researcher, achievements: list[int] | None = None) -> ResearcherOut:
    if achievements is None:
        achievements = service.achievements_of(session, [researcher.id])[researcher.id]
    return ResearcherOut(
        id=researcher.id,
        name=researcher.name,
        organisation_id=researcher.organisation_id,
        title=researcher.title,
        fields=list(researcher.fields or []),
        self_description=researcher.self_description,
        achievement_ids=achievements,
        active=researcher.active,
        created_at=researcher.created_at,
    )


@router.post("/researchers", status_code=201, response_model=ResearcherOut, responses=BODY_RESPONSES)
def create_researcher(
    body: ResearcherCreate, session: SessionDep, runtime: RuntimeDep, actor: AchievementPublisherDep
) -> ResearcherOut:
    """Add a researcher of your university or institute (staff: of any): fields, achievements, self-description."""
    researcher = service.create_researcher(session=session, data=body, embedder=runtime.embedder, actor=actor)
    return researcher_out(session, researcher)


@router.get("/researchers", response_model=list[ResearcherOut])
def list_researchers(
    session: SessionDep,
    _: LeadRecipientDep,
    organisation_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> list[ResearcherOut]:
    """Researchers (of one organisation with organisation_id)."""
    rows = service.list_researchers(session=session, organisation_id=organisation_id)
    links = service.achievements_of(session, [r.id for r in rows])
    return [researcher_out(session, r, links[r.id]) for r in rows]


@router.get("/researchers/{researcher_id}", response_model=ResearcherOut)
def get_researcher(researcher_id: IdPath, session: SessionDep, _: LeadRecipientDep) -> ResearcherOut:
    return researcher_out(session, service.get_researcher(session=session, researcher_id=researcher_id))


@router.patch("/researchers/{researcher_id}", response_model=ResearcherOut, responses=BODY_RESPONSES)
def update_researcher(
    researcher_id: IdPath, body: ResearcherUpdate, session: SessionDep, runtime: RuntimeDep, actor: LeadRecipientDep
) -> ResearcherOut:
    """Change a profile (its organisation's users or staff); its vector follows the text."""
    researcher = service.update_researcher(
        session=session, researcher_id=researcher_id, data=body, embedder=runtime.embedder, actor=actor
    )
    return researcher_out(session, researcher)


@router.get("/needs/{need_id}/researchers", response_model=list[ResearcherHit])
def researchers_for_need(
    need_id: IdPath,
    session: SessionDep,
    runtime: RuntimeDep,
    viewer: LeadRecipientDep,
    k: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[ResearcherHit]:
    """The researchers best placed to help with a need: their achievements as the achievement ranking orders them
    for it, and their profiles by dense similarity, fused by reciprocal rank; each hit says why."""
    matches = service.match_need(
        session=session, indexes=runtime.indexes, embedder=runtime.embedder, need_id=need_id, viewer=viewer, k=k
    )
    links = service.achievements_of(session, [m.researcher.id for m in matches])
    return [
        ResearcherHit(
            researcher=researcher_out(session, m.researcher, links[m.researcher.id]),
            score=round(m.score, 6),
            reasons=m.reasons(),
        )
        for m in matches
    ]


def programme_out(session: Session, programme: Programme, viewer: Principal) -> ProgrammeOut:
    """A programme as the viewer may read it: staff all of it; an enterprise the round (candidates, status) and its
    own part of it (its request, its preferences, its placements)."""
    mine = (lambda org_id: True) if viewer.is_staff else viewer.owns
    return ProgrammeOut(
        id=programme.id,
        name=programme.name,
        kind=programme.kind,
        year=programme.year,
        per_enterprise=programme.per_enterprise,
        per_researcher=programme.per_researcher,
        status=programme.status,
        candidates=selection.candidates_of(session, programme.id),
        requests=[
            {"organisation_id": r.organisation_id, "need_id": r.need_id}
            for r in selection.requests_of(session, programme.id)
            if mine(r.organisation_id)
        ],
        preferences=[
            {"organisation_id": p.organisation_id, "researcher_id": p.researcher_id, "level": p.level}
            for p in selection.preferences_of(session, programme.id)
            if mine(p.organisation_id)
        ],
        placements=[
            PlacementOut.model_validate(p)
            for p in selection.placements_of(session=session, viewer=viewer, programme_id=programme.id)
        ],
        unplaced=[u for u in programme.unplaced or [] if mine(u["organisation_id"])],
    )


@router.post("/programmes", status_code=201, response_model=ProgrammeOut, responses=BODY_RESPONSES)
def create_programme(body: ProgrammeCreate, session: SessionDep, actor: StaffDep) -> ProgrammeOut:
    """Open a programme's selection round for a year (staff): 科技专员, 科技副总, 协同创新工程师 or a talent project."""
    return programme_out(session, selection.create_programme(session=session, data=body, actor=actor), actor)


@router.get("/programmes", response_model=list[ProgrammeOut])
def list_programmes(session: SessionDep, viewer: NeedPublisherDep) -> list[ProgrammeOut]:
    """Programmes' rounds: staff see all of each; an enterprise the rounds and its own part in them."""
    return [programme_out(session, p, viewer) for p in selection.list_programmes(session=session)]


@router.get("/programmes/{programme_id}", response_model=ProgrammeOut)
def get_programme(programme_id: IdPath, session: SessionDep, viewer: NeedPublisherDep) -> ProgrammeOut:
    """A round: its candidates (profiles at /researchers/{id}) and, for an enterprise, its own request,
    preferences and placements."""
    return programme_out(session, selection.get_programme(session=session, programme_id=programme_id), viewer)


@router.put("/programmes/{programme_id}/candidates", response_model=ProgrammeOut, responses=BODY_RESPONSES)
def set_candidates(programme_id: IdPath, body: CandidatesIn, session: SessionDep, actor: StaffDep) -> ProgrammeOut:
    """The round's candidate researchers (staff)."""
    selection.set_candidates(
        session=session, programme_id=programme_id, researcher_ids=body.researcher_ids, actor=actor
    )
    return programme_out(session, selection.get_programme(session=session, programme_id=programme_id), actor)


@router.post("/programmes/{programme_id}/requests", status_code=201, responses=BODY_RESPONSES)
def add_request(programme_id: IdPath, body: RequestIn, session: SessionDep, actor: NeedPublisherDep) -> dict[str, int]:
    """Join the round with one of your enterprise's published needs (staff: any enterprise's)."""
    request = selection.add_request(session=session, programme_id=programme_id, need_id=body.need_id, actor=actor)
    return {
        "programme_id": request.programme_id,
        "organisation_id": request.organisation_id,
        "need_id": request.need_id,
    }


@router.put("/programmes/{programme_id}/preferences", responses=BODY_RESPONSES)
def set_preference(
    programme_id: IdPath, body: PreferenceIn, session: SessionDep, actor: NeedPublisherDep
) -> dict[str, int]:
    """How much your enterprise wants a candidate: 3 first choice, 2 preferred, 1 acceptable, 0 refuse (回避)."""
    p = selection.set_preference(session=session, programme_id=programme_id, data=body, actor=actor)
    return {"organisation_id": p.organisation_id, "researcher_id": p.researcher_id, "level": p.level}


@router.post("/programmes/{programme_id}/assign", response_model=ProgrammeOut, responses=BODY_RESPONSES)
def assign(programme_id: IdPath, session: SessionDep, runtime: RuntimeDep, actor: StaffDep) -> ProgrammeOut:
    """Solve the round (staff): as many placements as the capacities allow, without conflicts, preferring the best
    matches and the enterprises' preferences; enterprises left out are listed with the reason."""
    selection.assign(
        session=session, indexes=runtime.indexes, embedder=runtime.embedder, programme_id=programme_id, actor=actor
    )
    return programme_out(session, selection.get_programme(session=session, programme_id=programme_id), actor)


@router.get("/placements", response_model=list[PlacementOut])
def list_placements(session: SessionDep, viewer: LeadRecipientDep) -> list[PlacementOut]:
    """Placements: staff all; an organisation those in it or of its researchers."""
    return [PlacementOut.model_validate(p) for p in selection.placements_of(session=session, viewer=viewer)]


@router.post("/placements/{placement_id}/transitions", response_model=PlacementOut, responses=BODY_RESPONSES)
def transition(placement_id: IdPath, body: TransitionIn, session: SessionDep, actor: LeadRecipientDep) -> PlacementOut:
    """proposed → confirmed → in_post (the day service started) → completed (the day it ended), or withdrawn."""
    placement = selection.transition(
        session=session, placement_id=placement_id, data=body, actor=actor, today=dt.date.today()
    )
    return PlacementOut.model_validate(placement)


@router.get("/placements/{placement_id}/history", response_model=list[PlacementEventOut])
def placement_history(placement_id: IdPath, session: SessionDep, viewer: LeadRecipientDep) -> list[PlacementEventOut]:
    """Every step of a placement, each side's agreement included (who, when, a note)."""
    visible = {p.id for p in selection.placements_of(session=session, viewer=viewer)}
    if placement_id not in visible:
        raise NotFound(f"placement {placement_id} not found")
    return [PlacementEventOut.model_validate(e) for e in selection.history(session=session, placement_id=placement_id)]
