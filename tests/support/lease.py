"""The operator's leader Lease (scheduledjob_operator.election) and its replicas' logs, as the tests read them."""

from __future__ import annotations

from typing import Any

from devrun.install import STATE_NAMESPACE
from devrun.processes import Service
from kubernetes_asyncio import client
from scheduledjob_operator.election import DEFAULT_LEASE_NAME


async def holder(api_client: client.ApiClient) -> str | None:
    """Who holds the leader Lease now (None: nobody, or there is none yet)."""
    coordination: Any = client.CoordinationV1Api(api_client)
    try:
        lease = await coordination.read_namespaced_lease(DEFAULT_LEASE_NAME, STATE_NAMESPACE)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return str(lease.spec.holder_identity or "") or None


def logged_lines(service: Service, text: str) -> int:
    """How many lines of the process's log (its runs before a restart included) have `text`."""
    if not service.log_path.exists():
        return 0
    return sum(text in line for line in service.log_path.read_text(errors="replace").splitlines())


async def logged(service: Service, text: str) -> bool:
    """For `eventually`: whether the process's log has a line with `text` (its runs before a restart included)."""
    return logged_lines(service, text) > 0
