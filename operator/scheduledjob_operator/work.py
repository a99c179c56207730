"""One piece of work on one object, done safely: a failure is logged and queued for the resync to retry.

Used by the event handlers (handlers.py) and by the leader's background passes (background.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from scheduledjob.memory import drop_idle_lock

from scheduledjob_operator import metrics
from scheduledjob_operator.context import Backoff, OperatorContext
from scheduledjob_operator.kube import NamespaceTerminating
from scheduledjob_operator.ledger_sync import ArchiveUnavailable, DeletionNotNoted
from scheduledjob_operator.reconciler import reconcile

logger = logging.getLogger(__name__)
# Failures that say all in one line (no stack trace): they are waited out with backoff.
EXPECTED_FAILURES = (ArchiveUnavailable, DeletionNotNoted)


async def safely(
    work: Callable[[], Awaitable[None]],
    obj: dict[str, Any],
    queue: Backoff,
    what: str,
    deleted: bool = False,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> Exception | None:
    """Works on `obj` (records a Job, decides a ScheduledJobRun). If that fails, the resync reads the
    object again and retries, with backoff in `queue`, until it lands; a deleted object cannot be read
    again (its last state is all there is), so its failure is only logged. Returns the failure."""
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    try:
        await work()
    except Exception as error:
        if deleted:
            log.exception("%s %s/%s (deleted) failed", what, *key)
            return error
        delay = queue.failed(key)
        if isinstance(error, EXPECTED_FAILURES):  # said in one line: no stack to read
            log.warning("%s %s/%s: %s; retrying in %.0f s", what, *key, error, delay)
        else:
            log.exception("%s %s/%s failed; retrying in %.0f s", what, *key, delay)
        return error
    queue.succeeded(key)
    return None


async def reconcile_safely(obj: dict[str, Any], context: OperatorContext) -> None:
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    lock = context.locks[key]
    metrics.reconcile_begun()
    try:
        async with lock:
            await reconcile(obj, context)
        context.retry.succeeded(key)
    except NamespaceTerminating:
        # Its namespace is being deleted (its CronJob went first): the ScheduledJob's own deletion follows.
        logger.info("%s/%s: its namespace is being deleted; nothing to reconcile", *key)
        context.retry.succeeded(key)
    except Exception:
        metrics.reconcile_failed()
        delay = context.retry.failed(key)
        logger.exception("reconciling %s/%s failed; retrying in %.0f s", *key, delay)
    finally:
        drop_idle_lock(context.locks, key)
