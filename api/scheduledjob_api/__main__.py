"""`python -m scheduledjob_api --host 127.0.0.1 --port 8080`: serve the admin API with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import sys
from typing import Any

import uvicorn
from pythonjsonlogger.core import RESERVED_ATTRS
from scheduledjob_client import load_configuration

from scheduledjob_api.app import create_app
from scheduledjob_api.kube import KubeCluster
from scheduledjob_api.server import EnvelopeHttpToolsProtocol
from scheduledjob_api.settings import DevSecretInPodError, Settings

PROBES = ("/healthz", "/readyz", "/metrics")


class SkipProbes(logging.Filter):
    """No access-log line for probes and scrapes (kubelet, Prometheus and `make run` ask every few seconds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        path = args[2] if isinstance(args, tuple) and len(args) > 2 else ""
        return not (isinstance(path, str) and path.split("?", 1)[0] in PROBES)


def logging_config(level: str) -> dict[str, Any]:
    """JSON lines (time, level, logger, message) for the API's own logs and uvicorn's, access log included."""
    json_format = {
        "()": "pythonjsonlogger.json.JsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        "reserved_attrs": [*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI-coloured copy of the message
    }
    stream = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": json_format},
        "filters": {"probes": {"()": SkipProbes}},
        "handlers": {"default": stream, "access": {**stream, "filters": ["probes"]}},
        "loggers": {
            "": {"handlers": ["default"], "level": level},
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scheduledjob_api",
        description=(
            "SelfHelp admin scheduled-jobs API. Configured by SCHEDULED_JOBS_* environment variables; "
            "talks to the cluster of KUBECONFIG (or ~/.kube/config), else the in-cluster service account."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)

    log_config = logging_config(args.log_level.upper())
    logging.config.dictConfig(log_config)
    settings = Settings()
    try:
        settings.refuse_dev_secret_in_pod(os.environ)
    except DevSecretInPodError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from exc
    try:
        # Read once up front so a missing or broken kubeconfig stops the start with a clear message.
        # The client itself is built again inside the server's event loop (token refresh hooks
        # belong to the loop that uses them).
        asyncio.run(load_configuration())
    except Exception as exc:
        print(f"cannot load a Kubernetes configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    app = create_app(settings, KubeCluster(settings))
    # uvloop and httptools: a third less CPU per request than asyncio + h11 (bench/: execute); the
    # protocol answers requests its parser refuses with the envelope too.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=log_config,
        loop="uvloop",
        http=EnvelopeHttpToolsProtocol,
        **proxy_options(settings),
    )


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's handling of X-Forwarded-* headers: believed from the configured proxies only."""
    return {"proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}


if __name__ == "__main__":
    main()
