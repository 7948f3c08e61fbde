"""An app on its own database and index folder, with the session's embedding model, spoken to over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.runtime import Runtime, build_runtime
from core.settings import Settings, reset_settings
from tests.conftest import _throwaway_database

ADMIN = "test-admin-token-0123456789"
STAFF = {"Authorization": f"Bearer {ADMIN}"}


def make_runtime(folder: Path, url: str, embedder: object, **overrides: object) -> Runtime:
    """A runtime on the given DB and a data dir inside folder."""
    settings = Settings(environment="test", data_dir=folder / "data", database_url=url, admin_token=ADMIN, **overrides)  # type: ignore[arg-type]
    reset_settings(settings)
    return build_runtime(settings, embedder=embedder)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Runtime]:
    folder = tmp_path_factory.mktemp("app")
    with _throwaway_database(folder) as url:
        rt = make_runtime(folder, url, embedder)
        yield rt
        rt.close()
    reset_settings()


@pytest.fixture(scope="module")
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as c:
        yield c
