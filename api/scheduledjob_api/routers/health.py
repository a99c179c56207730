"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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
    summary="All three caches hold their initial LIST",
    responses={**ok(Readiness), 503: {"model": NotReadyEnvelope, "description": "A cache is not synced yet."}},
)
async def readyz(request: Request) -> JSONResponse:
    cache: ClusterCache = request.app.state.cache
    data = {"ready": cache.all_synced, "caches": {kind.value: cache.synced(kind) for kind in Kind}}
    if cache.all_synced:
        return respond(request, data)
    pending = ", ".join(cache.unsynced_kinds())
    body = envelope(503, logged_in=False, data=data, error=f"The cache is not yet synced ({pending})")
    return JSONResponse(body, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, Metrics)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
