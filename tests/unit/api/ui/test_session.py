"""As an admin I log in to the dashboard with my JWT; it stays in a cookie scripts cannot read, and no
other site can act with it: every change needs the page's CSRF token and the permission itself."""

from __future__ import annotations

import httpx
from scheduledjob_api.security import CANCEL, DELETE, EXECUTE, READ

from tests.unit.api.apitestkit import FakeCluster, scheduled_job, token
from tests.unit.api.ui.uikit import csrf_of, log_in, settle


async def test_a_page_without_a_session_sends_me_to_the_login_and_back(client: httpx.AsyncClient) -> None:
    response = await client.get("/ui/jobs/7?page=2")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%2F7%3Fpage%3D2"
    login = await client.post("/ui/login", data={"token": token(), "next": "/ui/jobs/7?page=2"})
    assert (login.status_code, login.headers["location"]) == (303, "/ui/jobs/7?page=2")


async def test_the_session_cookie_is_httponly_samesite_strict_and_scoped_to_the_dashboard(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/ui/login", data={"token": f"Bearer {token()}"})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("scheduled_jobs_session=ey")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=" in cookie  # it ends with the token


async def test_a_bad_token_is_refused_with_the_verifiers_reason_and_no_cookie(client: httpx.AsyncClient) -> None:
    expired = await client.post("/ui/login", data={"token": token(expires_in=-60)})
    assert expired.status_code == 401 and "Token has expired" in expired.text
    forged = await client.post("/ui/login", data={"token": token(secret="another-secret-" + "y" * 64)})
    assert forged.status_code == 401 and "Invalid token" in forged.text
    assert "set-cookie" not in expired.headers and "set-cookie" not in forged.headers


async def test_login_never_redirects_off_the_dashboard(client: httpx.AsyncClient) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/ui/\\evil", "/cms-api/v1/x"):
        response = await client.post("/ui/login", data={"token": token(), "next": target})
        assert response.headers["location"] == "/ui/", target


async def test_a_login_posted_from_another_site_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/ui/login", data={"token": token()}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "set-cookie" not in response.headers
    same = await client.post("/ui/login", data={"token": token()}, headers={"Origin": "http://testserver"})
    assert same.status_code == 303


async def test_a_change_without_the_csrf_token_is_refused_and_nothing_runs(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("report", 1))
    await settle()
    await log_in(client)
    for body in ({}, {"csrf_token": "0" * 64}):
        response = await client.post("/ui/jobs/1/execute", data=body)
        assert response.status_code == 403 and "CSRF token" in response.text
    assert cluster.created == []


async def test_the_csrf_token_belongs_to_one_session(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    cluster.seed(scheduled_job("report", 1))
    await settle()
    await log_in(client, sub="mallory")
    mallorys_token = await csrf_of(client, "/ui/jobs/1")
    await log_in(client, sub="alice")
    response = await client.post("/ui/jobs/1/execute", data={"csrf_token": mallorys_token})
    assert response.status_code == 403 and cluster.created == []


async def test_a_read_only_viewer_sees_the_actions_disabled_with_the_permission_named_and_cannot_post(
    cluster: FakeCluster, client: httpx.AsyncClient
) -> None:
    cluster.seed(scheduled_job("report", 1))
    await settle()
    await log_in(client, [READ])
    page = (await client.get("/ui/jobs/1")).text
    for permission, hint in ((EXECUTE, "need-execute"), (CANCEL, "need-cancel"), (DELETE, "need-delete")):
        assert f'disabled aria-describedby="{hint}"' in page
        assert f'<span class="hint" id="{hint}">Needs {permission}</span>' in page
    csrf = await csrf_of(client, "/ui/jobs/1")
    for action in ("execute", "cancel", "delete"):
        forged = await client.post(f"/ui/jobs/1/{action}", data={"csrf_token": csrf, "confirm": "report"})
        assert forged.status_code == 403, action
        assert "this needs the permission admin.scheduled_job." in forged.text
    assert cluster.created == [] and cluster.cancelled == [] and cluster.deleted == []


async def test_a_token_without_read_gets_no_pages(cluster: FakeCluster, client: httpx.AsyncClient) -> None:
    await log_in(client, [EXECUTE])
    response = await client.get("/ui/")
    assert response.status_code == 403 and f"needs {READ}" in response.text


async def test_logout_needs_the_csrf_token_and_clears_the_cookie(client: httpx.AsyncClient) -> None:
    await log_in(client)
    assert (await client.post("/ui/logout")).status_code == 403
    csrf = await csrf_of(client, "/ui/")
    response = await client.post("/ui/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert 'scheduled_jobs_session=""' in response.headers["set-cookie"]
    assert (await client.get("/ui/")).status_code == 303


async def test_an_expired_session_during_a_refresh_sends_the_page_to_the_login(client: httpx.AsyncClient) -> None:
    shown = {"HX-Request": "true", "HX-Current-URL": "http://testserver/ui/?search=mail"}
    response = await client.get("/ui/fragments/jobs?search=mail", headers=shown)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/ui/login?next=%2Fui%2F%3Fsearch%3Dmail"  # the page, not the fragment
