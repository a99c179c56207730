"""Stored versions follow an upgrade (scheduledjob_operator/storage_migration.py): the decisions as pure functions,
and the order of calls against an in-memory stand-in of crd_storage.CrdStorage. The real API server and the
kube-controller-manager's StorageVersionMigration are in tests/integration/operator/test_storage_migration.py."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob_operator.kube import Conflict, Forbidden, Rejected
from scheduledjob_operator.storage_migration import (
    PLURALS,
    RETRY_FIRST_SECONDS,
    RETRY_MAX_SECONDS,
    Crd,
    Outcome,
    Step,
    StorageMigration,
    advice,
    crd_name,
    may_prune,
    migration_manifest,
    migration_name,
    migration_outcome,
    migration_settled,
    next_step,
    retry_delay,
)

GROUP = "scheduling.selfhelp.io"
NAME = f"scheduledjobs.{GROUP}"


def crd_body(stored: list[str], storage: str = "v1", generation: int = 2, rv: str = "10") -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "generation": generation, "resourceVersion": rv},
        "spec": {
            "group": GROUP,
            "names": {"plural": "scheduledjobs", "kind": "ScheduledJob"},
            "versions": [
                {"name": "v1", "served": True, "storage": storage == "v1"},
                {"name": "v1alpha1", "served": True, "storage": storage == "v1alpha1"},
            ],
        },
        "status": {"storedVersions": stored},
    }


def condition(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status}


def svm(*conditions: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": f"{NAME}-to-v1"}, "status": {"conditions": list(conditions)}}


# ---- pure decisions --------------------------------------------------------------------------------------------------


def test_a_crd_is_read_for_its_storage_version_and_what_must_go() -> None:
    crd = Crd.of(crd_body(["v1alpha1", "v1"]))
    assert (crd.name, crd.group, crd.plural, crd.kind) == (NAME, GROUP, "scheduledjobs", "ScheduledJob")
    assert (crd.storage, crd.stored, crd.generation, crd.resource_version) == ("v1", ("v1alpha1", "v1"), 2, "10")
    assert not crd.migrated and crd.stale == ("v1alpha1",)
    assert Crd.of(crd_body(["v1"])).migrated
    # Only exactly [storage] is done: the storage version missing from the list, or listed twice, is not.
    assert not Crd.of(crd_body(["v1alpha1"])).migrated
    assert not Crd.of(crd_body(["v1", "v1"])).migrated
    assert not Crd.of({**crd_body([]), "status": {}}).migrated


@pytest.mark.parametrize(
    ("stored", "served", "tried", "everywhere", "step"),
    [
        (["v1"], True, False, True, Step.DONE),
        (["v1"], False, False, False, Step.DONE),
        (["v1alpha1", "v1"], True, False, True, Step.MIGRATION),
        (["v1alpha1", "v1"], True, False, False, Step.MIGRATION),  # the controller rewrites every namespace
        (["v1alpha1", "v1"], True, True, True, Step.REWRITE),  # the migration did not end with [v1]
        (["v1alpha1", "v1"], True, True, False, Step.ADVICE),
        (["v1alpha1", "v1"], False, False, True, Step.REWRITE),
        (["v1alpha1", "v1"], False, False, False, Step.ADVICE),  # a namespaced operator leaves it alone
    ],
)
def test_next_step(stored: list[str], served: bool, tried: bool, everywhere: bool, step: Step) -> None:
    crd = Crd.of(crd_body(stored))
    assert next_step(crd, migration_served=served, migration_tried=tried, all_namespaces=everywhere) is step


def test_the_migration_is_named_after_the_crd_and_the_storage_version() -> None:
    crd = Crd.of(crd_body(["v1alpha1", "v1"]))
    assert migration_name(crd) == f"{NAME}-to-v1"
    assert migration_manifest(crd) == {
        "apiVersion": "storagemigration.k8s.io/v1",
        "kind": "StorageVersionMigration",
        "metadata": {"name": f"{NAME}-to-v1", "labels": {"app.kubernetes.io/part-of": "selfhelp-scheduled-jobs"}},
        "spec": {"resource": {"group": GROUP, "resource": "scheduledjobs"}},
    }
    assert [crd_name(p) for p in PLURALS] == [
        f"{p}.{GROUP}" for p in ("scheduledjobs", "scheduledjobruns", "scheduledjobnotifiers")
    ]


def test_a_migration_ends_with_its_condition_and_settles_when_no_longer_running() -> None:
    assert migration_outcome(svm()) is Outcome.PENDING
    assert migration_outcome(svm(condition("Running"))) is Outcome.PENDING
    assert migration_outcome(svm(condition("Succeeded", "False"))) is Outcome.PENDING
    assert migration_outcome(svm(condition("Running"), condition("Succeeded"))) is Outcome.SUCCEEDED
    assert migration_outcome(svm(condition("Failed"))) is Outcome.FAILED
    assert migration_outcome(None) is Outcome.FAILED  # deleted meanwhile
    # The controller prunes storedVersions in the pass that sets Running False: only then is the CRD final.
    assert not migration_settled(svm(condition("Running")))
    assert not migration_settled(svm(condition("Running"), condition("Succeeded")))
    assert migration_settled(svm(condition("Running", "False"), condition("Succeeded")))
    assert migration_settled(svm(condition("Failed")))
    assert migration_settled(None)


def test_stored_versions_are_pruned_only_if_the_spec_did_not_change_during_the_rewrite() -> None:
    before = Crd.of(crd_body(["v1alpha1", "v1"], generation=2, rv="10"))
    assert may_prune(before, Crd.of(crd_body(["v1alpha1", "v1"], generation=2, rv="11")))  # a status write: fine
    assert not may_prune(before, Crd.of(crd_body(["v1alpha1", "v1"], generation=3)))
    assert not may_prune(before, Crd.of(crd_body(["v1alpha1", "v1"], storage="v1alpha1", generation=2)))


def test_retries_back_off_to_a_bound() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [
        RETRY_FIRST_SECONDS,
        2 * RETRY_FIRST_SECONDS,
        4 * RETRY_FIRST_SECONDS,
    ]
    assert retry_delay(50) == RETRY_MAX_SECONDS


def test_the_advice_names_the_crd_the_versions_and_the_command() -> None:
    line = advice(Crd.of(crd_body(["v1alpha1", "v1"])), "storagemigration.k8s.io/v1 is not served")
    assert "['v1alpha1', 'v1']" in line and "storagemigration.k8s.io/v1 is not served" in line
    assert (
        f"kubectl patch customresourcedefinition {NAME} --subresource=status --type=merge "
        """-p '{"status":{"storedVersions":["v1"]}}'""" in line
    )
    assert "docs/upgrading.md" in line and "\n" not in line


# ---- carrying them out, against a stand-in of crd_storage.CrdStorage -------------------------------------------------


class FakeStorage:
    """One CRD (scheduledjobs) and its objects; `calls` notes every call in order; `hooks` run before a call and may
    raise (a refusal, a conflict) or change the state (another writer)."""

    def __init__(self, stored: list[str], *, served: bool = True, objects: int = 3) -> None:
        self.crd: dict[str, Any] | None = crd_body(stored)
        self.served = served
        self.objects = {
            f"job-{i}": {"metadata": {"namespace": "team-a", "name": f"job-{i}", "resourceVersion": str(100 + i)}}
            for i in range(objects)
        }
        self.migrations: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.hooks: dict[str, Callable[[], None]] = {}
        self.rewritten: list[str] = []
        self._rv = 1000
        # How the migration's controller answers each get (a script of statuses; the last one repeats).
        self.migration_script: list[dict[str, Any]] = [
            svm(condition("Running")),
            svm(condition("Running", "False"), condition("Succeeded")),
        ]
        self.prune_when_settled = True

    def _call(self, name: str) -> None:
        self.calls.append(name)
        hook = self.hooks.get(name)
        if hook is not None:
            hook()

    def bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    async def get_crd(self, name: str) -> dict[str, Any] | None:
        self._call("get_crd")
        return copy.deepcopy(self.crd) if self.crd is not None and name == NAME else None

    async def set_stored_versions(self, name: str, versions: list[str], resource_version: str) -> None:
        self._call("set_stored_versions")
        assert self.crd is not None
        if resource_version != self.crd["metadata"]["resourceVersion"]:
            raise Conflict("stale")
        self.crd["status"]["storedVersions"] = versions
        self.crd["metadata"]["resourceVersion"] = self.bump()

    async def serves(self, group: str, version: str) -> bool:
        self._call("serves")
        assert (group, version) == ("storagemigration.k8s.io", "v1")
        return self.served

    async def get_migration(self, name: str) -> dict[str, Any] | None:
        self._call("get_migration")
        if name not in self.migrations:
            return None
        answer = self.migration_script.pop(0) if len(self.migration_script) > 1 else self.migration_script[0]
        if migration_settled(answer) and migration_outcome(answer) is Outcome.SUCCEEDED and self.prune_when_settled:
            assert self.crd is not None
            self.crd["status"]["storedVersions"] = ["v1"]
        return copy.deepcopy(answer)

    async def create_migration(self, body: dict[str, Any]) -> bool:
        self._call("create_migration")
        name = body["metadata"]["name"]
        if name in self.migrations:
            return False
        self.migrations[name] = body
        return True

    async def object_pages(self, plural: str) -> AsyncIterator[list[dict[str, Any]]]:
        self._call("list")
        assert plural == "scheduledjobs"
        items = [copy.deepcopy(o) for o in self.objects.values()]
        for start in range(0, len(items), 2):  # pages of two
            yield items[start : start + 2]

    async def rewrite(self, namespace: str, plural: str, name: str, resource_version: str) -> bool:
        self._call("rewrite")
        obj = self.objects.get(name)
        if obj is None or obj["metadata"]["resourceVersion"] != resource_version:
            return False
        obj["metadata"]["resourceVersion"] = self.bump()
        self.rewritten.append(name)
        return True


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def migration(storage: FakeStorage, time: FakeTime, *, everywhere: bool = True, **options: Any) -> StorageMigration:
    return StorageMigration(storage, all_namespaces=everywhere, sleep=time.sleep, clock=time.clock, **options)


async def test_nothing_happens_when_stored_versions_are_already_the_storage_version() -> None:
    storage, time = FakeStorage(["v1"]), FakeTime()
    await migration(storage, time).until_done(NAME)
    assert storage.calls == ["get_crd"]


async def test_a_crd_that_is_not_installed_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    caplog.set_level(logging.INFO)
    await migration(storage, time).until_done(f"scheduledjobnotifiers.{GROUP}")
    assert storage.calls == ["get_crd"] and "is not installed" in caplog.text


async def test_the_storage_version_migration_does_the_work_where_it_is_served() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    await migration(storage, time).until_done(NAME)
    assert storage.calls == ["get_crd", "serves", "create_migration", "get_migration", "get_migration", "get_crd"]
    assert storage.migrations[f"{NAME}-to-v1"]["spec"] == {"resource": {"group": GROUP, "resource": "scheduledjobs"}}
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]
    assert not storage.rewritten  # the controller wrote them, not the operator
    assert time.sleeps == [5.0]


async def test_a_namespaced_operator_uses_the_migration_too() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    await migration(storage, time, everywhere=False).until_done(NAME)
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]
    assert "create_migration" in storage.calls


async def test_without_the_migration_api_the_operator_rewrites_every_object_then_prunes() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False, objects=5), FakeTime()
    await migration(storage, time).until_done(NAME)
    assert storage.rewritten == [f"job-{i}" for i in range(5)]
    assert storage.calls == ["get_crd", "serves", "list", *["rewrite"] * 5, "get_crd", "set_stored_versions"]
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_namespaced_operator_without_the_migration_api_leaves_stored_versions_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()
    await migration(storage, time, everywhere=False).until_done(NAME)
    assert storage.calls == ["get_crd", "serves"]  # no listing, no write, no prune
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1alpha1", "v1"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "watches only some namespaces" in line and "kubectl patch customresourcedefinition" in line


async def test_a_failed_migration_falls_back_to_the_own_rewrite() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    storage.migration_script = [svm(condition("Failed"))]
    await migration(storage, time).until_done(NAME)
    assert len(storage.rewritten) == 3
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_namespaced_operator_only_advises_after_a_failed_migration(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    storage.migration_script = [svm(condition("Failed"))]
    await migration(storage, time, everywhere=False).until_done(NAME)
    assert not storage.rewritten and "set_stored_versions" not in storage.calls
    assert f"StorageVersionMigration {NAME}-to-v1 failed" in caplog.text


async def test_a_migration_that_does_not_end_in_time_is_given_up() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    storage.migration_script = [svm(condition("Running"))]
    await migration(storage, time, migration_wait=60, poll=5).until_done(NAME)
    assert storage.calls.count("get_migration") == 13  # at 0, 5, ..., 60 s
    assert len(storage.rewritten) == 3 and storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_migration_that_succeeded_long_ago_without_pruning_leads_to_the_own_rewrite() -> None:
    """E.g. storedVersions listing the old version again after an earlier migration of the same name."""
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    storage.migrations[f"{NAME}-to-v1"] = {}
    storage.migration_script = [svm(condition("Running", "False"), condition("Succeeded"))]
    storage.prune_when_settled = False
    await migration(storage, time).until_done(NAME)
    assert storage.calls[:4] == ["get_crd", "serves", "create_migration", "get_migration"]  # no wait
    assert len(storage.rewritten) == 3 and storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_refused_migration_falls_back_to_the_own_rewrite(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()

    def refuse() -> None:
        raise Forbidden('cannot create resource "storageversionmigrations"')

    storage.hooks["create_migration"] = refuse
    await migration(storage, time).until_done(NAME)
    assert len(storage.rewritten) == 3 and storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]
    assert "may not create or get storageversionmigrations.storagemigration.k8s.io" in caplog.text


async def test_objects_gone_or_written_meanwhile_are_skipped() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False, objects=4), FakeTime()

    def meanwhile() -> None:
        if storage.calls.count("rewrite") == 1:
            del storage.objects["job-1"]  # deleted
            storage.objects["job-2"]["metadata"]["resourceVersion"] = storage.bump()  # written by someone else

    storage.hooks["rewrite"] = meanwhile
    await migration(storage, time).until_done(NAME)
    assert storage.rewritten == ["job-0", "job-3"]
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_status_write_to_the_crd_meanwhile_is_read_again() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()
    conflicts = [True]

    def condition_written() -> None:
        assert storage.crd is not None
        if conflicts and storage.calls.count("set_stored_versions") == 1:
            conflicts.pop()
            storage.crd["metadata"]["resourceVersion"] = storage.bump()

    storage.hooks["set_stored_versions"] = condition_written
    await migration(storage, time).until_done(NAME)
    assert storage.calls[-4:] == ["get_crd", "set_stored_versions", "get_crd", "set_stored_versions"]
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]
    assert not time.sleeps


async def test_a_spec_change_during_the_rewrite_starts_it_over(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()

    def spec_changed() -> None:
        assert storage.crd is not None
        if storage.calls.count("list") == 1:
            storage.crd["metadata"]["generation"] += 1

    storage.hooks["list"] = spec_changed
    await migration(storage, time).until_done(NAME)
    assert storage.calls.count("list") == 2 and time.sleeps == [RETRY_FIRST_SECONDS]
    assert "spec changed (generation 2 -> 3)" in caplog.text
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_refusal_is_logged_once_naming_the_permission_and_retried_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()

    def refuse() -> None:
        if storage.calls.count("set_stored_versions") <= 4:
            raise Forbidden('cannot patch resource "customresourcedefinitions/status"')

    storage.hooks["set_stored_versions"] = refuse
    caplog.set_level(logging.INFO)
    await migration(storage, time).until_done(NAME)
    assert time.sleeps == [10.0, 20.0, 40.0, 80.0]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, errors
    assert f"may not patch customresourcedefinitions/status {NAME}" in errors[0]
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_a_refused_listing_names_the_list_permission(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()

    def refuse() -> None:
        if storage.calls.count("list") == 1:
            raise Forbidden('cannot list resource "scheduledjobs"')

    storage.hooks["list"] = refuse
    await migration(storage, time).until_done(NAME)
    assert f"may not list scheduledjobs.{GROUP} in all namespaces" in caplog.text


async def test_any_other_failure_is_logged_and_retried_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()
    failures = [RuntimeError("boom"), Rejected("invalid")]

    def fail() -> None:
        if failures:
            raise failures.pop(0)

    storage.hooks["serves"] = fail
    await migration(storage, time).until_done(NAME)
    assert time.sleeps == [10.0, 20.0] and "boom" in caplog.text
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]


async def test_without_migrations_the_api_is_not_even_asked() -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"]), FakeTime()
    await migration(storage, time, use_migrations=False).until_done(NAME)
    assert "serves" not in storage.calls and "create_migration" not in storage.calls
    assert len(storage.rewritten) == 3


async def test_an_outage_the_adapter_could_not_retry_past_is_one_line_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, time = FakeStorage(["v1alpha1", "v1"], served=False), FakeTime()
    failures: list[Exception] = [ApiException(status=503, reason="Service Unavailable"), TimeoutError()]

    def fail() -> None:
        if failures:
            raise failures.pop(0)

    storage.hooks["get_crd"] = fail
    await migration(storage, time).until_done(NAME)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.exc_info for r in warnings] == [None, None]
    assert "HTTP 503 Service Unavailable; retrying in 10 s" in warnings[0].getMessage()
    assert storage.crd is not None and storage.crd["status"]["storedVersions"] == ["v1"]
