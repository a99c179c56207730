"""Pause and resume decide on a cache, and each API replica has its own: the write is conditional on the
resourceVersion the decision was taken on, so two replicas (or kubectl) pausing at once can never
overwrite each other's who, when and why. Who paused, resumed or deleted is cut to the subject limit."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
from scheduledjob import constants as c
from scheduledjob.limits import REASON, SUBJECT, cut
from scheduledjob_api.cluster import Kind
from scheduledjob_api.security import DELETE, MANAGE, READ

from tests.unit.api.apitestkit import FakeCluster, StartApp, bearer, scheduled_job, token

BASE = "/cms-api/v1/admin/scheduled-jobs"
KEY = ("default", "cache-cleanup")


def admin(sub: str) -> dict[str, str]:
    return bearer(token([READ, MANAGE], sub=sub))


def data(response: httpx.Response) -> Any:
    body = response.json()
    assert response.status_code == 200 == body["status"], body
    return body["data"]


def stored_annotations(cluster: FakeCluster) -> dict[str, str]:
    return dict(cluster.objects[Kind.SCHEDULED_JOBS][KEY]["metadata"].get("annotations") or {})


def change_behind_the_cache(cluster: FakeCluster, **new: str | None) -> None:
    """Another writer (a second replica, kubectl) changes the ScheduledJob; this replica's watch has
    not shown it yet."""
    obj = copy.deepcopy(cluster.objects[Kind.SCHEDULED_JOBS][KEY])
    kept = obj["metadata"].setdefault("annotations", {})
    for key, value in new.items():
        if value is None:
            kept.pop(key, None)
        else:
            kept[key] = value
    delivering, cluster.deliver_events = cluster.deliver_events, False
    cluster.put(Kind.SCHEDULED_JOBS, obj)
    cluster.deliver_events = delivering


async def two_replicas(cluster: FakeCluster, start_app: StartApp) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    _, first = await start_app()
    _, second = await start_app()
    cluster.deliver_events = False  # neither replica's cache hears of the other's write
    return first, second


async def test_two_replicas_pausing_at_once_keep_one_pause_whole(cluster: FakeCluster, start_app: StartApp) -> None:
    first, second = await two_replicas(cluster, start_app)
    a, b = await asyncio.gather(
        first.post(f"{BASE}/1/pause", json={"reason": "alice's migration"}, headers=admin("alice")),
        second.post(f"{BASE}/1/pause", json={"reason": "bob's backup"}, headers=admin("bob")),
    )
    answers = sorted([data(a), data(b)], key=lambda answer: not answer["changed"])
    winner, loser = answers
    assert (winner["changed"], loser["changed"]) == (True, False)
    # The one that lost its race answers with the pause that holds, not with its own.
    assert (loser["paused_by"], loser["pause_reason"], loser["paused_at"]) == (
        winner["paused_by"],
        winner["pause_reason"],
        winner["paused_at"],
    )
    stored = stored_annotations(cluster)
    who = stored[c.ANNOTATION_PAUSED_BY]
    assert (who, stored[c.ANNOTATION_PAUSE_REASON]) == (winner["paused_by"], winner["pause_reason"])
    assert stored[c.ANNOTATION_PAUSE_REASON] == {"alice": "alice's migration", "bob": "bob's backup"}[who]
    assert cluster.calls.count("annotate:cache-cleanup") == 1
    assert cluster.calls.count("conflict:cache-cleanup") == 1


async def test_a_pause_that_meets_a_kubectl_pause_keeps_kubectls(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    await asyncio.sleep(0.05)
    cluster.before_annotate = lambda: change_behind_the_cache(
        cluster, **{c.ANNOTATION_PAUSED_BY: "kubectl-carol", c.ANNOTATION_PAUSE_REASON: "incident"}
    )
    answer = data(await client.post(f"{BASE}/1/pause", json={"reason": "mine"}, headers=admin("alice")))
    assert (answer["changed"], answer["paused_by"], answer["pause_reason"]) == (False, "kubectl-carol", "incident")
    assert stored_annotations(cluster)[c.ANNOTATION_PAUSED_BY] == "kubectl-carol"
    assert cluster.calls[-2:] == ["conflict:cache-cleanup", "get:cache-cleanup"]
    # The fresh read also reaches this replica's cache: the detail answers with it at once.
    detail = data(await client.get(f"{BASE}/1", headers=admin("alice")))
    assert (detail["paused"], detail["paused_by"]) == (True, "kubectl-carol")


async def test_an_unrelated_change_in_between_is_decided_again_and_the_pause_lands(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    await asyncio.sleep(0.05)
    cluster.before_annotate = lambda: change_behind_the_cache(cluster, **{"team.example.org/owner": "ops"})
    answer = data(await client.post(f"{BASE}/1/pause", headers=admin("alice")))
    assert (answer["changed"], answer["paused_by"]) == (True, "alice")
    stored = stored_annotations(cluster)
    assert (stored[c.ANNOTATION_PAUSED_BY], stored["team.example.org/owner"]) == ("alice", "ops")
    assert cluster.calls[-3:] == ["conflict:cache-cleanup", "get:cache-cleanup", "annotate:cache-cleanup"]


async def test_two_replicas_resuming_at_once_resume_once(cluster: FakeCluster, start_app: StartApp) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    change_behind_the_cache(
        cluster, **{c.ANNOTATION_PAUSED_BY: "alice", c.ANNOTATION_PAUSED_AT: "2026-01-10T08:00:00Z"}
    )
    _, first = await start_app()
    _, second = await start_app()
    cluster.deliver_events = False
    a, b = await asyncio.gather(
        first.post(f"{BASE}/1/resume", headers=admin("bob")),
        second.post(f"{BASE}/1/resume", headers=admin("dave")),
    )
    assert sorted([data(a)["changed"], data(b)["changed"]]) == [False, True]
    stored = stored_annotations(cluster)
    assert c.ANNOTATION_PAUSED_BY not in stored
    assert stored[c.ANNOTATION_RESUMED_BY] in ("bob", "dave")
    assert cluster.calls.count("annotate:cache-cleanup") == 1


async def test_a_resume_that_meets_a_resume_writes_nothing(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    """Bob's resume was decided on "paused by alice"; meanwhile alice resumed with kubectl. Bob's resume is
    decided again on what the API server has, finds nothing to lift and writes nothing."""
    cluster.seed(scheduled_job("cache-cleanup", 1))
    change_behind_the_cache(cluster, **{c.ANNOTATION_PAUSED_BY: "alice"})
    cluster.deliver_events = True
    cluster.put(Kind.SCHEDULED_JOBS, cluster.objects[Kind.SCHEDULED_JOBS][KEY])
    await asyncio.sleep(0.05)
    cluster.before_annotate = lambda: change_behind_the_cache(
        cluster, **{c.ANNOTATION_PAUSED_BY: None, c.ANNOTATION_RESUMED_BY: "alice"}
    )
    answer = data(await client.post(f"{BASE}/1/resume", headers=admin("bob")))
    assert (answer["changed"], answer["paused"]) == (False, False)  # alice's resume stands; nothing written
    assert stored_annotations(cluster)[c.ANNOTATION_RESUMED_BY] == "alice"


async def test_long_subjects_are_cut_when_pausing_resuming_and_deleting(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    await asyncio.sleep(0.05)
    long_subject = "s" * 300
    paused = data(await client.post(f"{BASE}/1/pause", json={"reason": "r" * REASON}, headers=admin(long_subject)))
    assert paused["paused_by"] == cut(long_subject, SUBJECT) and len(paused["paused_by"]) == SUBJECT
    assert stored_annotations(cluster)[c.ANNOTATION_PAUSED_BY] == cut(long_subject, SUBJECT)
    assert stored_annotations(cluster)[c.ANNOTATION_PAUSE_REASON] == "r" * REASON
    resumed = data(await client.post(f"{BASE}/1/resume", headers=admin(long_subject)))
    assert resumed["changed"] is True
    assert stored_annotations(cluster)[c.ANNOTATION_RESUMED_BY] == cut(long_subject, SUBJECT)
    response = await client.delete(f"{BASE}/1", headers=bearer(token([READ, DELETE], sub=long_subject)))
    assert response.status_code == 200, response.text
    assert cluster.deleted_by == [cut(long_subject, SUBJECT)]


async def test_a_reason_over_the_limit_is_refused_with_the_limit(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("cache-cleanup", 1))
    await asyncio.sleep(0.05)
    response = await client.post(f"{BASE}/1/pause", json={"reason": "r" * (REASON + 1)}, headers=admin("alice"))
    assert response.status_code == 400, response.text
    assert str(REASON) in response.text
    assert c.ANNOTATION_PAUSED_BY not in stored_annotations(cluster)
