"""`python -m scheduledjob_operator`: run the ScheduledJob operator (kopf, peering on by default)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import random
import secrets
import socket

import kopf
import uvloop

from scheduledjob_operator import handlers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scheduledjob_operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable; globs ok)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--peering", default="scheduled-jobs", help="kopf peering name shared by replicas")
    parser.add_argument("--standalone", action="store_true", help="no peering (a single local replica)")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; default random, because kopf pauses every replica when two share one",
    )
    parser.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.verbose)
    assert handlers  # registered with kopf on import
    settings = kopf.OperatorSettings()
    # With exact namespace names kopf needs no cluster-wide namespace watch (nor the RBAC for it);
    # it only scans namespaces to resolve globs. The cost: CRDs added later need a restart.
    exact = bool(args.namespace) and not any(set(ns) & set("*?[!") for ns in args.namespace)
    settings.scanning.disabled = exact
    # Where the startup LIST looks (handlers.start): the exact namespaces, else all (globs included).
    # Who this replica is in the peering: handed to kopf and kept for the resync loop, which judges
    # leadership with the same identity and priority (leadership.py).
    priority = args.priority if args.priority is not None else random.randint(1, 1_000_000)
    # As kopf names itself (POD_ID, else user@host with the start time), plus the pid for local runs.
    identity = (
        os.environ.get("POD_ID") or f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(2)}"
    )
    memo = kopf.Memo(
        namespaces=list(args.namespace) if exact else None,
        clusterwide=not args.namespace,
        peering_name=None if args.standalone else args.peering,
        identity=identity,
        priority=priority,
    )
    # libuv's event loop (less CPU per watch event and request), set up exactly as `kopf run` does.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kopf.run(
            loop=runner.get_loop(),
            settings=settings,
            memo=memo,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.standalone,
            peering_name=None if args.standalone else args.peering,
            liveness_endpoint=args.liveness,
            priority=priority,
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str, not exported
        )


if __name__ == "__main__":
    main()
