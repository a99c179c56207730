"""The FastAPI application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from scheduledjob_api import API_VERSION
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Cluster
from scheduledjob_api.docs import install_docs, install_root
from scheduledjob_api.envelope import install_error_handlers
from scheduledjob_api.events import EventHub
from scheduledjob_api.history import History
from scheduledjob_api.kube import KubeCluster
from scheduledjob_api.log_store import ArchiveLogStore
from scheduledjob_api.metrics import Metrics, MetricsMiddleware
from scheduledjob_api.readiness import Readiness
from scheduledjob_api.routers import admin_controls, events, health, logs, scheduled_jobs, transactions
from scheduledjob_api.security import TokenVerifier
from scheduledjob_api.service import ScheduledJobService
from scheduledjob_api.settings import Settings
from scheduledjob_api.ui import install_ui

log = logging.getLogger(__name__)

BASE_PATH = f"/cms-api/{API_VERSION}"


def create_app(
    settings: Settings | None = None, cluster: Cluster | None = None, archive: Archive | None = None
) -> FastAPI:
    """Builds the app without I/O; the lifespan starts the watch cache and closes the cluster client
    and the archive's connections.

    `cluster` defaults to the real Kubernetes adapter; tests pass an in-memory double. `archive`
    defaults to the one `SCHEDULED_JOBS_ARCHIVE_URL` names (the operator creates its schema).
    """
    settings = settings or Settings()
    settings.refuse_dev_secret_in_pod(os.environ)  # before anything is built or listens
    cluster = cluster or KubeCluster(settings)
    archive = archive or Archive.from_settings(ArchiveSettings())
    hub = EventHub()
    cache = ClusterCache(cluster, settings.namespaces, hub)  # feeds the event stream from its watches
    verifier = TokenVerifier(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not verifier.configured:
            log.warning("no JWT secret, key or JWKS URL configured: every authenticated request will get 401")
        elif settings.uses_dev_secret:
            log.warning("development mode: accepting tokens signed with the public development secret")
        cache.start()
        try:
            yield
        finally:
            await cache.stop()
            await cluster.close()
            await archive.close()

    app = FastAPI(
        title="SelfHelp Admin Scheduled Jobs API",
        version=API_VERSION,
        description="Scheduled jobs backed by ScheduledJob resources on Kubernetes.",
        lifespan=lifespan,
        openapi_url=f"{BASE_PATH}/openapi.json",
        docs_url=None,  # served from packaged assets instead of a CDN: install_docs below
        redoc_url=None,
    )
    # A redirect is not an envelope; unknown trailing-slash paths answer 404 instead.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.cluster = cluster
    app.state.cache = cache
    app.state.events = hub
    app.state.readiness = Readiness(cluster, cache)
    app.state.verifier = verifier
    app.state.service = service = ScheduledJobService(
        cache, cluster, decision_seconds=settings.execute_decision_seconds
    )
    app.state.history = History(archive, service.has_scheduled_job)
    app.state.log_store = ArchiveLogStore(archive)
    app.state.metrics = metrics = Metrics(cache)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees the final status, 500s too
    app.include_router(transactions.router)  # first: `/transactions` is not a job id
    app.include_router(events.router)  # and `/events` neither
    app.include_router(scheduled_jobs.router)
    app.include_router(admin_controls.router)
    app.include_router(logs.router)  # app.state.log_store (the archive's LogStore) serves finished runs
    app.include_router(health.router)
    install_docs(app, BASE_PATH)
    install_root(app, BASE_PATH)  # GET /: the dashboard for a browser, links for anything else
    install_ui(app)  # the dashboard at /ui/ (not in the OpenAPI document)
    app.openapi = _openapi_without_validation_422(app)  # type: ignore[method-assign]
    return app


def _openapi_without_validation_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 `HTTPValidationError` body on every endpoint with parameters. This API
    answers a bad parameter or body with a 400 envelope (documented per endpoint), so that 422 is
    never sent: leave it out of the document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # FastAPI keeps it as app.openapi_schema: edited once, in place
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    return openapi
