"""The operator's own metrics (issue 22), served at /metrics beside the liveness endpoint (__main__), by a
standby too: it leads nothing, so it says leader 0.

What happens is counted where it happens: a reconcile that raised (handlers), a request retried by the one
retry policy (kube.transient_retry), a scheduled run's delay from its slot to its start (reconciler, once per
run). What is a state is read when scraped (`State`, a Collector), never kept in step from many places:
whether this process holds the leader Lease, how many Jobs wait to be recorded, and whether the archive
answers: each scrape of the leader sends it one `SELECT 1` with a short deadline (`check_archive`, within
half the scrape's own timeout), as an exporter's `up` does. Importing this module registers nothing anywhere
else: the families live in a registry of their own (`REGISTRY`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator
from typing import Protocol

import tenacity
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from scheduledjob.ledger import Transition

logger = logging.getLogger(__name__)

PATH = "/metrics"
# How long the archive's check (one SELECT 1) may take before the archive counts as down: at most this, and
# at most half the scrape's own timeout (Prometheus sends it: SCRAPE_TIMEOUT_HEADER; its default is 10 s), so
# an archive that does not answer is reported as down, never as a failed scrape of the operator.
ARCHIVE_CHECK_SECONDS = 3.0
MIN_ARCHIVE_CHECK_SECONDS = 0.1
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# A slot's start delay is the CronJob controller's reaction, the Job's admission and the pod's scheduling
# and image pull: from a tenth of a second to minutes when the cluster is busy.
SCHEDULE_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

REGISTRY = CollectorRegistry()
RECONCILES = Counter(
    "scheduledjobs_operator_reconciles",
    "Reconciles of a ScheduledJob begun (events, the resync, the warm-up); the event of the operator's own "
    "status write is not reconciled again.",
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "scheduledjobs_operator_reconcile_errors",
    "Reconciles of a ScheduledJob that raised (each is retried with backoff).",
    registry=REGISTRY,
)
API_RETRIES = Counter(
    "scheduledjobs_operator_api_retries",
    "Kubernetes API calls tried again by the operator's retry policy (timeouts, connection errors, 429, 5xx).",
    registry=REGISTRY,
)
SCHEDULE_DELAY = Histogram(
    "scheduledjobs_operator_schedule_delay_seconds",
    "A scheduled run's delay from its slot to its start (its first container), observed once per run.",
    buckets=SCHEDULE_DELAY_BUCKETS,
    registry=REGISTRY,
)


class Pingable(Protocol):
    async def ping(self) -> None:
        """Answers, or raises (scheduledjob_archive.repository.Archive.ping)."""


class State(Collector):
    """The gauges that are a function of the process's state, read at each scrape through the functions
    `follow` gives it (until then: a standby with nothing to record and no archive)."""

    def __init__(self) -> None:
        self.leading: Callable[[], bool] = lambda: False
        self.unrecorded: Callable[[], int] = lambda: 0
        self.archive: Callable[[], Pingable | None] = lambda: None
        self.archive_answered = False  # the last check's outcome
        self._checking: asyncio.Task[None] | None = None

    def collect(self) -> Iterator[Metric]:
        leading = self.leading()
        leader = GaugeMetricFamily(
            "scheduledjobs_operator_leader", "1 while this process holds the leader Lease, else 0."
        )
        leader.add_metric([], 1.0 if leading else 0.0)
        yield leader
        yield GaugeMetricFamily(
            "scheduledjobs_operator_unrecorded_jobs",
            "Jobs waiting to be recorded again after a failed recording (the retry backlog).",
            value=self.unrecorded(),
        )
        archive_up = GaugeMetricFamily(
            "scheduledjobs_operator_archive_up",
            "1 if the archive answered the last check (one SELECT 1 per scrape), else 0; the leader only.",
        )
        if leading:  # a standby opens no archive and checks nothing: no sample (max() over replicas stays true)
            archive_up.add_metric([], 1.0 if self.archive_answered else 0.0)
        yield archive_up

    async def check_archive(self, deadline: float) -> None:
        """Checks the archive once within `deadline` seconds (scrapes at the same moment share the check in
        flight)."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check(deadline), name="archive check")
        await asyncio.shield(self._checking)

    async def _check(self, deadline: float) -> None:
        # A standby has no archive; a leader still starting (handlers.start) has none open yet: not up.
        archive = self.archive() if self.leading() else None
        answered = False
        if archive is not None:
            try:
                async with asyncio.timeout(deadline):
                    await archive.ping()
                answered = True
            except Exception as error:
                if self.archive_answered:
                    logger.warning("the archive did not answer its check within %g s: %r", deadline, error)
        if answered and not self.archive_answered and archive is not None:
            logger.info("the archive answers its check")
        self.archive_answered = answered


STATE = State()
REGISTRY.register(STATE)


def follow(
    *,
    leading: Callable[[], bool],
    unrecorded: Callable[[], int],
    archive: Callable[[], Pingable | None],
) -> None:
    """Where the state gauges are read from (__main__: the elector, and the leader's OperatorContext)."""
    STATE.leading, STATE.unrecorded, STATE.archive = leading, unrecorded, archive


def check_deadline(scrape_timeout: str | None) -> float:
    """The archive check's deadline for a scrape that must answer within `scrape_timeout` seconds (the
    SCRAPE_TIMEOUT_HEADER's value; absent or unreadable: ARCHIVE_CHECK_SECONDS)."""
    try:
        half = float(scrape_timeout) / 2 if scrape_timeout else ARCHIVE_CHECK_SECONDS
    except ValueError:
        half = ARCHIVE_CHECK_SECONDS
    if not math.isfinite(half):
        half = ARCHIVE_CHECK_SECONDS
    return max(MIN_ARCHIVE_CHECK_SECONDS, min(ARCHIVE_CHECK_SECONDS, half))


async def exposition(scrape_timeout: str | None = None) -> tuple[bytes, str]:
    """The text exposition of every family (the archive checked first, within half `scrape_timeout`: the
    scrape's SCRAPE_TIMEOUT_HEADER), and its content type."""
    await STATE.check_archive(check_deadline(scrape_timeout))
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


# ---- hooks called by the rest of the operator -------------------------------------------------
def reconcile_begun() -> None:
    RECONCILES.inc()


def reconcile_failed() -> None:
    RECONCILE_ERRORS.inc()


def counting_retries(
    before_sleep: Callable[[tenacity.RetryCallState], None],
) -> Callable[[tenacity.RetryCallState], None]:
    """tenacity's `before_sleep` that also counts the retry about to be made."""

    def counted(state: tenacity.RetryCallState) -> None:
        API_RETRIES.inc()
        before_sleep(state)

    return counted


def note_transition(transition: Transition) -> None:
    """A scheduled run's start delay, once per run: at its finish. The delay (the record's startDelayMs) is
    read from its pods when it ends (scheduledjob.diagnostics), so the record of a "started" transition
    has none yet; a run seen started and finished at once has both transitions on one record, and only
    the finish counts. A manual run has no slot."""
    record = transition.record
    if transition.kind in FINISHED and record.trigger == "schedule" and record.start_delay_ms is not None:
        SCHEDULE_DELAY.observe(max(0, record.start_delay_ms) / 1000)
