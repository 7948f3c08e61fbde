"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from app.deps import IndexesDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep, indexes: IndexesDep) -> dict[str, Any]:
    """The database answers and the indexes are loaded."""
    session.execute(text("SELECT 1"))
    return {"status": "ok", "indexed": {"achievements": len(indexes.achievements), "needs": len(indexes.needs)}}
