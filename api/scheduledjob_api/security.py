"""Bearer JWT verification (PyJWT) and the per-endpoint permission check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scheduledjob_api.errors import FORBIDDEN, ApiError
from scheduledjob_api.jwks import JwksCache, JwksPolicy, JwksUnavailable, UnknownSigningKey
from scheduledjob_api.settings import HMAC_ALGORITHMS, Settings

READ: Final = "admin.scheduled_job.read"
EXECUTE: Final = "admin.scheduled_job.execute"
CANCEL: Final = "admin.scheduled_job.cancel"
DELETE: Final = "admin.scheduled_job.delete"
MANAGE: Final = "admin.scheduled_job.manage"
ALL_PERMISSIONS: Final = (READ, EXECUTE, CANCEL, DELETE, MANAGE)

# The original backend's wording for a request without credentials.
MISSING_CREDENTIALS: Final = "Full authentication is required to access this resource."
NOT_CONFIGURED: Final = "Authentication is not configured on this server"
# Tokens from identity providers are a few KB even with many roles. Anything far bigger is refused
# before it is base64-decoded, JSON-parsed or signature-checked: a forged megabyte costs nothing.
MAX_TOKEN_LENGTH: Final = 16 * 1024


@dataclass(frozen=True)
class Principal:
    subject: str
    permissions: frozenset[str]
    expires_at: float | None = None  # the token's `exp` (Unix time): a stream it opened ends then


class AuthenticationError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class TokenVerifier:
    """Checks a token against an explicit algorithm allowlist; the key is chosen by the algorithm's
    family (HMAC secret vs. public key), so an RS256 key can never be abused as an HS256 secret."""

    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self._settings = settings
        self._algorithms = settings.effective_algorithms()
        self._hmac_secret = settings.hmac_secret()
        self._public_key: Any = _load_public_key(settings.jwt_public_key) if settings.jwt_public_key else None
        self._jwks = jwks
        if self._jwks is None and settings.jwt_jwks_url:
            self._jwks = JwksCache(JwksPolicy.from_settings(settings))

    @property
    def configured(self) -> bool:
        return self._settings.auth_configured and bool(self._algorithms)

    async def verify(self, token: str) -> Principal:
        if not self.configured:
            raise AuthenticationError(NOT_CONFIGURED)
        if len(token) > MAX_TOKEN_LENGTH:
            # Found by tests/unit/api/test_hostile_tokens.py: a validly signed 1 MB token was accepted,
            # and a forged one was decoded in full before its signature failed.
            raise AuthenticationError("Token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("Malformed token") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationError(f"Token algorithm {algorithm!r} is not accepted")
        key = await self._key_for(algorithm, header)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                # An identity provider's clock a little ahead must not refuse its fresh tokens (iat, nbf).
                leeway=settings.jwt_leeway_seconds,
                # Without a configured audience an `aud` in the token is simply not ours to judge.
                options={"require": ["exp"], "verify_aud": settings.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("Token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("Token is not valid yet (iat or nbf in the future)") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"Token has no {exc.claim!r} claim") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("Token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("Token issuer is not accepted") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthenticationError("Invalid token") from exc
        expires = claims.get("exp")
        return Principal(
            subject=_subject(claims),
            permissions=self._permissions(claims),
            expires_at=float(expires) if isinstance(expires, int | float) else None,
        )

    async def _key_for(self, algorithm: str, header: dict[str, Any]) -> Any:
        if algorithm in HMAC_ALGORITHMS:
            if self._hmac_secret is None:
                raise AuthenticationError(f"Token algorithm {algorithm!r} is not accepted")
            return self._hmac_secret
        kid = header.get("kid")
        if self._jwks is not None and (kid or self._public_key is None):
            if kid is not None and not isinstance(kid, str):
                raise AuthenticationError("Malformed token")
            try:
                signing_key = await self._jwks.signing_key(kid)
            except JwksUnavailable as exc:
                raise AuthenticationError("Cannot reach the JWKS endpoint to verify the token", 503) from exc
            except UnknownSigningKey as exc:
                raise AuthenticationError("No matching signing key for the token") from exc
            return signing_key.key
        if self._public_key is None:
            raise AuthenticationError(f"Token algorithm {algorithm!r} is not accepted")
        return self._public_key

    def _permissions(self, claims: dict[str, Any]) -> frozenset[str]:
        settings = self._settings
        granted = set(_strings(_claim(claims, settings.permissions_claim)))
        granted |= set(_strings(claims.get("scope")))
        for role in _strings(_claim(claims, settings.roles_claim)):
            granted |= set(settings.role_permissions.get(role, ()))
        return frozenset(granted)


def _load_public_key(pem: str) -> Any:
    try:
        return load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        # Fail at start-up with the setting's name rather than on every request.
        raise ValueError(f"SCHEDULED_JOBS_JWT_PUBLIC_KEY is not a PEM public key: {exc}") from exc


def _claim(claims: dict[str, Any], name: str) -> Any:
    """A top-level claim, or a dotted path into nested ones (e.g. Keycloak's `realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> Iterable[str]:
    """A list claim, or an OAuth-style space-separated string."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return ()


def _subject(claims: dict[str, Any]) -> str:
    # `id_users` is what SelfHelp's own backend puts in its tokens.
    for name in ("sub", "id_users"):
        value = claims.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    raise AuthenticationError("Token has no subject")


@dataclass(frozen=True)
class AuthResult:
    principal: Principal | None
    error: AuthenticationError | None


async def authenticate(request: Request) -> AuthResult:
    """Verifies the request's bearer token once per request (error handlers ask too, for `logged_in`)."""
    cached = getattr(request.state, "auth", None)
    if isinstance(cached, AuthResult):
        return cached
    result = await _authenticate(request)
    request.state.auth = result
    return result


async def _authenticate(request: Request) -> AuthResult:
    header = request.headers.get("authorization")
    if not header:
        return AuthResult(None, AuthenticationError(MISSING_CREDENTIALS))
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return AuthResult(None, AuthenticationError("Authorization header must be 'Bearer <token>'"))
    verifier: TokenVerifier = request.app.state.verifier
    try:
        return AuthResult(await verifier.verify(token), None)
    except AuthenticationError as exc:
        return AuthResult(None, exc)


def is_logged_in(request: Request) -> bool:
    """Whether a valid token was presented, as far as this request has looked (no new verification)."""
    cached = getattr(request.state, "auth", None)
    return isinstance(cached, AuthResult) and cached.principal is not None


# Declared so OpenAPI shows the bearer scheme; the header is parsed by `authenticate`.
_bearer = HTTPBearer(auto_error=False, description="A JWT carrying the endpoint's permission.")


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """FastAPI dependency: the caller must hold exactly this permission."""

    async def dependency(
        request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        result = await authenticate(request)
        if result.principal is None:
            assert result.error is not None
            headers = {"WWW-Authenticate": "Bearer"} if result.error.status == 401 else None
            raise ApiError(result.error.status, str(result.error), headers=headers)
        if permission not in result.principal.permissions:
            # The original's sentence, and the missing permission where a client can read it.
            raise ApiError(403, FORBIDDEN, data={"required_permission": permission})
        return result.principal

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency
