"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from scheduledjob_api.envelope import envelope, respond
from scheduledjob_api.metrics import Metrics
from scheduledjob_api.readiness import Readiness as ReadinessProbe
from scheduledjob_api.schemas import Liveness, NotReadyEnvelope, Readiness, ok

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive", responses=ok(Liveness))
async def healthz(request: Request) -> JSONResponse:
    return respond(request, {"alive": True})


@router.get(
    "/readyz",
    summary="Synced caches, connected watches and a ready Kubernetes API: reads are current, writes can succeed",
    responses={
        **ok(Readiness),
        503: {
            "model": NotReadyEnvelope,
            "description": "A cache is not synced yet, or a watch of the Kubernetes API is broken.",
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    readiness: ReadinessProbe = request.app.state.readiness
    verdict = await readiness.verdict()
    if verdict.ready:
        return respond(request, verdict.data)
    body = envelope(503, logged_in=False, data=verdict.data, error=verdict.error)
    return JSONResponse(body, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, Metrics)
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
