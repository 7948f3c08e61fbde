"""Liveness and readiness."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from app.deps import FollowerDep, IndexesDep, PublicDep, SessionDep
from app.errors import PROBLEM_RESPONSES
from models.changes import last_seq

# Open to all, but a wrong bearer token is still 401 (as everywhere).
router = APIRouter(tags=["health"], responses={401: PROBLEM_RESPONSES[401]})


@router.get("/healthz")
def healthz(session: SessionDep, indexes: IndexesDep, follower: FollowerDep, _: PublicDep) -> dict[str, Any]:
    """The database answers; this process's indexes: size, role, how far they follow the change feed."""
    session.execute(text("SELECT 1"))
    applied = follower.applied()
    feed = {target: last_seq(session=session, kind=target) for target in applied}
    return {
        "status": "ok",
        "indexed": {"achievements": len(indexes.achievements), "needs": len(indexes.needs)},
        "index": {
            "pid": os.getpid(),
            "role": follower.role,
            "applied_seq": applied,
            "feed_seq": feed,
            "lag": {t: feed[t] - (applied[t] or 0) for t in applied},
            "last_error": follower.last_error,
        },
    }
