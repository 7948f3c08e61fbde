"""The service on the scale-out adapter (TECHMATCH_INDEX_ENGINE=pgvector) over HTTP: writes, matches, withdrawals."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi.testclient import TestClient

from app.main import create_app
from core.settings import reset_settings
from matching.pgvector_index import PgVectorIndex
from tests.app.conftest import STAFF, make_runtime
from tests.app.test_api import ACHIEVEMENTS
from tests.conftest import _throwaway_database


def test_the_service_matches_on_pgvector(tmp_path: Path, embedder: object, pgvector_url: str) -> None:
    namespace = f"app_{uuid.uuid4().hex[:10]}"
    with _throwaway_database(tmp_path) as url:
        runtime = make_runtime(
            tmp_path,
            url,
            embedder,
            index_engine="pgvector",
            vector_database_url=pgvector_url,
            vector_namespace=namespace,
        )
        try:
            index = runtime.indexes.achievements
            assert isinstance(index, PgVectorIndex) and index.table == f"{namespace}_achievements"
            with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
                ids = {}
                for body in ACHIEVEMENTS:
                    r = client.post("/api/v1/achievements", json=body, headers=STAFF)
                    assert r.status_code == 201 and r.json()["searchable"] is True, r.text
                    ids[body["external_id"]] = r.json()["id"]
                assert index.vector_count() == len(ACHIEVEMENTS)
                r = client.post("/api/v1/match", json={"text": "锂电池起火爆炸的安全防护", "k": 3})
                assert r.status_code == 200 and r.json()["results"][0]["external_id"] == "a-li", r.text
                assert r.json()["results"][0]["reasons"]["scores"]["dense"] > 0
                client.post(f"/api/v1/achievements/{ids['a-li']}/withdraw", headers=STAFF)
                r = client.post("/api/v1/match", json={"text": "锂电池起火爆炸的安全防护", "k": 10})
                assert ids["a-li"] not in [h["id"] for h in r.json()["results"]]
                assert index.vector_count() == len(ACHIEVEMENTS) - 1
        finally:
            runtime.close()
            reset_settings()
