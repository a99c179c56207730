"""As an admin I expect every ScheduledJob to get its own id, never one handed out before: id allocation
(`Cluster.allocate_id`) decides by compare-and-swap on one ConfigMap, in groups. Here against an
in-memory stand-in for that one ConfigMap, behind the real adapter's request path (`Cluster._call`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest_asyncio
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob_operator.kube import Cluster


class ConfigMaps:
    """The CoreV1Api calls allocate_id makes, on one ConfigMap; `steal` takes ids behind its back."""

    def __init__(self, next_id: int | None = None) -> None:
        self.data = None if next_id is None else {"next": str(next_id)}
        self.version = 1
        self.writes = 0
        self.steal = 0

    async def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> Any:
        await asyncio.sleep(0)  # a request: others get their turn meanwhile
        if self.data is None:
            raise ApiException(status=404)
        return SimpleNamespace(data=dict(self.data), metadata=SimpleNamespace(resource_version=str(self.version)))

    async def create_namespaced_config_map(self, namespace: str, body: dict[str, Any], **_: Any) -> None:
        if self.data is not None:
            raise ApiException(status=409)
        self.data, self.writes = dict(body["data"]), self.writes + 1

    async def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> None:
        if self.steal:  # another writer got there first
            self.steal -= 1
            assert self.data is not None
            self.data, self.version = {"next": str(int(self.data["next"]) + 5)}, self.version + 1
        if body["metadata"]["resourceVersion"] != str(self.version):
            raise ApiException(status=409)
        self.data, self.version, self.writes = dict(body["data"]), self.version + 1, self.writes + 1


@pytest_asyncio.fixture(loop_scope="session")
async def cluster_with() -> AsyncIterator[Callable[[ConfigMaps], Cluster]]:
    api = client.ApiClient()  # never connects: the calls go to the stand-in

    def make(config_maps: ConfigMaps) -> Cluster:
        cluster = Cluster(api, "state")
        cluster._core = config_maps
        return cluster

    yield make
    await api.close()


async def test_many_at_once_get_distinct_consecutive_ids_in_few_writes(
    cluster_with: Callable[[ConfigMaps], Cluster],
) -> None:
    config_maps = ConfigMaps(next_id=11)
    cluster = cluster_with(config_maps)
    ids = list(await asyncio.gather(*(cluster.allocate_id(floor=0) for _ in range(100))))

    assert sorted(ids) == list(range(11, 111))
    assert config_maps.writes <= 5, "group commit: not one compare-and-swap per id"


async def test_ids_start_above_the_floor_and_the_sequence_never_goes_back(
    cluster_with: Callable[[ConfigMaps], Cluster],
) -> None:
    config_maps = ConfigMaps(next_id=3)
    cluster = cluster_with(config_maps)
    assert await cluster.allocate_id(floor=41) == 42  # a lost or old ConfigMap cannot restart the ids low
    assert await cluster.allocate_id(floor=0) == 43


async def test_a_missing_sequence_is_created_above_the_floor(cluster_with: Callable[[ConfigMaps], Cluster]) -> None:
    config_maps = ConfigMaps()
    cluster = cluster_with(config_maps)
    assert await cluster.allocate_id(floor=7) == 8
    assert await cluster.allocate_id(floor=0) == 9


async def test_a_concurrent_writer_costs_a_retry_never_a_shared_id(
    cluster_with: Callable[[ConfigMaps], Cluster],
) -> None:
    config_maps = ConfigMaps(next_id=1)
    config_maps.steal = 2
    cluster = cluster_with(config_maps)
    first = await cluster.allocate_id(floor=0)
    assert first == 11  # two steals of five ids each went first
    assert await cluster.allocate_id(floor=0) == 12
