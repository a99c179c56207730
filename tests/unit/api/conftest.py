"""Fixtures for the admin API's unit tests: an app over the in-memory cluster, no Kubernetes needed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from scheduledjob_api.app import create_app
from scheduledjob_api.settings import Settings
from scheduledjob_archive.repository import Archive

from tests.unit.api.apitestkit import SECRET, FakeCluster, StartApp, archive_at


@pytest.fixture(autouse=True)
def _no_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The developer's own SCHEDULED_JOBS_* variables (or a CI Pod's) must not change what the tests see."""
    for name in list(os.environ):
        if name.startswith("SCHEDULED_JOBS_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # the suite run inside a Pod (CI) is no Pod API
    yield


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def settings() -> Settings:
    return Settings(jwt_secret=SecretStr(SECRET))


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    """A real (SQLite) archive with its schema, as the operator leaves it."""
    made = archive_at(tmp_path / "archive.sqlite")
    await made.migrate()
    yield made
    await made.close()


@pytest.fixture
async def start_app(cluster: FakeCluster, settings: Settings, archive: Archive) -> AsyncIterator[StartApp]:
    """Starts apps with their lifespan (so the cache really lists and watches the fake cluster)
    and stops them after the test."""
    async with AsyncExitStack() as stack:

        async def start(
            app_settings: Settings | None = None, *, wait_synced: bool = True
        ) -> tuple[FastAPI, httpx.AsyncClient]:
            app = create_app(app_settings or settings, cluster, archive_at(Path(archive.engine.url.database or "")))
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            if wait_synced:
                async with asyncio.timeout(5):
                    await app.state.cache.wait_synced()
            return app, http

        yield start


@pytest.fixture
async def client(start_app: StartApp) -> httpx.AsyncClient:
    _, http = await start_app()
    return http
