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
# Each call is bounded: a hung apiserver connection fails the startup handler, which kopf retries.
REQUEST_TIMEOUT_SECONDS: Final = 10.0
SECRET_BYTES: Final = 36  # 48 URL-safe characters, as the chart's generated secret had


def generated_secret(name: str, key: str, value: str, owner: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Secret manifest: labelled like the release's ConfigMap `owner` and owned by it (when it exists)."""
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        labels = dict(owner.get("labels") or {})
        labels |= {"app.kubernetes.io/component": "api", "app.kubernetes.io/managed-by": "scheduledjob-operator"}
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
    key = environ.get(KEY_VARIABLE) or DEFAULT_KEY
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
    body = generated_secret(name, key, secrets.token_urlsafe(SECRET_BYTES), owner)
    try:
        await core.create_namespaced_secret(namespace, body, _request_timeout=REQUEST_TIMEOUT_SECONDS)
    except ApiException as error:
        if error.status == 409:
            log.debug("Secret %s/%s exists: left as it is", namespace, name)
            return
        if error.status == 403:  # retrying cannot help; scheduling goes on, the API waits for the Secret
            log.error(
                "may not create the API's JWT secret %s/%s (grant `create` on secrets): %s",
                namespace,
                name,
                error.reason,
            )
            return
        raise
    log.info("created the API's JWT secret %s/%s (key %s)", namespace, name, key)
