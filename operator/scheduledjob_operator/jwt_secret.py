"""The API's generated JWT secret: created once by the operator in its own namespace when absent, never changed.

The chart used to render it with a random value kept across upgrades through Helm's `lookup`; `helm template`
(Argo CD, Flux post-renderers, CI diffs) has no cluster to look up, so every such render rolled a new secret and
invalidated every token. Now no render carries the value: the chart names the Secret (env below) and the operator
creates it on start. An existing Secret answers 409 and is left alone, so the operator needs `create` on Secrets
and nothing else (it cannot read, list or change any Secret, this one included). The Secret is owned by the
chart's id-sequence ConfigMap, so `helm uninstall`, which deletes that, garbage-collects the Secret with it.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any, Final

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

log = logging.getLogger(__name__)

NAME_VARIABLE: Final = "SCHEDULED_JOBS_GENERATED_JWT_SECRET_NAME"
KEY_VARIABLE: Final = "SCHEDULED_JOBS_GENERATED_JWT_SECRET_KEY"
DEFAULT_KEY: Final = "jwt-secret"
# The chart's evaluation PostgreSQL: its archive role's password, made the same way and for the same reason (a
# rendered random value would be re-rolled by every render). The database and the API mount it as a file; the
# operator, which cannot read Secrets, reads it from its own optional mount once the kubelet has filled it in.
ARCHIVE_NAME_VARIABLE: Final = "SCHEDULED_JOBS_GENERATED_ARCHIVE_SECRET_NAME"
ARCHIVE_KEY: Final = "password"
# Each call is bounded: a hung apiserver connection fails the startup handler, which kopf retries.
REQUEST_TIMEOUT_SECONDS: Final = 10.0
SECRET_BYTES: Final = 36  # 48 URL-safe characters, as the chart's generated secret had


def generated_secret(
    name: str, key: str, value: str, owner: Mapping[str, Any] | None, component: str = "api"
) -> dict[str, Any]:
    """The Secret manifest: labelled like the release's ConfigMap `owner` and owned by it (when it exists)."""
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        labels = dict(owner.get("labels") or {})
        labels |= {"app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "scheduledjob-operator"}
        labels.pop("helm.sh/chart", None)
        metadata["labels"] = labels
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": owner["name"], "uid": owner["uid"]}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


async def ensure_generated_jwt_secret(
    api: client.ApiClient, namespace: str, environ: Mapping[str, str] = os.environ
) -> None:
    """Creates the Secret named by SCHEDULED_JOBS_GENERATED_JWT_SECRET_NAME unless it exists (then: nothing)."""
    name = environ.get(NAME_VARIABLE)
    if not name:
        return
    await _ensure_secret(api, namespace, name, environ.get(KEY_VARIABLE) or DEFAULT_KEY, "api", "the API's JWT secret")


async def ensure_generated_archive_secret(
    api: client.ApiClient, namespace: str, environ: Mapping[str, str] = os.environ
) -> None:
    """Creates the evaluation PostgreSQL's password Secret (SCHEDULED_JOBS_GENERATED_ARCHIVE_SECRET_NAME) unless
    it exists: never re-rolled, so the password the database was initialised with stays the one it is given."""
    name = environ.get(ARCHIVE_NAME_VARIABLE)
    if not name:
        return
    await _ensure_secret(api, namespace, name, ARCHIVE_KEY, "archive", "the archive database's password")


async def _ensure_secret(api: client.ApiClient, namespace: str, name: str, key: str, component: str, what: str) -> None:
    core: Any = client.CoreV1Api(api)
    owner: dict[str, Any] | None = None
    try:
        sequence = await core.read_namespaced_config_map(
            c.ID_SEQUENCE_CONFIGMAP, namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
        )
        meta = sequence.metadata
        owner = {"name": meta.name, "uid": meta.uid, "labels": meta.labels}
    except ApiException as error:
        if error.status not in (403, 404):
            raise
        log.warning(
            "ConfigMap %s/%s unreadable (%s): Secret %s gets no owner",
            namespace,
            c.ID_SEQUENCE_CONFIGMAP,
            error.status,
            name,
        )
    body = generated_secret(name, key, secrets.token_urlsafe(SECRET_BYTES), owner, component)
    try:
        await core.create_namespaced_secret(namespace, body, _request_timeout=REQUEST_TIMEOUT_SECONDS)
    except ApiException as error:
        if error.status == 409:
            log.debug("Secret %s/%s exists: left as it is", namespace, name)
            return
        if error.status == 403:  # retrying cannot help; scheduling goes on, the API waits for the Secret
            log.error(
                "may not create %s %s/%s (grant `create` on secrets): %s",
                what,
                namespace,
                name,
                error.reason,
            )
            return
        raise
    log.info("created %s %s/%s (key %s)", what, namespace, name, key)
