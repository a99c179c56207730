"""The auth matrix: who gets 401, who gets 403, and that each endpoint asks for exactly its permission."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr
from scheduledjob_api.app import create_app
from scheduledjob_api.cluster import Kind
from scheduledjob_api.errors import FORBIDDEN
from scheduledjob_api.security import (
    ALL_PERMISSIONS,
    CANCEL,
    DELETE,
    EXECUTE,
    MISSING_CREDENTIALS,
    NOT_CONFIGURED,
    READ,
    TokenVerifier,
)
from scheduledjob_api.settings import DEV_JWT_SECRET, DevSecretInPodError, Settings

from tests.unit.api.apitestkit import SECRET, FakeCluster, StartApp, bearer, job_of, scheduled_job, token
from tests.unit.api.jwks_server import JwksServer, public_jwk, rsa_key

BASE = "/cms-api/v1/admin/scheduled-jobs"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade_hs256(payload: dict[str, Any], key: bytes) -> str:
    """PyJWT refuses to sign with a PEM as HMAC secret, so the key-confusion token is made by hand."""
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def public_pem(private_key: Any) -> str:
    return str(
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def status_of(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    response = await http.get(BASE, headers=headers)
    body: dict[str, Any] = response.json()
    return response.status_code, body


BAD_CREDENTIALS = {
    "missing": {},
    "garbage": bearer("not-a-jwt"),
    "empty bearer": {"Authorization": "Bearer "},
    "basic scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "wrong signature": bearer(token(secret="another-secret-of-sufficient-length-for-hs256")),
    "expired": bearer(token(expires_in=-120)),  # past the 60 s leeway
    "no exp": bearer(token(expires_in=None)),
    "alg none": bearer(jwt.encode({"sub": "alice", "exp": 9999999999, "permissions": [READ]}, "", algorithm="none")),
    "algorithm not allowed": bearer(token(algorithm="HS512")),
    "no subject": bearer(token(sub=None)),
}


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_bad_credentials_are_401_not_logged_in(client: httpx.AsyncClient, case: str) -> None:
    status, body = await status_of(client, BAD_CREDENTIALS[case])
    assert (status, body["status"], body["logged_in"]) == (401, 401, False)
    assert body["data"] is None


async def test_401_texts(client: httpx.AsyncClient) -> None:
    assert (await status_of(client, {}))[1]["error"] == MISSING_CREDENTIALS
    assert (await status_of(client, BAD_CREDENTIALS["expired"]))[1]["error"] == "Token has expired"
    response = await client.get(BASE)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_issuer_and_audience_are_checked_when_configured(start_app: StartApp) -> None:
    _, http = await start_app(
        Settings(jwt_secret=SecretStr(SECRET), jwt_issuer="https://idp.example", jwt_audience="selfhelp")
    )
    good: dict[str, Any] = {"iss": "https://idp.example", "aud": "selfhelp"}
    assert (await status_of(http, bearer(token(**good))))[0] == 200
    bad_claims: list[dict[str, Any]] = [
        {**good, "aud": "someone-else"},
        {**good, "iss": "https://evil.example"},
        {"iss": "https://idp.example"},
        {"aud": "selfhelp"},
    ]
    for claims in bad_claims:
        status, body = await status_of(http, bearer(token(**claims)))
        assert (status, body["logged_in"]) == (401, False), claims


async def test_audience_in_token_is_ignored_when_none_configured(client: httpx.AsyncClient) -> None:
    assert (await status_of(client, bearer(token(aud="whatever"))))[0] == 200


async def test_valid_token_without_permission_is_403_logged_in(client: httpx.AsyncClient) -> None:
    status, body = await status_of(client, bearer(token([EXECUTE, CANCEL, DELETE])))
    assert (status, body["logged_in"], body["error"]) == (403, True, FORBIDDEN)
    assert body["data"] == {"required_permission": READ}  # the original's sentence, plus what is missing


async def test_403_names_the_permission_of_the_endpoint_asked(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/1/execute", headers=bearer(token([READ])))
    assert (response.status_code, response.json()["data"]) == (403, {"required_permission": EXECUTE})


ENDPOINTS = [
    ("GET", BASE, READ),
    ("GET", f"{BASE}/1", READ),
    ("GET", f"{BASE}/1/transactions", READ),
    ("POST", f"{BASE}/1/execute", EXECUTE),
    ("POST", f"{BASE}/1/cancel", CANCEL),
    ("DELETE", f"{BASE}/1", DELETE),
]


@pytest.mark.parametrize(("method", "path", "permission"), ENDPOINTS)
async def test_each_endpoint_requires_exactly_its_permission(
    cluster: FakeCluster, client: httpx.AsyncClient, method: str, path: str, permission: str
) -> None:
    sj = scheduled_job("cleanup", 1, policy="Allow")
    cluster.seed(sj)
    cluster.put(Kind.JOBS, job_of(sj, "cleanup-running"))  # so cancel has something to cancel
    await asyncio.sleep(0.05)

    others = [p for p in ALL_PERMISSIONS if p != permission]
    denied = await client.request(method, path, headers=bearer(token(others)))
    assert (denied.status_code, denied.json()["logged_in"]) == (403, True)

    allowed = await client.request(method, path, headers=bearer(token([permission])))
    assert allowed.status_code == 200, allowed.json()


async def test_auth_is_checked_before_query_validation(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{BASE}?pageSize=abc")).status_code == 401


async def test_rs256_with_a_pem_public_key(start_app: StartApp) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = public_pem(private)
    _, http = await start_app(Settings(jwt_public_key=pem))
    assert (await status_of(http, bearer(token(secret=private, algorithm="RS256"))))[0] == 200

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert (await status_of(http, bearer(token(secret=stranger, algorithm="RS256"))))[0] == 401
    # The classic key-confusion attack: HS256 "signed" with the public key as the secret.
    forged = handmade_hs256({"sub": "mallory", "exp": 9999999999, "permissions": [READ]}, pem.encode())
    status, body = await status_of(http, bearer(forged))
    assert (status, body["logged_in"]) == (401, False)


async def test_es256_with_a_pem_public_key(start_app: StartApp) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    _, http = await start_app(Settings(jwt_public_key=public_pem(private)))
    assert (await status_of(http, bearer(token(secret=private, algorithm="ES256"))))[0] == 200


async def test_permissions_from_a_scope_string(client: httpx.AsyncClient) -> None:
    headers = bearer(token(None, scope=f"openid {READ} profile"))
    assert (await status_of(client, headers))[0] == 200
    assert (await status_of(client, bearer(token(None, scope="openid profile"))))[0] == 403


async def test_permissions_from_roles(start_app: StartApp) -> None:
    _, http = await start_app(Settings(jwt_secret=SecretStr(SECRET), role_permissions={"scheduler-admin": [READ]}))
    assert (await status_of(http, bearer(token(None, roles=["viewer", "scheduler-admin"]))))[0] == 200
    assert (await status_of(http, bearer(token(None, roles=["viewer"]))))[0] == 403


async def test_permissions_claim_may_be_a_nested_path(start_app: StartApp) -> None:
    _, http = await start_app(Settings(jwt_secret=SecretStr(SECRET), permissions_claim="realm_access.roles"))
    assert (await status_of(http, bearer(token(None, realm_access={"roles": [READ]}))))[0] == 200
    assert (await status_of(http, bearer(token([READ]))))[0] == 403  # the default claim is not read


async def test_dev_secret_is_refused_unless_dev_mode(start_app: StartApp) -> None:
    dev_token = bearer(token(secret=DEV_JWT_SECRET))

    _, default = await start_app(Settings())
    status, body = await status_of(default, dev_token)
    assert (status, body["error"]) == (401, NOT_CONFIGURED)

    _, dev = await start_app(Settings(dev_mode=True))
    assert (await status_of(dev, dev_token))[0] == 200

    _, dev_with_secret = await start_app(Settings(dev_mode=True, jwt_secret=SecretStr(SECRET)))
    assert (await status_of(dev_with_secret, dev_token))[0] == 401
    assert (await status_of(dev_with_secret, bearer(token())))[0] == 200


async def test_unconfigured_auth_refuses_unsigned_tokens(start_app: StartApp) -> None:
    _, http = await start_app(Settings())
    unsigned = jwt.encode({"sub": "alice", "exp": 9999999999, "permissions": [READ]}, "", algorithm="none")
    status, body = await status_of(http, bearer(unsigned))
    assert (status, body["error"]) == (401, NOT_CONFIGURED)


# --- clock skew: an identity provider whose clock runs a little ahead (or behind) ----------------------------------


async def test_a_token_issued_30_s_in_the_future_is_accepted_5_min_is_not(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    assert (await status_of(client, bearer(token(iat=now + 30))))[0] == 200
    status, body = await status_of(client, bearer(token(iat=now + 300)))
    assert (status, body["error"]) == (401, "Token is not valid yet (iat or nbf in the future)")


async def test_nbf_and_exp_get_the_same_leeway(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    assert (await status_of(client, bearer(token(nbf=now + 30))))[0] == 200
    assert (await status_of(client, bearer(token(nbf=now + 300))))[0] == 401
    assert (await status_of(client, bearer(token(iat=now - 3600, expires_in=-30))))[0] == 200
    status, body = await status_of(client, bearer(token(iat=now - 3600, expires_in=-120)))
    assert (status, body["error"]) == (401, "Token has expired")


async def test_the_leeway_is_configurable(start_app: StartApp) -> None:
    now = int(time.time())
    _, strict = await start_app(Settings(jwt_secret=SecretStr(SECRET), jwt_leeway_seconds=0))
    assert (await status_of(strict, bearer(token(iat=now + 30))))[0] == 401
    _, lenient = await start_app(Settings(jwt_secret=SecretStr(SECRET), jwt_leeway_seconds=600))
    assert (await status_of(lenient, bearer(token(iat=now + 300))))[0] == 200


# --- JWKS, end to end through the app and a real identity provider endpoint --------------------------------------


def rs256(private_key: Any, kid: str, sub: str = "alice") -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600, "permissions": [READ]}
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})


async def test_jwks_keys_are_chosen_by_kid(start_app: StartApp) -> None:
    private, other = rsa_key(), rsa_key()
    async with JwksServer.running([public_jwk(private, "key-1"), public_jwk(other, "key-2")]) as idp:
        _, http = await start_app(Settings(jwt_jwks_url=idp.url))
        good = bearer(rs256(private, "key-1", sub="bob"))
        assert (await status_of(http, good))[0] == 200
        swapped = bearer(rs256(private, "key-2"))
        assert (await status_of(http, swapped))[0] == 401
        unknown = bearer(rs256(private, "key-3"))
        status, body = await status_of(http, unknown)
        assert (status, body["error"]) == (401, "No matching signing key for the token")


async def test_unreachable_jwks_is_503(start_app: StartApp) -> None:
    private = rsa_key()
    async with JwksServer.running([public_jwk(private, "k")]) as idp:
        await idp.down()
        _, http = await start_app(Settings(jwt_jwks_url=idp.url))
        status, body = await status_of(http, bearer(rs256(private, "k")))
    assert (status, body["status"], body["logged_in"]) == (503, 503, False)
    assert body["error"] == "Cannot reach the JWKS endpoint to verify the token"


# --- the development secret never inside a Pod --------------------------------------------------------------------


def test_the_dev_secret_in_a_pod_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    with pytest.raises(DevSecretInPodError, match="runs in a Pod"):
        create_app(Settings(dev_mode=True), FakeCluster())
    # A real secret (or key) configured: dev mode no longer means the public secret, so the app starts.
    create_app(Settings(dev_mode=True, jwt_secret=SecretStr(SECRET)), FakeCluster())


async def test_the_dev_secret_in_a_pod_only_when_forced(monkeypatch: pytest.MonkeyPatch, start_app: StartApp) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("SCHEDULED_JOBS_DEV_MODE_FORCE_IN_POD", "true")
    _, http = await start_app(Settings(dev_mode=True))
    assert (await status_of(http, bearer(token(secret=DEV_JWT_SECRET))))[0] == 200


async def test_subject_falls_back_to_selfhelp_id_users() -> None:
    verifier = TokenVerifier(Settings(jwt_secret=SecretStr(SECRET)))
    principal = await verifier.verify(token([READ], sub=None, id_users=42))
    assert principal.subject == "42"
