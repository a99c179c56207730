"""Simulated kubelet: one Ready node; binds pods to it and plays their lifecycle. No container runs.

Per-pod behaviour comes from pod annotations:
  localcluster.selfhelp.io/outcome: succeed (default) | fail | oom (killed: OOMKilled, exit 137) |
    hang (runs until deleted)
  localcluster.selfhelp.io/exit-code: the exit code of a `fail` outcome, default 1
  localcluster.selfhelp.io/duration-seconds: run time before the outcome, float, default 1
  localcluster.selfhelp.io/log (and log-repeat): what the containers write to stdout (container_output.py)
Container statuses carry the terminated state a kubelet writes (exitCode, reason Completed / Error /
OOMKilled, startedAt, finishedAt). Logs are served over HTTPS by kubelet_server.py on the port the Node
advertises in status.daemonEndpoints.kubeletEndpoint, so `pods/log` and `kubectl logs` work.
Pods with restartPolicy Always never finish (a real kubelet would restart the container); with
OnFailure a failure restarts the "container" (restartCount + 1), as the Job controller expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import new_client_from_config

from .container_output import Output, container_text
from .kubelet_server import Instance, KubeletServer

ANNOTATION_OUTCOME = "localcluster.selfhelp.io/outcome"
ANNOTATION_DURATION = "localcluster.selfhelp.io/duration-seconds"
ANNOTATION_EXIT_CODE = "localcluster.selfhelp.io/exit-code"
OUTCOMES = ("succeed", "fail", "oom", "hang")
OOM_EXIT_CODE = 137  # 128 + SIGKILL, as the kernel's OOM killer leaves it
WATCH_SECONDS = 120  # each watch ends after this and a relist follows: a periodic resync for free
HOST_IP = "127.0.0.1"

log = logging.getLogger("localcluster.kubelet")
Obj = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def pod_behaviour(pod: Obj) -> tuple[str, float]:
    """(outcome, duration) from annotations; unknown or malformed values fall back to the defaults."""
    annotations = pod.get("metadata", {}).get("annotations") or {}
    outcome = annotations.get(ANNOTATION_OUTCOME, "succeed")
    if outcome not in OUTCOMES:
        log.warning("pod %s: unknown outcome %r, using succeed", _key(pod), outcome)
        outcome = "succeed"
    try:
        duration = max(0.0, float(annotations.get(ANNOTATION_DURATION, 1)))
    except ValueError:
        duration = 1.0
    return outcome, duration


@dataclass(frozen=True)
class Exit:
    """How a container instance ends."""

    code: int
    reason: str  # Completed | Error | OOMKilled


def pod_exit(pod: Obj, outcome: str) -> Exit:
    if outcome == "succeed":
        return Exit(0, "Completed")
    if outcome == "oom":
        return Exit(OOM_EXIT_CODE, "OOMKilled")
    annotations = pod.get("metadata", {}).get("annotations") or {}
    try:
        code = int(annotations.get(ANNOTATION_EXIT_CODE, 1))
    except ValueError:
        code = 1
    if not 1 <= code <= 255:
        log.warning("pod %s: exit code %s outside 1..255, using 1", _key(pod), code)
        code = 1
    return Exit(code, "Error")


def _key(pod: Obj) -> str:
    meta = pod.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _core(api: client.ApiClient) -> Any:
    # The generated client is untyped anyway; Any makes that explicit at one place.
    return client.CoreV1Api(api)


async def _raw(call: Awaitable[Any]) -> Obj:
    """Await a ``_preload_content=False`` call: parse JSON ourselves, raise on non-2xx.

    Used for bindings (kubernetes-client/python#547: the Binding response does not deserialize)
    and for lists, where plain dicts are all we need.
    """
    resp = await call
    try:
        body = await resp.read()
    finally:
        resp.release()
    if not 200 <= resp.status < 300:
        raise ApiException(status=resp.status, reason=body.decode(errors="replace")[:500])
    parsed: Obj = json.loads(body) if body else {}
    return parsed


def _container_statuses(containers: list[Obj], uid: str, state: Obj, *, ready: bool) -> list[Obj]:
    return [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "containerID": f"localcluster://{uid}/{c['name']}",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }
        for c in containers
    ]


def _conditions(status: str, now: str, reason: str | None = None) -> list[Obj]:
    def cond(kind: str, value: str) -> Obj:
        entry = {"type": kind, "status": value, "lastTransitionTime": now}
        if reason and value == "False":
            entry["reason"] = reason
        return entry

    return [
        cond("PodScheduled", "True"),
        cond("Initialized", "True"),
        cond("PodReadyToStartContainers", "True"),
        cond("ContainersReady", status),
        cond("Ready", status),
    ]


class FakeKubelet:
    def __init__(self, api: client.ApiClient, node_name: str, port: int = 0) -> None:
        self.core = _core(api)
        self.node_name = node_name
        self.port = port  # of the kubelet API (kubelet_server.py); 0: none served
        # What the kubelet API serves logs from: the pods bound here and their container instances.
        self._pods: dict[tuple[str, str], Obj] = {}
        self._instances: dict[str, list[Instance]] = {}  # pod uid -> runs, oldest first
        self._finishers: dict[str, asyncio.Task[None]] = {}  # pod uid -> timer task
        # Precise start instants: status.startTime has whole seconds only. After a restart of this
        # process the coarser startTime is all there is.
        self._started: dict[str, dt.datetime] = {}
        self._ips = itertools.count(2)

    async def run(self) -> None:
        """Forever: relist, then watch; any error leads to a short pause and a relist."""
        while True:
            try:
                await self.register_node()
                resource_version = await self._resync()
                await self._watch(resource_version)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod loop failed; relisting in 1s")
                await asyncio.sleep(1)

    # --- node -----------------------------------------------------------------------------
    async def register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "localcluster.selfhelp.io/fake": "true",
                },
            },
        }
        try:
            await _raw(self.core.create_node(body, _preload_content=False))
            log.info("created node %s", self.node_name)
        except ApiException as err:
            if err.status != 409:
                raise
        resources = {"cpu": "32", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}
        now = _now()
        conditions = [
            {"type": kind, "status": "False", "reason": f"KubeletHas{reason}", "lastHeartbeatTime": now,
             "lastTransitionTime": now}
            for kind, reason in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                                 ("PIDPressure", "SufficientPID"))
        ]  # fmt: skip
        conditions.append(
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "localcluster fake kubelet",
             "lastHeartbeatTime": now, "lastTransitionTime": now}
        )  # fmt: skip
        status = {
            "capacity": resources,
            "allocatable": resources,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "nodeInfo": {"kubeletVersion": "v1.37.2-localcluster", "operatingSystem": "linux", "architecture": "amd64"},
        }
        await _raw(self.core.patch_node_status(self.node_name, {"status": status}, _preload_content=False))
        # TaintNodesByCondition added not-ready:NoSchedule at creation; nothing else would lift it.
        await _raw(self.core.patch_node(self.node_name, {"spec": {"taints": None}}, _preload_content=False))

    # --- pod loop ---------------------------------------------------------------------------
    async def _resync(self) -> str:
        pods = await _raw(self.core.list_pod_for_all_namespaces(_preload_content=False))
        for pod in pods.get("items", []):
            await self._handle("SYNC", pod)
        return str(pods.get("metadata", {}).get("resourceVersion", ""))

    async def _watch(self, resource_version: str) -> None:
        stream = watch.Watch(return_type="object")
        try:
            async for event in stream.stream(
                self.core.list_pod_for_all_namespaces,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                _request_timeout=WATCH_SECONDS + 30,  # client-side bound in case the server goes silent
            ):
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    await self._handle(event["type"], event["raw_object"])
        except ApiException as err:
            if err.status != 410:  # 410 Gone: history compacted; the caller relists
                raise
        finally:
            await stream.close()

    async def _handle(self, event: str, pod: Obj) -> None:
        try:
            await self._reconcile(event, pod)
        except asyncio.CancelledError:
            raise
        except ApiException as err:
            if err.status not in (404, 409):  # gone or changed meanwhile: the next event settles it
                log.warning("pod %s: API error %s %s", _key(pod), err.status, err.reason)
        except Exception:
            log.exception("pod %s: unexpected error", _key(pod))

    async def _reconcile(self, event: str, pod: Obj) -> None:
        meta, spec = pod.get("metadata", {}), pod.get("spec", {})
        status = pod.get("status", {})
        node = spec.get("nodeName")
        if event == "DELETED":
            self._cancel(meta.get("uid", ""))
            self._forget(pod)
            return
        if node not in (None, "", self.node_name):
            return  # another (real) node's pod
        self._remember(pod)
        if meta.get("deletionTimestamp"):
            await self._force_delete(pod)
        elif not node:
            await self._bind(pod)
        elif status.get("phase", "Pending") == "Pending":
            await self._start(pod)
        elif status.get("phase") == "Running":
            self._arm(pod)

    async def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        await _raw(
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        )
        log.info("bound %s", _key(pod))

    async def _start(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        n = next(self._ips)
        now, ip = _now(), f"10.244.{n // 250 % 250}.{n % 250 + 2}"
        status: Obj = {
            "phase": "Running",
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": _conditions("True", now),
            "containerStatuses": _container_statuses(
                spec.get("containers", []), meta["uid"], {"running": {"startedAt": now}}, ready=True
            ),
        }
        if spec.get("initContainers"):
            done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
            status["initContainerStatuses"] = _container_statuses(
                spec["initContainers"], meta["uid"], done, ready=False
            )
        await self._patch_status(meta, status)
        self._started[meta["uid"]] = started = dt.datetime.now(dt.UTC)
        self._begin_instance(meta["uid"], started)
        log.info("started %s (%s for %ss)", _key(pod), *pod_behaviour(pod))

    def _arm(self, pod: Obj) -> None:
        """Schedule the pod's outcome once per pod uid (idempotent across relists)."""
        uid = pod["metadata"]["uid"]
        outcome, duration = pod_behaviour(pod)
        if outcome == "hang" or pod.get("spec", {}).get("restartPolicy") == "Always":
            return
        if uid in self._finishers and not self._finishers[uid].done():
            return
        started = (
            self._started.get(uid) or _parse_time(pod.get("status", {}).get("startTime")) or dt.datetime.now(dt.UTC)
        )
        delay = max(0.0, duration - (dt.datetime.now(dt.UTC) - started).total_seconds())
        self._finishers[uid] = asyncio.create_task(self._finish_later(pod, outcome, delay, duration))

    # --- what the kubelet API reads (kubelet_server.PodSource) ------------------------------
    def pod(self, namespace: str, name: str) -> Obj | None:
        return self._pods.get((namespace, name))

    def instances(self, uid: str) -> list[Instance]:
        return list(self._instances.get(uid, []))

    def output(self, pod: Obj, container: Obj, instance: Instance) -> Output:
        lines, repeat = container_text(pod, container)
        return Output(lines=lines, repeat=repeat, started=instance.started, duration=pod_behaviour(pod)[1])

    def _remember(self, pod: Obj) -> None:
        meta = pod.get("metadata", {})
        if pod.get("spec", {}).get("nodeName") == self.node_name:
            self._pods[(meta.get("namespace", ""), meta.get("name", ""))] = pod
        uid = meta.get("uid", "")
        phase = pod.get("status", {}).get("phase")
        if uid and uid not in self._instances and phase in ("Running", "Succeeded", "Failed"):
            # Known from an earlier life of this process only by the API's whole-second times.
            states = [s.get("state", {}) for s in pod.get("status", {}).get("containerStatuses") or []]
            running = next((s["running"] for s in states if "running" in s), None)
            terminated = next((s["terminated"] for s in states if "terminated" in s), None)
            started = _parse_time((running or terminated or {}).get("startedAt") or pod["status"].get("startTime"))
            finished = _parse_time((terminated or {}).get("finishedAt")) if running is None else None
            if started is not None:
                self._instances[uid] = [Instance(started, finished if terminated else None)]

    def _forget(self, pod: Obj) -> None:
        meta = pod.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if (self._pods.get(key) or {}).get("metadata", {}).get("uid") == meta.get("uid"):
            del self._pods[key]
        self._instances.pop(meta.get("uid", ""), None)

    def _begin_instance(self, uid: str, started: dt.datetime) -> None:
        runs = self._instances.setdefault(uid, [])
        if runs and runs[-1].finished is None:
            return  # already running (a second Pending event before our Running status was seen)
        runs.append(Instance(started))

    def _end_instance(self, uid: str, finished: dt.datetime) -> None:
        runs = self._instances.get(uid)
        if runs and runs[-1].finished is None:
            runs[-1] = Instance(runs[-1].started, finished)

    def _cancel(self, uid: str) -> None:
        self._started.pop(uid, None)
        task = self._finishers.pop(uid, None)
        if task is not None:
            task.cancel()

    async def _finish_later(self, pod: Obj, outcome: str, delay: float, duration: float) -> None:
        meta = pod["metadata"]
        name, ns, uid = meta["name"], meta["namespace"], meta["uid"]
        try:
            while True:
                await asyncio.sleep(delay)
                current = await _raw(self.core.read_namespaced_pod(name, ns, _preload_content=False))
                cur_meta, cur_status = current["metadata"], current.get("status", {})
                if cur_meta.get("uid") != uid or cur_meta.get("deletionTimestamp"):
                    return
                if cur_status.get("phase") != "Running":
                    return
                if outcome in ("fail", "oom") and current.get("spec", {}).get("restartPolicy") == "OnFailure":
                    await self._restart(current, pod_exit(current, outcome))
                    delay = duration
                    continue
                await self._terminate(current, pod_exit(current, outcome))
                self._started.pop(uid, None)
                return
        except asyncio.CancelledError:
            raise
        except ApiException as err:
            if err.status != 404:
                log.warning("pod %s/%s: finishing failed: %s %s", ns, name, err.status, err.reason)
        except Exception:
            log.exception("pod %s/%s: finishing failed", ns, name)
        finally:
            if self._finishers.get(uid) is asyncio.current_task():
                del self._finishers[uid]

    async def _terminate(self, pod: Obj, end: Exit) -> None:
        meta, spec, old = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        now = _now()
        succeeded = end.code == 0
        previous = {s["name"]: s for s in old.get("containerStatuses") or []}
        statuses = []
        for container in spec.get("containers", []):
            before = previous.get(container["name"], {})
            started = (before.get("state", {}).get("running") or {}).get("startedAt") or old.get("startTime", now)
            terminated = {
                "exitCode": end.code,
                "reason": end.reason,
                "startedAt": started,
                "finishedAt": now,
                "containerID": f"localcluster://{meta['uid']}/{container['name']}",
            }
            (entry,) = _container_statuses([container], meta["uid"], {"terminated": terminated}, ready=False)
            entry["restartCount"] = before.get("restartCount", 0)
            if "lastState" in before:
                entry["lastState"] = before["lastState"]
            statuses.append(entry)
        self._end_instance(meta["uid"], dt.datetime.now(dt.UTC))
        status = {
            "phase": "Succeeded" if succeeded else "Failed",
            "conditions": _conditions("False", now, reason="PodCompleted" if succeeded else "PodFailed"),
            "containerStatuses": statuses,
        }
        await self._patch_status(meta, status)
        log.info("%s %s", "succeeded" if succeeded else "failed", _key(pod))

    async def _restart(self, pod: Obj, end: Exit) -> None:
        meta, old = pod["metadata"], pod.get("status", {})
        now = _now()
        moment = dt.datetime.now(dt.UTC)
        self._end_instance(meta["uid"], moment)
        self._begin_instance(meta["uid"], moment)
        statuses = []
        for entry in old.get("containerStatuses") or []:
            started = (entry.get("state", {}).get("running") or {}).get("startedAt", now)
            statuses.append(
                {
                    **entry,
                    "restartCount": int(entry.get("restartCount", 0)) + 1,
                    "lastState": {
                        "terminated": {
                            "exitCode": end.code,
                            "reason": end.reason,
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                    "state": {"running": {"startedAt": now}},
                }
            )
        await self._patch_status(meta, {"containerStatuses": statuses})
        log.info("restarted container(s) of %s after a failure", _key(pod))

    async def _patch_status(self, meta: Obj, status: Obj) -> None:
        # Strategic merge: conditions merge by type and containerStatuses by name.
        await _raw(
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _preload_content=False
            )
        )

    async def _force_delete(self, pod: Obj) -> None:
        """Play the kubelet's part of a graceful delete: confirm it at once (grace 0)."""
        meta = pod["metadata"]
        self._cancel(meta.get("uid", ""))
        self._end_instance(meta.get("uid", ""), dt.datetime.now(dt.UTC))  # its containers are stopped
        if meta.get("deletionGracePeriodSeconds") == 0:
            return  # already confirmed; only finalizers (e.g. the Job controller's) hold the pod now
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                "preconditions": {"uid": meta["uid"]}}  # fmt: skip
        await _raw(self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body, _preload_content=False))
        log.info("deleted %s", _key(pod))


@dataclass(frozen=True)
class Serving:
    """Where and how the kubelet API listens (certificates from pki.py)."""

    port: int
    cert: Path
    key: Path
    client_ca: Path


async def run_kubelet(kubeconfig: Path, node_name: str, serving: Serving | None = None) -> None:
    api = await new_client_from_config(config_file=str(kubeconfig))
    async with api:
        kubelet = FakeKubelet(api, node_name, serving.port if serving else 0)
        server = KubeletServer(kubelet)
        if serving is not None:
            await server.start(HOST_IP, serving.port, serving.cert, serving.key, serving.client_ca)
        try:
            await kubelet.run()
        finally:
            await server.stop()


def main(kubeconfig: Path, node_name: str, serving: Serving | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_kubelet(kubeconfig, node_name, serving))
