"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from scheduledjob.timefmt import format_utc

from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Kind
from scheduledjob_api.envelope import envelope, respond
from scheduledjob_api.metrics import Metrics
from scheduledjob_api.schemas import Liveness, NotReadyEnvelope, Readiness, ok

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive", responses=ok(Liveness))
async def healthz(request: Request) -> JSONResponse:
    return respond(request, {"alive": True})


@router.get(
    "/readyz",
    summary="The caches are synced and their watches connected: reads are current, writes reach the cluster",
    responses={
        **ok(Readiness),
        503: {
            "model": NotReadyEnvelope,
            "description": "A cache is not synced yet, or a watch of the Kubernetes API is broken.",
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    cache: ClusterCache = request.app.state.cache
    stale_since = cache.stale_since
    ready = cache.all_synced and stale_since is None
    data = {
        "ready": ready,
        "caches": {kind.value: cache.synced(kind) for kind in Kind},
        "fresh": stale_since is None,
        "stale_since": format_utc(stale_since) if stale_since else None,
    }
    if ready:
        return respond(request, data)
    if not cache.all_synced:
        error = f"The cache is not yet synced ({', '.join(cache.unsynced_kinds())})"
    else:
        error = f"The Kubernetes API is unreachable since {data['stale_since']} ({cache.stale_reason})"
    body = envelope(503, logged_in=False, data=data, error=error)
    return JSONResponse(body, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, Metrics)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
