"""Free-text matching over either side."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import IndexesDep, PublicDep, ReadSessionDep, RuntimeDep
from app.errors import BODY_RESPONSES, PROBLEM_RESPONSES
from app.schemas import MatchRequest, MatchResponse
from catalog.match import match_text

router = APIRouter(prefix="/api/v1", tags=["match"], responses=PROBLEM_RESPONSES)


@router.post("/match", response_model=MatchResponse, responses=BODY_RESPONSES)
def match(
    body: MatchRequest, session: ReadSessionDep, indexes: IndexesDep, runtime: RuntimeDep, viewer: PublicDep
) -> MatchResponse:
    """Rank published achievements (or needs) for a text, with reasons."""
    hits = match_text(
        session=session,
        indexes=indexes,
        text=body.text,
        target=body.target,
        k=body.k,
        filters=body.filters,
        viewer=viewer,
    )
    return MatchResponse.of(hits, ranker_version=runtime.ranker_version)
