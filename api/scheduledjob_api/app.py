"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from scheduledjob_api import API_VERSION
from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Cluster
from scheduledjob_api.docs import install_docs
from scheduledjob_api.envelope import install_error_handlers
from scheduledjob_api.kube import KubeCluster
from scheduledjob_api.metrics import Metrics, MetricsMiddleware
from scheduledjob_api.readiness import Readiness
from scheduledjob_api.routers import health, scheduled_jobs
from scheduledjob_api.security import TokenVerifier
from scheduledjob_api.service import ScheduledJobService
from scheduledjob_api.settings import Settings

log = logging.getLogger(__name__)

BASE_PATH = f"/cms-api/{API_VERSION}"


def create_app(settings: Settings | None = None, cluster: Cluster | None = None) -> FastAPI:
    """Builds the app without I/O; the lifespan starts the watch cache and closes the cluster client.

    `cluster` defaults to the real Kubernetes adapter; tests pass an in-memory double.
    """
    settings = settings or Settings()
    cluster = cluster or KubeCluster(settings)
    cache = ClusterCache(cluster, settings.namespaces)
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
    app.state.readiness = Readiness(cluster, cache)
    app.state.verifier = verifier
    app.state.service = ScheduledJobService(cache, cluster)
    app.state.metrics = metrics = Metrics(cache)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees the final status, 500s too
    app.include_router(scheduled_jobs.router)
    app.include_router(health.router)
    install_docs(app, BASE_PATH)
    app.openapi = _openapi_without_validation_422(app)  # type: ignore[method-assign]
    return app


def _openapi_without_validation_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents a 422 `HTTPValidationError` body on every endpoint with parameters. This API
    answers a bad parameter with a 400 envelope (documented per endpoint) and takes no request
    bodies, so that 422 is never sent: leave it out of the document."""
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
