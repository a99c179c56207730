"""`python -m scheduledjob_operator`: run the ScheduledJob operator (kopf), once this replica holds the
leader Lease (election.py)."""

from __future__ import annotations

from scheduledjob.memory import use_the_system_allocator

if __name__ == "__main__":
    use_the_system_allocator()  # glibc's allocator, not pymalloc (scheduledjob.memory); may start again

import argparse
import asyncio
import dataclasses
import functools
import getpass
import logging
import os
import signal
import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

import kopf
import uvloop
from aiohttp import web

from scheduledjob_operator import handlers, metrics
from scheduledjob_operator.election import DEFAULT_LEASE_NAME, Elector
from scheduledjob_operator.kopf_event_only import EventOnlyMemories
from scheduledjob_operator.kube import Leases, connect, state_namespace
from scheduledjob_operator.webhooks import WebhookSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scheduledjob_operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable; globs ok)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--lease",
        default=DEFAULT_LEASE_NAME,
        help="name of the leader Lease in the state namespace (SCHEDULED_JOBS_STATE_NAMESPACE, else POD_NAMESPACE)",
    )
    parser.add_argument(
        "--liveness",
        default=None,
        help="liveness endpoint, e.g. http://0.0.0.0:8081/healthz; the same server answers /metrics (Prometheus)",
    )
    webhooks = WebhookSettings.from_env()
    parser.add_argument(
        "--dashboard-url",
        default=webhooks.dashboard_url,
        help="the dashboard's base URL for the links in webhooks (SCHEDULED_JOBS_DASHBOARD_URL); empty: no links",
    )
    parser.add_argument(
        "--allow-private-networks",
        action="store_true",
        default=webhooks.allow_private_networks,
        help="let notifiers send to private, loopback and CGNAT addresses (SCHEDULED_JOBS_ALLOW_PRIVATE_NETWORKS); "
        "link-local and cloud metadata addresses stay refused",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


class HandlerSuccessAtDebug(logging.Filter):
    """kopf logs every handler that succeeded ("Handler 'job_changed' succeeded.", "Updating is processed:
    1 succeeded; 0 failed.") at INFO: most of the log, and nothing happened. They are shown with -v only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("kopf") and record.levelno == logging.INFO:
            message = record.getMessage()
            return not (message.endswith(" succeeded.") or " is processed: " in message)
        return True


def configure_logging(verbose: bool) -> None:
    """One JSON object per line (time, level, logger, message; `object` names the ScheduledJob), via kopf's
    own JSON formatter; one line per meaningful action, kopf's per-handler successes only with -v."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
    for handler in logging.getLogger().handlers:
        if not verbose:
            handler.addFilter(HandlerSuccessAtDebug())
    # Per object kopf logs only that a handler succeeded at INFO (our handlers warn or fail through it):
    # without -v those records are not even made (about 5 % of kopf's work per listed object at a restart).
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if verbose else logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.verbose)
    assert handlers  # registered with kopf on import
    # libuv's event loop (less CPU per watch event and request), set up exactly as `kopf run` does.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args))


async def serve(args: argparse.Namespace) -> None:
    """Stands by until this replica holds the leader Lease, then runs kopf (standalone: no peering)
    while renewing it; releases it on a clean stop. A replica that loses it exits (election.py)."""
    settings = kopf.OperatorSettings()
    # With exact namespace names kopf needs no cluster-wide namespace watch (nor the RBAC for it);
    # it only scans namespaces to resolve globs. The cost: CRDs added later need a restart.
    exact = bool(args.namespace) and not any(set(ns) & set("*?[!") for ns in args.namespace)
    settings.scanning.disabled = exact
    # Who this replica is, in the Lease and in its requests' User-Agent: the Pod's name, else
    # user@host/pid for local runs. A restarted container of the same Pod takes its Lease back at once.
    identity = os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}"
    # Where the startup LIST looks (handlers.start): the exact namespaces, else all (globs included,
    # then kept to the namespaces they match: kube.Cluster.in_scope).
    memo = kopf.Memo(
        namespaces=list(args.namespace) if exact else None,
        patterns=list(args.namespace),
        clusterwide=not args.namespace,
        identity=identity,
        webhook_settings=dataclasses.replace(
            WebhookSettings.from_env(),
            dashboard_url=args.dashboard_url,
            allow_private_networks=args.allow_private_networks,
        ),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):  # kopf installs its own once it runs
        loop.add_signal_handler(signum, stop.set)
    lease_client = await connect(identity)
    lease = Leases(lease_client, state_namespace(), args.lease)
    elector = Elector(lease, identity, f"{lease.namespace}/{lease.name}")
    follow_state(elector, memo)
    # Healthy (live and ready): a standby once it has read the Lease; the leader once kopf's startup handler
    # has run (handlers.start: the catalog is warm, the archive open), as kopf's own endpoint said.
    health = await serve_health(
        args.liveness, lambda: elector.standing_by or (elector.leading and getattr(memo, "context", None) is not None)
    )
    try:
        acquiring = asyncio.create_task(elector.acquire())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not acquiring.done():  # stopped while standing by: nothing was written
            acquiring.cancel()
            return
        acquiring.result()
        elector.renew_in_background(functools.partial(Leases.connected, identity, lease.namespace, lease.name))
        memo.elector = elector  # handlers.stop releases the Lease once kopf's handlers and our loops ended
        try:
            await kopf.operator(
                settings=settings,
                memo=memo,
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                standalone=True,
                stop_flag=stop,
                memories=EventOnlyMemories(),  # event handlers only: no per-object memory (kopf_event_only)
            )
        finally:
            await elector.release()  # if kopf ended before its cleanup did (a failed startup)
    finally:
        await lease_client.close()
        if health is not None:
            await health.cleanup()


def follow_state(elector: Elector, memo: Any) -> None:
    """The operator's state gauges (metrics.State) read this process: whether it holds the Lease, and, once
    handlers.start has made the leader's context, its Jobs waiting to be recorded and its archive."""

    def context() -> Any:
        return getattr(memo, "context", None)

    metrics.follow(
        leading=lambda: elector.leading,
        unrecorded=lambda: context().unrecorded.pending() if context() is not None else 0,
        archive=lambda: context().archive if context() is not None else None,
    )


async def serve_health(endpoint: str | None, healthy: Callable[[], bool]) -> web.AppRunner | None:
    """The liveness and readiness endpoint, served from the start (kopf's own serves only once kopf runs,
    which a standby never does: its probes would fail, and a rolling update would wait for ever). A
    replica that lost its Lease has exited; a stalled one is ended by the elector's watchdog. The same
    server answers Prometheus at metrics.PATH (/metrics), a standby too (leader 0)."""
    if not endpoint:
        return None
    where = urllib.parse.urlsplit(endpoint)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"healthy": healthy()}, status=200 if healthy() else 503)

    async def scrape(request: web.Request) -> web.Response:
        body, content_type = await metrics.exposition(request.headers.get(metrics.SCRAPE_TIMEOUT_HEADER))
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get(where.path or "/healthz", healthz)
    app.router.add_get(metrics.PATH, scrape)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, where.hostname, where.port).start()
    return runner


if __name__ == "__main__":
    main()
