"""The FastAPI application: create_app() and its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app import errors
from app.routers import (
    accounts,
    achievements,
    audit,
    calls,
    carriers,
    deals,
    evaluationpages,
    health,
    lists,
    match,
    needs,
    pages,
    push,
    reports,
    researcherpages,
    researchers,
    review,
    subsidies,
    workpages,
)
from app.runtime import Runtime, build_runtime
from core.settings import Settings, get_settings
from workflow.schedule import Scheduler

log = logging.getLogger("techmatch")


def create_app(*, settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the app; a given runtime (tests) is used as is, else one is built at start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        app.state.runtime = runtime or build_runtime(settings or get_settings())
        # Each process (each uvicorn worker) follows the change feed: writes made anywhere become searchable here.
        app.state.runtime.follower.start()
        # Scheduled push batches and deliveries (a lease keeps each scheduled batch to one process of many).
        scheduler = Scheduler(app.state.runtime) if app.state.runtime.settings.scheduler else None
        if scheduler is not None:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if own:
                app.state.runtime.close()
            else:
                app.state.runtime.follower.stop()

    app = FastAPI(
        title="techmatch",
        version="0.1.0",
        lifespan=lifespan,
        description="Technology supply/demand matching: needs, achievements, ranked explained matches.",
    )
    errors.install(app)
    for router in (
        health.router,
        accounts.router,
        needs.router,
        achievements.router,
        match.router,
        subsidies.router,
        audit.router,
        review.router,
        push.router,
        deals.router,
        calls.router,
        lists.router,
        carriers.router,
        reports.router,
        researchers.router,
        pages.router,
        workpages.router,
        evaluationpages.router,
        researcherpages.router,
    ):
        app.include_router(router)
    pages.install(app)  # pages answer errors as pages (the API keeps problem+json)
    app.mount("/static", StaticFiles(directory=Path(__file__).resolve().parent / "static"), name="static")
    return app
