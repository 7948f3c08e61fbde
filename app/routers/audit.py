"""The audit log, read-only (staff)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from accounts import audit
from app.deps import SessionDep, StaffDep, StorableQuery
from app.errors import PROBLEM_RESPONSES
from app.schemas import AuditEntryOut, AuditPage

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=PROBLEM_RESPONSES, dependencies=[StorableQuery])


@router.get("/audit", response_model=AuditPage)
def list_audit(
    session: SessionDep,
    _: StaffDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    user_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    target_kind: Annotated[str | None, Query(max_length=64)] = None,
    target_id: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """Entries newest first, filtered; there is no route that changes or deletes one."""
    rows, total = audit.entries(
        session=session,
        action=action,
        actor=actor,
        user_id=user_id,
        target_kind=target_kind,
        target_id=target_id,
        since=since,
        until=until,
        page=page,
        page_size=page_size,
    )
    return AuditPage(items=[AuditEntryOut.model_validate(r) for r in rows], total=total, page=page, page_size=page_size)
