"""`kubectl logs` works on the local control plane: the simulated kubelet serves the kubelet API.

The apiserver dials the Node's InternalIP and advertised kubelet port over TLS verified both ways; the
pod's annotations say what its container writes and how it ends, as a real container would.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client
from localcluster_launcher import (
    ANNOTATION_DURATION,
    ANNOTATION_EXIT_CODE,
    ANNOTATION_LOG,
    ANNOTATION_OUTCOME,
    NODE_NAME,
)
from localcluster_launcher.build import ensure_binary
from localcluster_launcher.testing import KubeCluster, manifest

from tests.support.kube import eventually


@pytest.fixture
def local(kube_cluster: KubeCluster) -> KubeCluster:
    if not kube_cluster.local:
        pytest.skip("the simulated kubelet's own behaviour: only on the local control plane")
    return kube_cluster


def pod_body(name: str, annotations: dict[str, str]) -> Any:
    return manifest(
        {
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36"}]},
        }
    )


async def terminated(core: Any, namespace: str, name: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        pod = await core.read_namespaced_pod(name, namespace)
        state = pod.status.container_statuses and pod.status.container_statuses[0].state
        return state.terminated.to_dict() if state and state.terminated else None

    return await eventually(probe, timeout=30, what=f"pod {name} terminated")


async def test_a_failing_container_exits_with_its_code_and_kubectl_logs_prints_its_output(
    local: KubeCluster, api_client: client.ApiClient, namespace: str
) -> None:
    core: Any = client.CoreV1Api(api_client)
    annotations = {ANNOTATION_LOG: "step 1\nstep 2\nboom", ANNOTATION_OUTCOME: "fail", ANNOTATION_EXIT_CODE: "3"}
    await core.create_namespaced_pod(namespace, pod_body("mailer", annotations))

    state = await terminated(core, namespace, "mailer")
    assert (state["exit_code"], state["reason"]) == (3, "Error")
    assert state["started_at"] <= state["finished_at"]

    assert await core.read_namespaced_pod_log("mailer", namespace) == "step 1\nstep 2\nboom\n"
    assert await core.read_namespaced_pod_log("mailer", namespace, tail_lines=1) == "boom\n"
    stamped = await core.read_namespaced_pod_log("mailer", namespace, timestamps=True)
    assert [line.split(" ", 1)[1] for line in stamped.splitlines()] == ["step 1", "step 2", "boom"]
    kubectl = await asyncio.create_subprocess_exec(
        str(ensure_binary()), "kubectl", f"--kubeconfig={local.kubeconfig}", "-n", namespace, "logs", "mailer",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(kubectl.communicate(), 60)
    assert kubectl.returncode == 0, err.decode()
    assert out.decode() == "step 1\nstep 2\nboom\n"


async def test_an_oom_kill_is_reported_as_the_kubelet_reports_it(
    local: KubeCluster, api_client: client.ApiClient, namespace: str
) -> None:
    core: Any = client.CoreV1Api(api_client)
    await core.create_namespaced_pod(namespace, pod_body("hungry", {ANNOTATION_OUTCOME: "oom"}))
    state = await terminated(core, namespace, "hungry")
    assert (state["exit_code"], state["reason"]) == (137, "OOMKilled")
    # Without a log annotation the container "writes" one line naming its image and command.
    assert await core.read_namespaced_pod_log("hungry", namespace) == "busybox:1.36\n"


async def test_follow_streams_each_line_as_it_is_written_and_ends_with_the_container(
    local: KubeCluster, api_client: client.ApiClient, namespace: str
) -> None:
    core: Any = client.CoreV1Api(api_client)
    lines = [f"line {i}" for i in range(4)]
    annotations = {ANNOTATION_LOG: "\n".join(lines), ANNOTATION_DURATION: "4"}
    await core.create_namespaced_pod(namespace, pod_body("ticker", annotations))

    async def running() -> bool:
        pod = await core.read_namespaced_pod("ticker", namespace)
        return bool(pod.status.phase == "Running")

    await eventually(running, timeout=30, what="ticker running")
    response = await core.read_namespaced_pod_log(
        "ticker", namespace, follow=True, _preload_content=False, _request_timeout=30
    )
    arrivals: list[tuple[float, str]] = []
    begin = time.monotonic()
    async for raw in response.content:
        arrivals.append((time.monotonic() - begin, raw.decode().rstrip("\n")))
    response.release()
    assert [text for _, text in arrivals] == lines  # the stream ended on its own: the container ended
    # Spread over the 4 s run, not all at once at the end (the first one is there at once).
    assert arrivals[-1][0] - arrivals[0][0] >= 1.5, arrivals


async def test_the_kubelet_api_refuses_a_client_without_the_clusters_certificate(
    local: KubeCluster, api_client: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api_client)
    node = await core.read_node(NODE_NAME)
    port = node.status.daemon_endpoints.kubelet_endpoint.port
    if local.control_plane is not None:
        assert port == local.control_plane.kubelet_port
    context = ssl.create_default_context(cafile=str(local.kubeconfig.parent / "pki" / "ca.crt"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):  # the TLS handshake fails: no client certificate
            async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=context) as answer:
                await answer.read()
