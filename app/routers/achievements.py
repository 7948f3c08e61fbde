"""Research achievements (科技成果): publish, read, list, update, withdraw, and their matching needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import AchievementPublisherDep, IdPath, IndexesDep, PublicDep, RuntimeDep, SessionDep, StorableQuery
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from app.runtime import Runtime
from app.schemas import AchievementOut, AchievementPage, AchievementWriteOut, MatchResponse
from catalog import service
from catalog.match import matches_for_achievement
from catalog.schemas import AchievementCreate, AchievementUpdate
from models.tables import Achievement, ListingStatus, MaturityStage

router = APIRouter(
    prefix="/api/v1/achievements", tags=["achievements"], responses=PROBLEM_RESPONSES, dependencies=[StorableQuery]
)


@router.post("", status_code=201, responses=BODY_RESPONSES, response_model=AchievementWriteOut)
def create_achievement(
    body: AchievementCreate, session: SessionDep, runtime: RuntimeDep, actor: AchievementPublisherDep
) -> AchievementWriteOut:
    """Publish an achievement; `searchable` says whether matching sees it yet (normally within a second)."""
    written = service.create_achievement(session=session, data=body, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.get("", response_model=AchievementPage)
def list_achievements(
    session: SessionDep,
    viewer: PublicDep,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
    status: ListingStatus | None = None,
    field: str | None = None,
    maturity_stage: MaturityStage | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> AchievementPage:
    """A page of achievements: published ones, your organisation's own, and everything for staff."""
    filters = {"status": status, "field": field, "maturity_stage": maturity_stage, "source": source}
    got = service.list_achievements(
        session=session, page=page, page_size=page_size, filters=filters, query=q, viewer=viewer
    )
    return AchievementPage(
        items=[AchievementOut.model_validate(r) for r in got.items],
        total=got.total,
        page=got.page,
        page_size=got.page_size,
    )


@router.get("/{achievement_id}", response_model=AchievementOut)
def get_achievement(achievement_id: IdPath, session: SessionDep, viewer: PublicDep) -> AchievementOut:
    """One achievement (a draft or withdrawn one is not found but by its own organisation and staff)."""
    return AchievementOut.model_validate(
        service.get_achievement(session=session, achievement_id=achievement_id, viewer=viewer)
    )


@router.patch("/{achievement_id}", responses=BODY_RESPONSES, response_model=AchievementWriteOut)
def update_achievement(
    achievement_id: IdPath,
    body: AchievementUpdate,
    session: SessionDep,
    runtime: RuntimeDep,
    actor: AchievementPublisherDep,
) -> AchievementWriteOut:
    """Change an achievement; the index follows."""
    written = service.update_achievement(session=session, achievement_id=achievement_id, data=body, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.post("/{achievement_id}/withdraw", response_model=AchievementWriteOut)
def withdraw_achievement(
    achievement_id: IdPath, session: SessionDep, runtime: RuntimeDep, actor: AchievementPublisherDep
) -> AchievementWriteOut:
    """Withdraw an achievement from matching."""
    written = service.withdraw_achievement(session=session, achievement_id=achievement_id, actor=actor)
    session.commit()
    return _written(runtime, written)


@router.get("/{achievement_id}/matches", response_model=MatchResponse)
def achievement_matches(
    achievement_id: IdPath,
    session: SessionDep,
    indexes: IndexesDep,
    runtime: RuntimeDep,
    viewer: PublicDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> MatchResponse:
    """The best needs for this achievement, explained."""
    hits = matches_for_achievement(session=session, indexes=indexes, achievement_id=achievement_id, k=k, viewer=viewer)
    return MatchResponse.of(hits, ranker_version=runtime.ranker_version)


def _written(runtime: Runtime, written: service.Written[Achievement]) -> AchievementWriteOut:
    """The committed row, after waiting (briefly) for the index to apply the change."""
    searchable = runtime.follower.wait_for("achievements", written.seq, timeout=runtime.settings.write_visible_timeout)
    out = AchievementOut.model_validate(written.row).model_dump()
    return AchievementWriteOut(**out, change_seq=written.seq, searchable=searchable)
