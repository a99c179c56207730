"""The adapter calls of the stored-version migration (storage_migration.py): our CRDs and their
`status.storedVersions`, discovery, StorageVersionMigrations, and the empty write that re-encodes an object
at the storage version. Each goes through `kube.Cluster.request` (the operator's one deadline and retry
policy); a refusal surfaces as `kube.Forbidden`, a stale resourceVersion as `kube.Conflict`.

Kept apart from kube.py (the operator's adapter for everything it reconciles) because only the leader's
startup migration uses it, and its RBAC is a ClusterRole of its own (charts/.../rbac-operator.yaml)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c

from scheduledjob_operator.kube import MERGE_PATCH, Cluster, pages, parsed, translate

PAGE_SIZE = 500
SVM_GROUP = "storagemigration.k8s.io"
SVM_VERSION = "v1"
SVM_PLURAL = "storageversionmigrations"


class CrdStorage:
    def __init__(self, cluster: Cluster, api: client.ApiClient) -> None:
        self._cluster = cluster
        # Typed as Any: the generated signatures omit `_content_type`, which the client does accept.
        self._extensions: Any = client.ApiextensionsV1Api(api)
        self._apis: Any = client.ApisApi(api)
        self._custom: Any = client.CustomObjectsApi(api)

    # --- our CRDs -----------------------------------------------------------------------------
    async def get_crd(self, name: str) -> dict[str, Any] | None:
        """The CustomResourceDefinition (`get`, by name); None if it is not installed."""
        try:
            return await parsed(
                await self._cluster.request(
                    self._extensions.read_custom_resource_definition, name, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise translate(error) from error

    async def set_stored_versions(self, name: str, versions: list[str], resource_version: str) -> None:
        """Writes `status.storedVersions` (`patch` of customresourcedefinitions/status) only if the CRD is
        still at `resource_version` (else Conflict)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": {"storedVersions": versions}}
        try:
            await parsed(
                await self._cluster.request(
                    self._extensions.patch_custom_resource_definition_status,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                    _preload_content=False,
                )
            )
        except ApiException as error:
            raise translate(error) from error

    # --- discovery ----------------------------------------------------------------------------
    async def serves(self, group: str, version: str) -> bool:
        """Whether the API server serves `group/version` (discovery: every authenticated user may read it)."""
        try:
            groups = await parsed(await self._cluster.request(self._apis.get_api_versions, _preload_content=False))
        except ApiException as error:
            raise translate(error) from error
        return any(
            entry.get("name") == group and any(v.get("version") == version for v in entry.get("versions") or [])
            for entry in groups.get("groups") or []
        )

    # --- StorageVersionMigrations (storagemigration.k8s.io/v1, cluster-scoped) -----------------
    async def get_migration(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._cluster.request(
                self._custom.get_cluster_custom_object, SVM_GROUP, SVM_VERSION, SVM_PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise translate(error) from error
        return result

    async def create_migration(self, body: dict[str, Any]) -> bool:
        """Creates the StorageVersionMigration; False if one of that name exists already."""
        try:
            await self._cluster.request(
                self._custom.create_cluster_custom_object, SVM_GROUP, SVM_VERSION, SVM_PLURAL, body
            )
        except ApiException as error:
            if error.status == 409:
                return False
            raise translate(error) from error
        return True

    # --- the objects of one of our kinds --------------------------------------------------------
    def object_pages(self, plural: str) -> AsyncIterator[list[dict[str, Any]]]:
        """Every object of the kind in every namespace (`list` cluster-wide), PAGE_SIZE at a time."""

        def page(namespace: str | None, **options: Any) -> Any:
            return self._cluster.request(self._custom.list_cluster_custom_object, c.GROUP, c.VERSION, plural, **options)

        return pages(page, None, lambda namespace: True, limit=PAGE_SIZE)

    async def rewrite(self, namespace: str, plural: str, name: str, resource_version: str) -> bool:
        """The empty write: a merge patch of the status subresource holding only the resourceVersion read, which
        makes the API server encode the object again at the storage version (`patch` of <plural>/status). False if
        the object is gone (404) or was written since (409): either way nothing of it is left to rewrite."""
        body = {"metadata": {"resourceVersion": resource_version}}
        try:
            await self._cluster.request(
                self._custom.patch_namespaced_custom_object_status,
                c.GROUP,
                c.VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise translate(error) from error
        return True
