"""The simulated kubelet's HTTPS API: `GET /containerLogs/{namespace}/{pod}/{container}`.

kube-apiserver's `pods/log` (and so `kubectl logs`) dials https://<node InternalIP>:<daemonEndpoints.
kubeletEndpoint.Port>/containerLogs/... (pkg/registry/core/pod/strategy.go LogLocation) and forwards
follow, previous, timestamps, sinceSeconds, sinceTime, tailLines (legacy: tail) and limitBytes. TLS is
verified both ways: the apiserver checks this server's certificate against the cluster CA
(--kubelet-certificate-authority), and this server requires a client certificate signed by the same CA
whose subject is allowed here (a real kubelet would then ask the apiserver by SubjectAccessReview).

Parsing and errors follow virtual-kubelet's node/api/logs.go; text of the errors follows the kubelet's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .container_output import Output, Selection, first_index, render, select

log = logging.getLogger("localcluster.kubelet.api")
FOLLOW_POLL_SECONDS = 0.1  # how often a follower looks for new lines and for the container's end
# Who may read logs: the apiserver's kubelet client and cluster admins (O=system:masters).
ALLOWED_COMMON_NAMES = frozenset({"kube-apiserver-kubelet-client"})
ALLOWED_ORGANIZATIONS = frozenset({"system:masters"})


@dataclass(frozen=True)
class Instance:
    """One run of a pod's containers (all containers of a simulated pod share their lifecycle)."""

    started: dt.datetime
    finished: dt.datetime | None = None


class PodSource(Protocol):
    """What the server needs from the kubelet: the pods it runs and their container instances."""

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def instances(self, uid: str) -> list[Instance]: ...

    def output(self, pod: dict[str, Any], container: dict[str, Any], instance: Instance) -> Output: ...


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class LogRequest:
    selection: Selection
    follow: bool = False
    previous: bool = False


def _bool(query: Any, name: str) -> bool:
    value = str(query.get(name, "false")).lower()
    if value in ("", "false", "0"):
        return False
    if value in ("true", "1"):
        return True
    raise BadRequest(f"{name}: invalid boolean {value!r}")


def _int(query: Any, name: str, minimum: int) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError:
        raise BadRequest(f"{name}: not an integer: {query[name]!r}") from None
    if value < minimum:
        raise BadRequest(f"{name}: must be >= {minimum}")
    return value


def parse_log_request(query: Any, now: dt.datetime) -> LogRequest:
    tail = _int(query, "tailLines", 0)
    if tail is None:
        tail = _int(query, "tail", 0)  # the legacy name
    since_seconds = _int(query, "sinceSeconds", 1)
    since_time = query.get("sinceTime")
    if since_seconds is not None and since_time:
        raise BadRequest("at most one of sinceTime or sinceSeconds may be specified")
    since: dt.datetime | None = None
    if since_seconds is not None:
        since = now - dt.timedelta(seconds=since_seconds)
    elif since_time:
        try:
            since = dt.datetime.fromisoformat(str(since_time).replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"sinceTime: not an RFC 3339 time: {since_time!r}") from None
    return LogRequest(
        selection=Selection(
            tail_lines=tail,
            since=since,
            limit_bytes=_int(query, "limitBytes", 1),
            timestamps=_bool(query, "timestamps"),
        ),
        follow=_bool(query, "follow"),
        previous=_bool(query, "previous"),
    )


def _subject_allowed(peercert: Any) -> bool:
    if not isinstance(peercert, dict):
        return False
    names = [attr for rdn in peercert.get("subject", ()) for attr in rdn]
    common = {value for key, value in names if key == "commonName"}
    orgs = {value for key, value in names if key == "organizationName"}
    return bool(common & ALLOWED_COMMON_NAMES or orgs & ALLOWED_ORGANIZATIONS)


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", content_type="text/plain")


class KubeletServer:
    def __init__(self, source: PodSource, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)):
        self._source = source
        self._clock = clock
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        app.router.add_get("/healthz", self.healthz)
        return app

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        transport = request.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        if not _subject_allowed(peercert):
            return _text(403, "Forbidden (client certificate subject not allowed)")
        response: web.StreamResponse = await handler(request)
        return response

    async def healthz(self, _: web.Request) -> web.Response:
        return _text(200, "ok")

    async def start(self, host: str, port: int, cert: Path, key: Path, client_ca: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
        context.load_cert_chain(str(cert), str(key))
        context.verify_mode = ssl.CERT_REQUIRED  # no certificate, no logs
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, ssl_context=context).start()
        log.info("kubelet API listening on https://%s:%s", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name, container_name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        try:
            options = parse_log_request(request.query, self._clock())
        except BadRequest as err:
            return _text(400, str(err))
        pod = self._source.pod(namespace, name)
        if pod is None:
            return _text(404, f'pod "{name}" in namespace "{namespace}" not found')
        spec = pod.get("spec", {})
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        container = next((c for c in containers if c.get("name") == container_name), None)
        if container is None:
            return _text(404, f'container "{container_name}" in pod "{name}" not found')
        instances = self._source.instances(pod["metadata"]["uid"])
        if options.previous:
            if len(instances) < 2:
                return _text(400, f'previous terminated container "{container_name}" in pod "{name}" not found')
            instance = instances[-2]
        elif not instances:
            return _text(400, f'container "{container_name}" in pod "{name}" is waiting to start: ContainerCreating')
        else:
            instance = instances[-1]
        output = self._source.output(pod, container, instance)
        if not options.follow or instance.finished is not None:
            available = self._available(output, instance)
            body = b"".join(select(output, available, options.selection))
            return web.Response(body=body, content_type="text/plain")
        return await self._follow(request, pod["metadata"]["uid"], output, options.selection)

    def _available(self, output: Output, instance: Instance) -> int:
        end = instance.finished or self._clock()
        return output.written_by(end)

    async def _follow(self, request: web.Request, uid: str, output: Output, selection: Selection) -> web.StreamResponse:
        """Streams lines as they are written until the instance ends (or the pod goes, or the limit is hit)."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"})
        await response.prepare(request)
        index = first_index(output, self._available(output, Instance(output.started)), selection)
        budget = selection.limit_bytes
        try:
            while True:
                current = next((i for i in self._source.instances(uid) if i.started == output.started), None)
                ended = current is None or current.finished is not None
                available = self._available(output, current or Instance(output.started, self._clock()))
                while index < available:
                    chunk = render(output, index, selection.timestamps)
                    index += 1
                    if budget is not None:
                        chunk = chunk[:budget]
                        budget -= len(chunk)
                    await response.write(chunk)
                    if budget is not None and budget <= 0:
                        return response
                if ended:
                    break
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.debug("follower of %s went away", uid)
        return response
