"""Stored versions follow an upgrade: every stored object of our kinds is rewritten at the storage version,
then each CRD's `status.storedVersions` is exactly [that version].

An upgrade that makes a new version the storage version (v1alpha1 -> v1) leaves the objects in etcd as they
were written, and `status.storedVersions` naming both: the old version can then never be removed from the CRD
(the API server refuses to drop a version still listed there), which blocks a later upgrade. So the leader, at
startup and in the background (handlers.start), does for each of our CRDs:

1. nothing when `status.storedVersions` is already exactly [the storage version];
2. where `storagemigration.k8s.io/v1` is served, a StorageVersionMigration `<crd>-to-<version>` (made unless it
   exists), awaited up to MIGRATION_WAIT_SECONDS: the kube-controller-manager's
   storage-version-migrator-controller writes every object again and prunes storedVersions itself (only if the
   CRD's spec did not change while it ran: k8s.io/kubernetes pkg/controller/storageversionmigrator/
   migrationrunner.go), which is checked by reading the CRD again;
3. otherwise (not served, refused, failed, timed out, or storedVersions left as they were) its own rewrite, if
   it watches every namespace: an empty write of every object (`crd_storage.CrdStorage.rewrite`), then
   storedVersions = [storage] under the CRD's resourceVersion, and only if the CRD's generation (its spec) is
   still the one read before the rewrite;
4. an operator that watches only some namespaces can neither list nor write the others' objects: it logs, once,
   what a cluster admin runs instead, and leaves storedVersions alone.

Failures are logged and tried again with backoff (RETRY_*), and never stop the operator; a refusal by the API
server (RBAC) is logged once, naming the permission. The decisions are pure functions (first section); the
second section only carries them out through `crd_storage.CrdStorage`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob import constants as c
from scheduledjob.notifications import PLURAL as NOTIFIERS

from scheduledjob_operator.crd_storage import SVM_GROUP, SVM_PLURAL, SVM_VERSION
from scheduledjob_operator.kube import Conflict, Forbidden, Refused

logger = logging.getLogger(__name__)

PLURALS = (c.PLURAL, c.RUN_PLURAL, NOTIFIERS)
# How long a StorageVersionMigration may take before the operator goes on without it (the controller picks a new
# CRD up at its next discovery, up to ~1 min; then it writes every object).
MIGRATION_WAIT_SECONDS = 300.0
POLL_SECONDS = 5.0
# A failed attempt is tried again after 10 s, 20 s, 40 s ... then every 5 min, until it lands.
RETRY_FIRST_SECONDS = 10.0
RETRY_MAX_SECONDS = 300.0
# storedVersions is written under the CRD's resourceVersion; a status write of another (a condition) meanwhile is
# a conflict worth reading again for, this many times.
PRUNE_ATTEMPTS = 5
DOCS = 'docs/upgrading.md, "Stored versions"'


# ---- pure decisions --------------------------------------------------------------------------
def crd_name(plural: str) -> str:
    return f"{plural}.{c.GROUP}"


@dataclass(frozen=True)
class Crd:
    """What the migration reads of a CustomResourceDefinition."""

    name: str
    group: str
    plural: str
    kind: str
    storage: str  # the version marked `storage: true`
    stored: tuple[str, ...]  # status.storedVersions
    generation: int  # changes with the spec only (a new storage version among it)
    resource_version: str

    @classmethod
    def of(cls, crd: dict[str, Any]) -> Crd:
        spec, meta = crd["spec"], crd["metadata"]
        return cls(
            name=meta["name"],
            group=spec["group"],
            plural=spec["names"]["plural"],
            kind=spec["names"]["kind"],
            storage=next(version["name"] for version in spec["versions"] if version.get("storage")),
            stored=tuple((crd.get("status") or {}).get("storedVersions") or ()),
            generation=int(meta.get("generation") or 0),
            resource_version=str(meta["resourceVersion"]),
        )

    @property
    def migrated(self) -> bool:
        """Every object is at the storage version, as far as the API server knows."""
        return self.stored == (self.storage,)

    @property
    def stale(self) -> tuple[str, ...]:
        """The versions that must leave status.storedVersions."""
        return tuple(version for version in self.stored if version != self.storage)


class Step(StrEnum):
    DONE = "done"  # storedVersions is [storage]
    MIGRATION = "migration"  # a StorageVersionMigration (the kube-controller-manager does the work)
    REWRITE = "rewrite"  # the operator's own rewrite
    ADVICE = "advice"  # neither: say what an admin runs, change nothing


def next_step(crd: Crd, *, migration_served: bool, migration_tried: bool, all_namespaces: bool) -> Step:
    """What to do for `crd` now. The StorageVersionMigration first, where the API server serves it; the own
    rewrite when that is not served or did not end with storedVersions = [storage], and only by an operator that
    lists and writes every namespace (one that serves only some would leave the others' objects behind)."""
    if crd.migrated:
        return Step.DONE
    if migration_served and not migration_tried:
        return Step.MIGRATION
    return Step.REWRITE if all_namespaces else Step.ADVICE


def migration_name(crd: Crd) -> str:
    """One StorageVersionMigration per CRD and storage version (the chart's RBAC names these)."""
    return f"{crd.name}-to-{crd.storage}"


def migration_manifest(crd: Crd) -> dict[str, Any]:
    return {
        "apiVersion": f"{SVM_GROUP}/{SVM_VERSION}",
        "kind": "StorageVersionMigration",
        "metadata": {"name": migration_name(crd), "labels": {"app.kubernetes.io/part-of": "selfhelp-scheduled-jobs"}},
        "spec": {"resource": {"group": crd.group, "resource": crd.plural}},
    }


class Outcome(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def _condition_true(migration: dict[str, Any], kind: str) -> bool:
    conditions = (migration.get("status") or {}).get("conditions") or []
    return any(cond.get("type") == kind and cond.get("status") == "True" for cond in conditions)


def migration_outcome(migration: dict[str, Any] | None) -> Outcome:
    """Succeeded or Failed once the controller says so; a migration deleted meanwhile counts as failed."""
    if migration is None or _condition_true(migration, "Failed"):
        return Outcome.FAILED
    return Outcome.SUCCEEDED if _condition_true(migration, "Succeeded") else Outcome.PENDING


def migration_settled(migration: dict[str, Any] | None) -> bool:
    """Ended, and its end handled by the controller: `Running` is set False in the same pass that prunes
    storedVersions (migrationrunner.go, cleanupAdmission), so after this the CRD will not change any more."""
    return migration_outcome(migration) is not Outcome.PENDING and not (
        migration is not None and _condition_true(migration, "Running")
    )


def may_prune(before: Crd, now: Crd) -> bool:
    """storedVersions may become [storage] after a rewrite that began with `before` only if the CRD's spec did not
    change since (same generation, same storage version): every object written since was encoded at it."""
    return now.generation == before.generation and now.storage == before.storage


def retry_delay(failures: int) -> float:
    delay: float = min(RETRY_FIRST_SECONDS * 2.0 ** (failures - 1), RETRY_MAX_SECONDS)
    return delay


def advice(crd: Crd, why: str) -> str:
    """The one line an operator that watches only some namespaces logs instead of rewriting."""
    prune = f'{{"status":{{"storedVersions":["{crd.storage}"]}}}}'
    return (
        f"{crd.name}: status.storedVersions is {list(crd.stored)} ({why}); this operator watches only some "
        f"namespaces, so it cannot write every {crd.kind} again at {crd.storage} and leaves storedVersions alone. "
        f"A cluster admin writes every {crd.plural} object again (an empty status patch each) and then runs "
        f"`kubectl patch customresourcedefinition {crd.name} --subresource=status --type=merge -p '{prune}'` ({DOCS})"
    )


# ---- carrying them out ------------------------------------------------------------------------
class Storage(Protocol):
    """The calls this needs (crd_storage.CrdStorage); Forbidden and Conflict as kube.py raises them."""

    async def get_crd(self, name: str) -> dict[str, Any] | None: ...

    async def set_stored_versions(self, name: str, versions: list[str], resource_version: str) -> None: ...

    async def serves(self, group: str, version: str) -> bool: ...

    async def get_migration(self, name: str) -> dict[str, Any] | None: ...

    async def create_migration(self, body: dict[str, Any]) -> bool: ...

    def object_pages(self, plural: str) -> AsyncIterator[list[dict[str, Any]]]: ...

    async def rewrite(self, namespace: str, plural: str, name: str, resource_version: str) -> bool: ...


class MissingPermission(Exception):
    """The API server refused a call of the migration: `permission` says what the operator lacks."""

    def __init__(self, permission: str, message: str) -> None:
        super().__init__(f"the operator may not {permission}: {message}")
        self.permission = permission


class CrdChanged(Exception):
    """The CRD's spec changed while its objects were written again: they may not all be at its storage version."""


class CrdGone(Exception):
    """The CRD was deleted while its stored versions were being migrated."""


async def _needs(permission: str, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except Forbidden as error:
        raise MissingPermission(permission, str(error)) from error


class StorageMigration:
    """Carries the decisions out for each of our CRDs, concurrently, until each is done (or advised about)."""

    def __init__(
        self,
        storage: Storage,
        *,
        all_namespaces: bool,
        use_migrations: bool = True,
        migration_wait: float = MIGRATION_WAIT_SECONDS,
        poll: float = POLL_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.all_namespaces = all_namespaces
        self.use_migrations = use_migrations  # False: never a StorageVersionMigration (tests of the own rewrite)
        self.migration_wait, self.poll = migration_wait, poll
        self._sleep, self._clock = sleep, clock
        self._refusals: set[str] = set()  # permissions whose refusal was logged (each is logged once)

    async def run(self, plurals: tuple[str, ...] = PLURALS) -> None:
        await asyncio.gather(*(self.until_done(crd_name(plural)) for plural in plurals))

    async def until_done(self, name: str) -> None:
        """`once`, again with backoff after each failure, until it lands; never raises (but cancellation)."""
        failures = 0
        while True:
            try:
                await self.once(name)
                return
            except Exception as error:
                failures += 1
                delay = retry_delay(failures)
                self._report(name, error, delay)
                await self._sleep(delay)

    def _report(self, name: str, error: Exception, delay: float) -> None:
        if isinstance(error, MissingPermission):
            if error.permission in self._refusals:  # said once; the retries go on quietly
                logger.debug("%s: %s; retrying in %.0f s", name, error, delay)
                return
            self._refusals.add(error.permission)
            logger.error(
                "%s: stored versions cannot be migrated: %s (the chart grants it: ClusterRoles <fullname>-operator-"
                "stored-versions and <fullname>-operator); retrying every %.0f s at most, without saying so again",
                name,
                error,
                RETRY_MAX_SECONDS,
            )
        elif isinstance(error, (CrdChanged, CrdGone, Conflict)):
            logger.warning("%s: migrating stored versions: %s; retrying in %.0f s", name, error, delay)
        elif isinstance(error, ApiException):  # what the adapter's retries could not get past (an outage, a 5xx)
            logger.warning(
                "%s: migrating stored versions: HTTP %s %s; retrying in %.0f s", name, error.status, error.reason, delay
            )
        elif isinstance(error, (aiohttp.ClientError, TimeoutError)):
            logger.warning("%s: migrating stored versions: %r; retrying in %.0f s", name, error, delay)
        else:
            logger.exception("%s: migrating stored versions failed; retrying in %.0f s", name, delay)

    async def _read(self, name: str) -> Crd | None:
        crd = await _needs(f"get customresourcedefinitions {name}", self.storage.get_crd(name))
        return Crd.of(crd) if crd is not None else None

    async def _reread(self, name: str) -> Crd:
        crd = await self._read(name)
        if crd is None:
            raise CrdGone(f"{name} was deleted")
        return crd

    async def once(self, name: str) -> None:
        crd = await self._read(name)
        if crd is None:
            logger.info("%s is not installed: no stored versions to migrate", name)
            return
        if crd.migrated:
            logger.debug("%s: every object is stored at %s", name, crd.storage)
            return
        logger.info(
            "%s: status.storedVersions is %s: writing every %s again at %s so that %s can go",
            name,
            list(crd.stored),
            crd.kind,
            crd.storage,
            ", ".join(crd.stale),
        )
        served = self.use_migrations and await _needs(
            "read the API discovery (/apis)", self.storage.serves(SVM_GROUP, SVM_VERSION)
        )
        step = next_step(crd, migration_served=served, migration_tried=False, all_namespaces=self.all_namespaces)
        why = f"{SVM_GROUP}/{SVM_VERSION} is not served" if self.use_migrations else "StorageVersionMigrations unused"
        if step is Step.MIGRATION:
            crd, why = await self._through_migration(crd)
            step = next_step(crd, migration_served=True, migration_tried=True, all_namespaces=self.all_namespaces)
        if step is Step.DONE:
            logger.info("%s: status.storedVersions is now [%s]", name, crd.storage)
        elif step is Step.ADVICE:
            logger.warning(advice(crd, why))
        else:
            logger.info("%s: %s; the operator writes every %s again itself", name, why, crd.kind)
            await self._rewrite(crd)

    async def _through_migration(self, crd: Crd) -> tuple[Crd, str]:
        """Makes (unless it exists) and awaits the StorageVersionMigration; returns the CRD as it is afterwards
        and, for the log, how the migration ended."""
        name = migration_name(crd)
        try:
            if await self.storage.create_migration(migration_manifest(crd)):
                logger.info("%s: StorageVersionMigration %s created", crd.name, name)
            deadline = self._clock() + self.migration_wait
            while not migration_settled(migration := await self.storage.get_migration(name)):
                if self._clock() >= deadline:
                    break
                await self._sleep(self.poll)
        except Refused as error:  # a cluster that keeps them from us: the own rewrite may still be allowed
            permission = f"create or get {SVM_PLURAL}.{SVM_GROUP} {name}"
            if permission not in self._refusals:
                self._refusals.add(permission)
                logger.warning("%s: the operator may not %s (%s); going on without it", crd.name, permission, error)
            return await self._reread(crd.name), f"StorageVersionMigration {name} refused"
        outcome = migration_outcome(migration)
        after = await self._reread(crd.name)
        if outcome is Outcome.PENDING:
            why = f"StorageVersionMigration {name} unfinished after {self.migration_wait:.0f} s"
        elif not after.migrated:
            why = f"StorageVersionMigration {name} {outcome}, storedVersions still {list(after.stored)}"
        else:
            why = f"StorageVersionMigration {name} {outcome}"
        return after, why

    async def _rewrite(self, before: Crd) -> None:
        """Writes every object again (the API server encodes it at the storage version), then sets
        storedVersions = [storage] if the CRD's spec did not change meanwhile."""
        written = skipped = 0
        listing = f"list {before.plural}.{before.group} in all namespaces"
        writing = f"patch {before.plural}/status"
        try:
            async for page in self.storage.object_pages(before.plural):
                for obj in page:
                    meta = obj["metadata"]
                    args = (meta["namespace"], before.plural, meta["name"], str(meta["resourceVersion"]))
                    if await _needs(writing, self.storage.rewrite(*args)):
                        written += 1
                    else:  # gone, or written since (then at the storage version already)
                        skipped += 1
        except Forbidden as error:  # from the listing (a write's refusal is a MissingPermission already)
            raise MissingPermission(listing, str(error)) from error
        for _ in range(PRUNE_ATTEMPTS):
            now = await self._reread(before.name)
            if now.migrated:
                return
            if not may_prune(before, now):
                raise CrdChanged(f"its spec changed (generation {before.generation} -> {now.generation}) meanwhile")
            try:
                await _needs(
                    f"patch customresourcedefinitions/status {before.name}",
                    self.storage.set_stored_versions(before.name, [now.storage], now.resource_version),
                )
            except Conflict:
                continue
            logger.info(
                "%s: wrote %d objects again (%d gone or written meanwhile); status.storedVersions is now [%s]",
                before.name,
                written,
                skipped,
                now.storage,
            )
            return
        raise Conflict(f"status.storedVersions: the CRD changed at each of {PRUNE_ATTEMPTS} attempts")
