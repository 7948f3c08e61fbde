"""The service image, built with no network as an air-gapped network builds it (scripts/docker-image): it runs as
production, refuses to start without an admin token, answers /healthz and takes writes from staff only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
IMAGE = "techmatch:test"
TOKEN = "docker-test-token-0123456789"
REFUSAL = "TECHMATCH_ADMIN_TOKEN of at least 16 characters is required in production"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CANNOT_HERE = 77  # scripts/docker-image: no engine or tools here, and not root to add them
READY_TIMEOUT_S = 300  # migrations, the model load and the index catch-up, on a busy 2-core machine


@pytest.mark.parametrize("token", [None, "too-short"], ids=["no-token", "short-token"])
def test_serve_refuses_production_without_a_token(tmp_path: Path, token: str | None) -> None:
    """The refusal the image relies on, without Docker: one line on stderr and exit 2, before uvicorn starts."""
    env = {k: v for k, v in os.environ.items() if k != "TECHMATCH_ADMIN_TOKEN"}
    env |= {"TECHMATCH_ENVIRONMENT": "production", "TECHMATCH_DATA_DIR": str(tmp_path)}
    if token:
        env["TECHMATCH_ADMIN_TOKEN"] = token
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"error: {REFUSAL}"


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image built from this checkout; the base, the wheelhouse and the layers are cached between runs."""
    if os.environ.get("TECHMATCH_TEST_DOCKER") == "0":
        pytest.skip("TECHMATCH_TEST_DOCKER=0: scripts/test builds and tries the image once, in its SQLite pass")
    log = tmp_path_factory.mktemp("docker") / "build.log"
    with log.open("w") as out:
        r = subprocess.run(
            [str(REPO / "scripts" / "docker-image"), IMAGE],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=3600,
        )
    output = log.read_text()
    if r.returncode == CANNOT_HERE and not IN_CI:
        pytest.skip(output.strip().splitlines()[-1])
    assert r.returncode == 0, f"scripts/docker-image exited {r.returncode}; the end of {log}:\n{_tail(output)}"
    return IMAGE


@pytest.mark.slow
@pytest.mark.docker
def test_image_runs_as_production_and_unprivileged(image: str) -> None:
    config = _docker_json("image", "inspect", "--format", "{{json .Config}}", image)
    assert config["User"] == "nobody"
    assert "TECHMATCH_ENVIRONMENT=production" in config["Env"]
    assert config["Cmd"] == ["techmatch", "serve", "--host", "0.0.0.0", "--port", "8000"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("token", [None, "too-short"], ids=["no-token", "short-token"])
def test_image_refuses_to_start_without_a_token(image: str, token: str | None) -> None:
    # The image's own command; no network, so nothing could listen anywhere even if it did start.
    name = f"techmatch-test-{uuid.uuid4().hex[:10]}"
    env = ["-e", f"TECHMATCH_ADMIN_TOKEN={token}"] if token else []
    try:
        r = _docker("run", "--name", name, "--network", "none", *env, image, timeout=120)
    finally:
        _docker("rm", "-f", "-v", name)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"error: {REFUSAL}" in r.stderr


@pytest.fixture
def server(image: str) -> Iterator[str]:
    """The image serving on 127.0.0.1 only (host network, loopback bind), with a token; its base URL."""
    port = _free_port()
    name = f"techmatch-test-{uuid.uuid4().hex[:10]}"
    started = _docker(
        "run", "-d", "--name", name, "--network", "host", "-e", f"TECHMATCH_ADMIN_TOKEN={TOKEN}",
        image, "techmatch", "serve", "--host", "127.0.0.1", "--port", str(port),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(name, url)
        yield url
    except BaseException:
        print(f"docker logs {name}:\n{_tail(_logs(name))}")
        raise
    finally:
        _docker("rm", "-f", "-v", name)


@pytest.mark.slow
@pytest.mark.docker
def test_image_serves_healthz_and_takes_writes_from_staff_only(server: str) -> None:
    with httpx.Client(base_url=server, timeout=30) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        body = {
            "title": "高安全性防爆锂离子电池电解液",
            "abstract": "开发阻燃电解液添加剂，抑制锂离子电池热失控，针刺不起火不爆炸。",
            "external_id": "docker-a-li",
        }
        assert client.post("/api/v1/achievements", json=body).status_code == 401
        created = client.post("/api/v1/achievements", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert created.status_code == 201, created.text
        query = {"text": "动力电池热失控防护技术", "target": "achievements", "k": 3}
        deadline = time.monotonic() + 60
        while True:
            hits = client.post("/api/v1/match", json=query).json()["results"]
            if [hit["id"] for hit in hits] == [created.json()["id"]] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [hit["id"] for hit in hits] == [created.json()["id"]]


def _wait_healthy(name: str, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        state = _docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.strip()
        assert state.startswith("running"), f"the container stopped ({state})"
        time.sleep(1)
    raise AssertionError(f"/healthz did not answer 200 within {READY_TIMEOUT_S} s")


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


def _docker_json(*args: str) -> dict[str, Any]:
    r = _docker(*args)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def _logs(name: str) -> str:
    r = _docker("logs", name)
    return r.stdout + r.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
