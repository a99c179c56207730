"""How both processes (the operator and the API) open their Kubernetes client: one precedence for the
kubeconfig, one aiohttp session setting, one way to page a LIST and read a watch. Each process keeps its
own adapter (deadlines, retries, error taxonomy) on top; this is only the part that must not differ
between them."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio import client, config

__all__ = [
    "METADATA_ONLY",
    "METADATA_ONLY_WATCH",
    "kubeconfig_path",
    "list_pages",
    "load_configuration",
    "loads",
    "metadata_only",
    "skip_environment_lookups",
    "watch_documents",
]

# A LIST answered with each object's metadata only (no spec, no status): a tenth of a ScheduledJob's JSON
# with its 20 history records, for the LISTs that need only names, labels, ids and UIDs (docs/limits.md,
# `operator_restart_seconds_20k`, `api_ready_seconds_20k`); the same `list` permission as a full LIST.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
# The same for a watch: each event's object is a PartialObjectMetadata.
METADATA_ONLY_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def metadata_only(
    api: client.ApiClient,
    prefix: str,
    plural: str,
    namespace: str | None,
    query: list[tuple[str, Any]],
    **options: Any,
) -> Awaitable[Any]:
    """A LIST (or, with `("watch", True)` in `query`, a watch) of `prefix/[namespaces/N/]plural` answered with
    metadata only (METADATA_ONLY, METADATA_ONLY_WATCH). The generated client cannot ask for it: it overwrites
    any Accept header. `options`: call_api's (`_preload_content`, `_request_timeout`)."""
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    watch = any(name == "watch" and value for name, value in query)
    accept = METADATA_ONLY_WATCH if watch else METADATA_ONLY
    result: Awaitable[Any] = api.call_api(
        path, "GET", query_params=query, header_params={"Accept": accept}, auth_settings=["BearerToken"], **options
    )
    return result


def kubeconfig_path() -> str | None:
    """KUBECONFIG, else ~/.kube/config if it exists, else None (meaning: use the in-cluster account).
    Outside a cluster a missing ~/.kube/config is the error worth reporting, so its path is returned."""
    if kubeconfig := os.environ.get("KUBECONFIG"):
        return kubeconfig
    default_path = os.path.expanduser("~/.kube/config")
    if os.path.exists(default_path) or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return default_path
    return None


async def load_configuration() -> client.Configuration:
    """KUBECONFIG (or ~/.kube/config) when present, else the in-cluster service account."""
    configuration = client.Configuration()
    path = kubeconfig_path()
    if path is None:
        incluster: Any = config.load_incluster_config  # untyped in kubernetes_asyncio
        incluster(client_configuration=configuration)
    else:
        await config.load_kube_config(config_file=path, client_configuration=configuration)
    return configuration


def skip_environment_lookups(api: client.ApiClient) -> None:
    """Stops aiohttp from looking up ~/.netrc and the proxy variables on every request.

    Performance (bench/, `execute_p50_ratio_vs_raw_create`): kubernetes_asyncio opens its aiohttp
    session with `trust_env=True`, so each request first runs a netrc lookup and a proxy lookup in
    worker threads: two thread hops, about 1 ms per request on an idle machine and several under load.
    Without proxy variables there is nothing to find (the client authenticates by certificate or
    bearer token, never netrc), so the session stops looking; with a proxy configured nothing changes.
    """
    session = getattr(getattr(api, "rest_client", None), "pool_manager", None)
    if isinstance(session, aiohttp.ClientSession) and not urllib.request.getproxies():
        session._trust_env = False  # no public setter; the attribute exists in every aiohttp 3.x


def loads(data: bytes) -> Any:
    """The JSON of an API server's answer, parsed by orjson: a LIST page of 500 ScheduledJobs with their
    history is ~4 MB, parsed in a fifth of the standard library's time (`operator_restart_seconds_20k`).
    The API server writes no integer beyond 64 bits (it reads numbers as int64 or float64), the one thing
    orjson would read inexactly (as a float)."""
    return orjson.loads(data)


async def list_pages(page: Callable[[str | None], Awaitable[dict[str, Any]]]) -> AsyncGenerator[dict[str, Any], None]:
    """The pages of one LIST (limit/continue), one after the other: `page(token)` answers one, parsed.

    Asking for the next page while the caller took this one was measured at 20,000 ScheduledJobs and did not
    pay on 2 shared cores (docs/benchmarks.md, the seventh scale run): the API server's encoding is the
    cost, and a second page in flight only competes with the first."""
    token: str | None = None
    while True:
        result = await page(token)
        yield result
        token = (result.get("metadata") or {}).get("continue") or None
        if token is None:
            return


async def watch_documents(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON documents of a watch response (`{"type": ..., "object": ...}`), one per line, as they arrive.

    Lines are split by hand: aiohttp's readline refuses lines over 128 KiB, and a ScheduledJob with a long
    ledger is bigger than that."""
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending.extend(chunk)
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = bytes(pending[start:end])
            start = end + 1
            if line.strip() and isinstance(document := loads(line), dict):
                yield document
        del pending[:start]
    if pending.strip() and isinstance(document := loads(bytes(pending)), dict):
        yield document
