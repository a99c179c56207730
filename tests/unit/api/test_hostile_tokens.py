"""As an operator of the API I know that no forged, stale, malformed or confused token gets in.

Every hostile token below is rejected on a read and on a write with the 401 envelope (`status` 401,
`logged_in` false, `error` a string) and starts no Job. Three servers are attacked: one with a shared
secret, one with an RSA public key and a JWKS endpoint, and one with only the RSA key but HS256 wrongly
left in its algorithm list (the setting key-confusion attacks hope for). Each also accepts a good
token, so the rejections are not vacuous.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr
from scheduledjob_api.security import ALL_PERMISSIONS, MAX_TOKEN_LENGTH
from scheduledjob_api.settings import Settings

from tests.unit.api.apitestkit import SECRET, FakeCluster, StartApp, scheduled_job
from tests.unit.api.jwks_server import JwksServer

BASE = "/cms-api/v1/admin/scheduled-jobs"
ISSUER = "https://idp.selfhelp.example"
AUDIENCE = "selfhelp-admin"
KID = "idp-key-1"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
STRANGER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
RSA_PUBLIC_DER = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
RSA_JWK: dict[str, Any] = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())), "kid": KID}
STRANGER_JWK: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(STRANGER_RSA_KEY.public_key()))


class Server(Enum):
    SECRET = "shared secret"
    RSA_AND_JWKS = "RSA public key + JWKS"
    RSA_WITH_HS256_ALLOWED = "RSA public key, HS256 wrongly allowed"


def settings_for(server: Server, jwks_url: str) -> Settings:
    checks: dict[str, Any] = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    if server is Server.SECRET:
        return Settings(jwt_secret=SecretStr(SECRET), **checks)
    if server is Server.RSA_AND_JWKS:
        return Settings(jwt_public_key=RSA_PUBLIC_PEM, jwt_jwks_url=jwks_url, **checks)
    return Settings(jwt_public_key=RSA_PUBLIC_PEM, jwt_algorithms=["RS256", "HS256"], **checks)


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    """The identity provider's JWKS endpoint (real HTTP on 127.0.0.1): it publishes only the real key."""
    async with JwksServer.running([RSA_JWK]) as server:
        yield server


# ---- token makers ------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """Good claims (alice, every permission, our issuer and audience, valid for an hour), changed as
    told; a value of None removes the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "permissions": list(ALL_PERMISSIONS),
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def hs256(payload: dict[str, Any] | None = None, key: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload if payload is not None else claims(), key, algorithm="HS256", headers=headers or None)


def rs256(payload: dict[str, Any] | None = None, key: Any = RSA_KEY, **headers: Any) -> str:
    return jwt.encode(payload if payload is not None else claims(), key, algorithm="RS256", headers=headers or None)


def signed_raw(payload: bytes, key: str = SECRET) -> str:
    """HS256 over arbitrary payload bytes (non-JSON, a JSON list, claims PyJWT refuses to encode)."""
    return jwt.api_jws.encode(payload, key, algorithm="HS256")


