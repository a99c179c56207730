"""Prometheus metrics: requests by route template and status, latency, the cache's size and sync, and
every listed ScheduledJob's series (job_metrics: `scheduledjob_*`).

Each app gets its own registry, so several apps in one process (tests) never clash.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scheduledjob_api.cache import ClusterCache
from scheduledjob_api.cluster import Kind
from scheduledjob_api.job_metrics import JobCollector

UNMATCHED = "<unmatched>"  # one label value for every unknown path keeps cardinality bounded


class CacheCollector(Collector):
    def __init__(self, cache: ClusterCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("scheduledjobs_api_cache_objects", "Objects held by the watch cache.", labels=["kind"])
        synced = GaugeMetricFamily(
            "scheduledjobs_api_cache_synced", "1 once the kind's initial LIST is in the cache.", labels=["kind"]
        )
        for kind in Kind:
            size.add_metric([kind.value], self._cache.size(kind))
            synced.add_metric([kind.value], 1.0 if self._cache.synced(kind) else 0.0)
        yield size
        yield synced


class Metrics:
    def __init__(self, cache: ClusterCache) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scheduledjobs_api_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "scheduledjobs_api_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.registry.register(CacheCollector(cache))
        # Not in the registry: its thousands of samples are written by its own fast `exposition`.
        self.jobs = JobCollector(cache.job_series)

    def exposition(self) -> bytes:
        """What `GET /metrics` answers (the Prometheus text format): the registry's families, then the jobs'."""
        return generate_latest(self.registry) + self.jobs.exposition()


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app dies before answering
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router records the matched route in the scope; its path is the template.
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
