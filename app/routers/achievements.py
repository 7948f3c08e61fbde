"""Research achievements (科技成果): publish, read, list, update, withdraw, and their matching needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import IndexesDep, PrincipalDep, RuntimeDep, SessionDep, WriterDep
from app.errors import PROBLEM_RESPONSES
from app.runtime import Runtime
from app.schemas import AchievementOut, AchievementPage, AchievementWriteOut, MatchResponse
from catalog import service
from catalog.match import matches_for_achievement
from catalog.schemas import AchievementCreate, AchievementUpdate
from core.errors import NotFound
from models.tables import Achievement, ListingStatus, MaturityStage

router = APIRouter(prefix="/api/v1/achievements", tags=["achievements"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=AchievementWriteOut)
def create_achievement(
    body: AchievementCreate, session: SessionDep, runtime: RuntimeDep, _: WriterDep
) -> AchievementWriteOut:
    """Publish an achievement; `searchable` says whether matching sees it yet (normally within a second)."""
    written = service.create_achievement(session=session, data=body)
    session.commit()
    return _written(runtime, written)


@router.get("", response_model=AchievementPage)
def list_achievements(
    session: SessionDep,
    principal: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
    status: ListingStatus | None = None,
    field: str | None = None,
    maturity_stage: MaturityStage | None = None,
    source: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
) -> AchievementPage:
    """A page of achievements; without staff rights only published ones."""
    if not principal.is_staff:
        status = ListingStatus.published
    filters = {"status": status, "field": field, "maturity_stage": maturity_stage, "source": source}
    got = service.list_achievements(session=session, page=page, page_size=page_size, filters=filters, query=q)
    return AchievementPage(
        items=[AchievementOut.model_validate(r) for r in got.items],
        total=got.total,
        page=got.page,
        page_size=got.page_size,
    )


@router.get("/{achievement_id}", response_model=AchievementOut)
def get_achievement(achievement_id: int, session: SessionDep, principal: PrincipalDep) -> AchievementOut:
    """One achievement."""
    row = service.get_achievement(session=session, achievement_id=achievement_id)
    if not principal.is_staff and not service.visible_to_public(row):
        raise NotFound(f"achievement {achievement_id} not found")
    return AchievementOut.model_validate(row)


@router.patch("/{achievement_id}", response_model=AchievementWriteOut)
def update_achievement(
    achievement_id: int, body: AchievementUpdate, session: SessionDep, runtime: RuntimeDep, _: WriterDep
) -> AchievementWriteOut:
    """Change an achievement; the index follows."""
    written = service.update_achievement(session=session, achievement_id=achievement_id, data=body)
    session.commit()
    return _written(runtime, written)


@router.post("/{achievement_id}/withdraw", response_model=AchievementWriteOut)
def withdraw_achievement(
    achievement_id: int, session: SessionDep, runtime: RuntimeDep, _: WriterDep
) -> AchievementWriteOut:
    """Withdraw an achievement from matching."""
    written = service.withdraw_achievement(session=session, achievement_id=achievement_id)
    session.commit()
    return _written(runtime, written)


@router.get("/{achievement_id}/matches", response_model=MatchResponse)
def achievement_matches(
    achievement_id: int,
    session: SessionDep,
    indexes: IndexesDep,
    principal: PrincipalDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> MatchResponse:
    """The best needs for this achievement, explained."""
    hits = matches_for_achievement(
        session=session, indexes=indexes, achievement_id=achievement_id, k=k, staff=principal.is_staff
    )
    return MatchResponse.model_validate({"results": [h.__dict__ for h in hits]})


def _written(runtime: Runtime, written: service.Written[Achievement]) -> AchievementWriteOut:
    """The committed row, after waiting (briefly) for the index to apply the change."""
    searchable = runtime.follower.wait_for("achievements", written.seq, timeout=runtime.settings.write_visible_timeout)
    out = AchievementOut.model_validate(written.row).model_dump()
    return AchievementWriteOut(**out, change_seq=written.seq, searchable=searchable)