def handmade(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token assembled by hand: HMAC-SHA256 with any bytes as key (PyJWT refuses a PEM), or unsigned."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest() if hmac_key is not None else b""
    return f"{signing_input}.{_b64(signature)}"


def tampered_payload(token: str, **changes: Any) -> str:
    """The token's signature kept, its claims changed (a privilege escalation attempt)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{_b64(json.dumps({**decoded, **changes}).encode())}.{signature}"


def flipped_signature(token: str) -> str:
    head, _, signature = token.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{_b64(bytes(raw))}"


def oversized() -> str:
    """About 1 MB, validly signed with the real secret: size alone must be enough to refuse it."""
    return hs256(claims(padding="A" * 1_000_000))


@dataclass(frozen=True)
class Hostile:
    name: str
    server: Server
    make: Callable[[], str]


UNSIGNED = {"alg": "none", "typ": "JWT"}

HOSTILE_TOKENS: list[Hostile] = [
    # -- signatures
    Hostile("forged: signed with another secret", Server.SECRET, lambda: hs256(key="not-the-secret-" + "y" * 40)),
    Hostile("forged: signed by a stranger's RSA key", Server.RSA_AND_JWKS, lambda: rs256(key=STRANGER_RSA_KEY)),
    Hostile("forged: one bit of the signature flipped", Server.SECRET, lambda: flipped_signature(hs256())),
    Hostile("forged: RS256 signature with a bit flipped", Server.RSA_AND_JWKS, lambda: flipped_signature(rs256())),
    Hostile(
        "tampered: claims changed, signature kept",
        Server.SECRET,
        lambda: tampered_payload(hs256(claims(permissions=[])), permissions=list(ALL_PERMISSIONS)),
    ),
    Hostile("tampered: subject swapped", Server.RSA_AND_JWKS, lambda: tampered_payload(rs256(), sub="root")),
    Hostile("signature stripped", Server.SECRET, lambda: hs256().rpartition(".")[0] + "."),
    Hostile(
        "ES256 signed by a stranger's EC key",
        Server.RSA_AND_JWKS,
        lambda: jwt.encode(claims(), STRANGER_EC_KEY, "ES256"),
    ),
    Hostile(
        "HS512 with the right secret but not allowed", Server.SECRET, lambda: jwt.encode(claims(), SECRET, "HS512")
    ),
    # -- alg: none
    Hostile("alg none, empty signature", Server.SECRET, lambda: handmade(UNSIGNED, claims(), None)),
    Hostile("alg None (capitalised)", Server.SECRET, lambda: handmade({"alg": "None"}, claims(), None)),
    Hostile("alg NONE with a signature kept", Server.SECRET, lambda: handmade({"alg": "NONE"}, claims(), b"x")),
    Hostile("alg none against the RSA server", Server.RSA_AND_JWKS, lambda: handmade(UNSIGNED, claims(), None)),
    Hostile("alg header missing", Server.SECRET, lambda: handmade({"typ": "JWT"}, claims(), SECRET.encode())),
    # -- HS/RS key confusion
    Hostile(
        "key confusion: HS256 keyed with the RSA public key PEM",
        Server.RSA_WITH_HS256_ALLOWED,
        lambda: handmade({"alg": "HS256", "typ": "JWT"}, claims(), RSA_PUBLIC_PEM.encode()),
    ),
    Hostile(
        "key confusion: HS256 keyed with the RSA public key DER",
        Server.RSA_WITH_HS256_ALLOWED,
        lambda: handmade({"alg": "HS256", "typ": "JWT"}, claims(), RSA_PUBLIC_DER),
    ),
    Hostile(
        "key confusion: HS256 keyed with the PEM at the JWKS server",
        Server.RSA_AND_JWKS,
        lambda: handmade({"alg": "HS256", "typ": "JWT", "kid": KID}, claims(), RSA_PUBLIC_PEM.encode()),
    ),
    Hostile(
        "key confusion: HS256 keyed with the PEM at the secret server",
        Server.SECRET,
        lambda: handmade({"alg": "HS256", "typ": "JWT"}, claims(), RSA_PUBLIC_PEM.encode()),
    ),
    # -- time
    Hostile("expired an hour ago", Server.SECRET, lambda: hs256(claims(exp=int(time.time()) - 3600))),
    # 60 s of clock skew are forgiven (exp, nbf, iat); just past that is not.
    Hostile("expired 70 s ago", Server.RSA_AND_JWKS, lambda: rs256(claims(exp=int(time.time()) - 70))),
    Hostile("nbf an hour in the future", Server.SECRET, lambda: hs256(claims(nbf=int(time.time()) + 3600))),
    Hostile("nbf 70 s in the future", Server.RSA_AND_JWKS, lambda: rs256(claims(nbf=int(time.time()) + 70))),
    Hostile("iat an hour in the future", Server.SECRET, lambda: hs256(claims(iat=int(time.time()) + 3600))),
    Hostile("iat 5 minutes in the future", Server.SECRET, lambda: hs256(claims(iat=int(time.time()) + 300))),
    Hostile("missing exp", Server.SECRET, lambda: hs256(claims(exp=None))),
    Hostile("missing exp (RSA)", Server.RSA_AND_JWKS, lambda: rs256(claims(exp=None))),
    # -- issuer and audience
    Hostile("wrong iss", Server.SECRET, lambda: hs256(claims(iss="https://evil.example"))),
    Hostile("missing iss", Server.RSA_AND_JWKS, lambda: rs256(claims(iss=None))),
    Hostile("iss a list holding ours", Server.SECRET, lambda: signed_raw(json.dumps(claims(iss=[ISSUER])).encode())),
    Hostile("wrong aud", Server.SECRET, lambda: hs256(claims(aud="another-app"))),
    Hostile("aud list without ours", Server.RSA_AND_JWKS, lambda: rs256(claims(aud=["a", "b"]))),
    Hostile("missing aud", Server.SECRET, lambda: hs256(claims(aud=None))),
    Hostile("aud a number", Server.SECRET, lambda: hs256(claims(aud=42))),
    # -- claims of the wrong type or missing
    Hostile("missing sub", Server.SECRET, lambda: hs256(claims(sub=None))),
    Hostile("empty sub", Server.SECRET, lambda: hs256(claims(sub=""))),
    Hostile("sub a boolean", Server.SECRET, lambda: hs256(claims(sub=True))),
    Hostile("sub an object", Server.RSA_AND_JWKS, lambda: rs256(claims(sub={"id": 1}))),
    Hostile("exp a string", Server.SECRET, lambda: hs256(claims(exp="tomorrow"))),
    Hostile("nbf a string", Server.SECRET, lambda: hs256(claims(nbf="now"))),
    Hostile("iat a string", Server.SECRET, lambda: hs256(claims(iat="today"))),
    # -- malformed
    Hostile("payload not JSON", Server.SECRET, lambda: signed_raw(b"\x00\xffnot json at all")),
    Hostile("payload a JSON list", Server.SECRET, lambda: signed_raw(b'["alice", "admin"]')),
    Hostile("payload a JSON string", Server.SECRET, lambda: signed_raw(b'"alice"')),
    Hostile("header not JSON", Server.SECRET, lambda: f"{_b64(b'{alg:HS256')}.{hs256().split('.', 1)[1]}"),
    Hostile("header not base64", Server.SECRET, lambda: "%%%." + hs256().split(".", 1)[1]),
    Hostile("truncated: two segments", Server.SECRET, lambda: hs256().rpartition(".")[0]),
    Hostile("truncated mid-signature", Server.SECRET, lambda: hs256()[:-12]),
    Hostile("truncated: header only", Server.SECRET, lambda: hs256().split(".")[0]),
    Hostile("extra segment", Server.SECRET, lambda: hs256() + "." + _b64(b"more")),
    Hostile("five segments (JWE shape)", Server.SECRET, lambda: ".".join([hs256()] + ["AAAA"] * 2)),
    Hostile("only dots", Server.SECRET, lambda: ".."),
    Hostile("oversized: 1 MB, validly signed", Server.SECRET, oversized),
    Hostile("oversized: 1 MB of junk", Server.RSA_AND_JWKS, lambda: "eyJ" + "A" * 1_000_000),
    Hostile("critical header extension we do not know", Server.SECRET, lambda: hs256(crit=["exp"], exp=1)),
    # -- header injection and JWKS
    Hostile("kid path traversal", Server.RSA_AND_JWKS, lambda: rs256(key=STRANGER_RSA_KEY, kid="../../../../dev/null")),
    Hostile("kid SQL injection", Server.RSA_AND_JWKS, lambda: rs256(key=STRANGER_RSA_KEY, kid="x' OR '1'='1")),
    Hostile(
        "kid naming /dev/null, HS256 keyed with nothing",
        Server.SECRET,
        lambda: handmade({"alg": "HS256", "kid": "/dev/null"}, claims(), b""),
    ),
    Hostile("JWKS: validly signed, unknown kid", Server.RSA_AND_JWKS, lambda: rs256(kid="idp-key-rotated-away")),
    Hostile("JWKS: stranger's key under our kid", Server.RSA_AND_JWKS, lambda: rs256(key=STRANGER_RSA_KEY, kid=KID)),
    Hostile(
        "embedded jwk header with the attacker's key",
        Server.RSA_AND_JWKS,
        lambda: rs256(key=STRANGER_RSA_KEY, jwk=STRANGER_JWK),
    ),
    Hostile(
        "jku header pointing at the attacker's key set",
        Server.RSA_AND_JWKS,
        lambda: rs256(key=STRANGER_RSA_KEY, jku="https://evil.example/jwks.json", kid="evil"),
    ),
]


@pytest.fixture
async def servers(cluster: FakeCluster, start_app: StartApp, idp: JwksServer) -> dict[Server, httpx.AsyncClient]:
    """The three servers, each over the same cluster holding one runnable job (id 1)."""
    cluster.seed(scheduled_job("nightly-report", 1, policy="Allow"))
    clients = {}
    for server in Server:
        _, http = await start_app(settings_for(server, idp.url))
        clients[server] = http
    return clients


def assert_401_envelope(response: httpx.Response) -> None:
    body = response.json()
    assert response.status_code == 401, body
    assert body["status"] == 401 and body["message"] == "Unauthorized"
    assert body["logged_in"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert body["data"] is None
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_catalogue_holds_at_least_25_distinct_hostile_tokens() -> None:
    names = [hostile.name for hostile in HOSTILE_TOKENS]
    assert len(set(names)) == len(names) >= 25
    assert len({hostile.make() for hostile in HOSTILE_TOKENS if "oversized" not in hostile.name}) >= 25


@pytest.mark.parametrize("server", list(Server), ids=lambda server: server.name.lower())
async def test_each_server_accepts_a_good_token(servers: dict[Server, httpx.AsyncClient], server: Server) -> None:
    token = {Server.SECRET: hs256(), Server.RSA_AND_JWKS: rs256(kid=KID), Server.RSA_WITH_HS256_ALLOWED: rs256()}[
        server
    ]
    response = await servers[server].get(BASE, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.json()
    assert response.json()["logged_in"] is True


@pytest.mark.parametrize("hostile", HOSTILE_TOKENS, ids=lambda hostile: hostile.name)
async def test_a_hostile_token_is_refused_with_the_401_envelope(
    servers: dict[Server, httpx.AsyncClient], cluster: FakeCluster, hostile: Hostile
) -> None:
    http = servers[hostile.server]
    headers = {"Authorization": f"Bearer {hostile.make()}"}
    assert_401_envelope(await http.get(BASE, headers=headers))
    assert_401_envelope(await http.post(f"{BASE}/1/execute", headers=headers))
    assert cluster.created == [], "a hostile token started a Job"


def test_the_size_cap_leaves_room_for_real_tokens() -> None:
    """An identity provider's token with many roles is a few KB; the cap is well above that."""
    realistic = hs256(claims(roles=[f"role-{n:03d}" for n in range(200)], permissions=list(ALL_PERMISSIONS) * 10))
    assert len(realistic) < MAX_TOKEN_LENGTH
