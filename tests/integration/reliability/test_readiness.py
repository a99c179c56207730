"""As an operator I trust /readyz: within 10 s of the kube-apiserver going away it is 503 (the list still
answers from the cache and, once the watches are cut, says since when it may be stale), and it is 200 again
soon after the apiserver is back.
Needs the session's own LocalCluster (skipped against a KUBECONFIG cluster)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from localcluster_launcher.testing import KubeCluster

FLIP_SECONDS = 10.0
DOWN_SECONDS = 15.0


async def test_readyz_is_503_while_the_apiserver_is_away_and_200_when_it_is_back(
    kube_cluster: KubeCluster, admin: httpx.AsyncClient, api_process: str
) -> None:
    control_plane = kube_cluster.control_plane
    if control_plane is None:
        pytest.skip("restarts the kube-apiserver: only on the session's own LocalCluster, not a KUBECONFIG cluster")
    assert (await admin.get(f"{api_process}/readyz")).status_code == 200
    began = time.monotonic()
    restart = asyncio.create_task(asyncio.to_thread(control_plane.restart_apiserver, DOWN_SECONDS))
    not_ready_after = None
    while not restart.done():
        ready = await admin.get(f"{api_process}/readyz")
        if ready.status_code == 503:
            not_ready_after = time.monotonic() - began
            body = ready.json()
            break
        await asyncio.sleep(0.2)
    assert not_ready_after is not None and not_ready_after <= FLIP_SECONDS, not_ready_after
    assert "The Kubernetes API is unreachable since" in body["error"]
    stale_since = None
    while stale_since is None and not restart.done():  # once its watches are cut too, the list says so
        stale_since = (await admin.get("")).json()["meta"].get("stale_since")
        await asyncio.sleep(0.5)
    assert stale_since is not None, "the list never said its data may be stale while the apiserver was down"
    assert (await admin.get("")).json()["status"] == 200  # still answered from the cache

    await restart  # the apiserver's own /readyz is 200 again
    back = time.monotonic()
    while (await admin.get(f"{api_process}/readyz")).status_code != 200:
        assert time.monotonic() - back < 30, "not ready 30 s after the apiserver came back"
        await asyncio.sleep(0.2)
    print(f"/readyz 503 after {not_ready_after:.1f}s, 200 again {time.monotonic() - back:.1f}s after the apiserver")
    assert time.monotonic() - back <= FLIP_SECONDS + 5  # capped re-list backoff: about 10 s at most
    assert "stale_since" not in (await admin.get("")).json()["meta"]
