"""The API server's audit log as the tests read it: who made which request (the LocalCluster's policy
audits the requests of non-system users at Metadata level: tools/localcluster_launcher/cluster.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from localcluster_launcher.testing import KubeCluster
from scheduledjob.timefmt import parse_utc

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class Audited(NamedTuple):
    at: datetime
    agent: str  # the User-Agent: `scheduledjob-operator/<identity>` for the operator's own requests
    verb: str
    resource: str
    subresource: str  # "" for the object itself
    name: str  # "" for a collection
    code: int  # the answer's HTTP status


def audit_log(kube_cluster: KubeCluster) -> Path:
    assert kube_cluster.control_plane is not None
    return kube_cluster.control_plane.audit_log


def audited_requests(
    log: Path, *, namespace: str | None = None, writes_only: bool = False, after_byte: int = 0
) -> list[Audited]:
    """The audited requests in order (the leader Lease's included: resource `leases`); with `after_byte`
    (the log's size at some moment), only those logged since (a suite's whole log is long to read)."""
    found: list[Audited] = []
    with log.open("rb") as stream:
        if 0 < after_byte <= log.stat().st_size:  # else the log was rotated since: all of it
            stream.seek(after_byte)
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            ref = event.get("objectRef") or {}
            resource = str(ref.get("resource", ""))
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            verb = str(event.get("verb", ""))
            if writes_only and verb not in WRITE_VERBS:
                continue
            found.append(
                Audited(
                    at=parse_utc(str(event.get("requestReceivedTimestamp"))),
                    agent=str(event.get("userAgent", "")),
                    verb=verb,
                    resource=resource,
                    subresource=str(ref.get("subresource", "")),
                    name=str(ref.get("name", "")),
                    code=int((event.get("responseStatus") or {}).get("code", 0)),
                )
            )
    return found
