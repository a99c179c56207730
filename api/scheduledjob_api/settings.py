"""Configuration of the admin API, read from `SCHEDULED_JOBS_*` environment variables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Well known on purpose: tokens signed with it are only accepted when `dev_mode` is switched on and no
# real key is configured, so a forgotten setting can never turn it into a production credential.
DEV_JWT_SECRET: Final = "selfhelp-scheduled-jobs-development-secret-do-not-use-in-production"

# Set by the kubelet in every container of a Pod: the development secret is refused there.
IN_POD_VARIABLE: Final = "KUBERNETES_SERVICE_HOST"
DEV_MODE_FORCE_IN_POD_VARIABLE: Final = "SCHEDULED_JOBS_DEV_MODE_FORCE_IN_POD"

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _comma_list(value: Any) -> Any:
    """Environment variables carry lists as `a,b` (or JSON); Python callers pass real lists."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class DevSecretInPodError(ValueError):
    """The development secret was about to be accepted inside a Pod."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULED_JOBS_", extra="ignore")

    jwt_secret: SecretStr | None = Field(default=None, description="Shared secret for HS256 tokens.")
    jwt_public_key: str | None = Field(default=None, description="PEM public key for RS256/ES256 tokens.")
    jwt_jwks_url: str | None = Field(default=None, description="JWKS endpoint for RS256/ES256 tokens.")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted algorithms; empty = HS256 with a secret, RS256+ES256 with a key or JWKS.",
    )
    jwt_leeway_seconds: int = Field(
        default=60, ge=0, le=600, description="Clock skew tolerated on exp, nbf and iat (an IdP's clock ahead)."
    )
    jwt_jwks_cache_seconds: float = Field(
        default=300, gt=0, le=86400, description="How long fetched JWKS keys are used before they are fetched again."
    )
    jwt_jwks_stale_seconds: float = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="While the JWKS endpoint fails, keys already fetched keep verifying this long past their refresh.",
    )
    jwt_jwks_cooldown_seconds: float = Field(
        default=30,
        ge=0,
        le=3600,
        description="At most one JWKS fetch per this interval for unknown kids (rotation) and after a failed fetch.",
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    permissions_claim: str = "permissions"
    roles_claim: str = "roles"
    role_permissions: dict[str, list[str]] = Field(default_factory=dict)
    dev_mode: bool = False
    dev_mode_force_in_pod: bool = Field(
        default=False, description="Accept the development secret even inside a Pod (never in production)."
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to serve; empty = all namespaces."
    )
    # Behind a TLS-terminating proxy (an ingress controller): the proxies whose X-Forwarded-Proto/-For headers
    # are believed, so the dashboard sees https (its login's Origin check passes, its cookie is Secure) and the
    # client's address. Comma-separated IPs or CIDRs, or "*" (any peer: only where nothing but the proxy can
    # reach the API, e.g. a NetworkPolicy admits the ingress alone). The proxy must pass the Host header on.
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Proxies trusted for X-Forwarded-Proto and X-Forwarded-For (uvicorn's forwarded_allow_ips).",
    )
    request_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    # `logs?follow=true` ends after this long without output (the run may still be going).
    log_follow_idle_seconds: float = Field(default=60.0, gt=0, le=3600)
    execute_decision_seconds: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="How long execute waits for the operator's decision; then 503 and the request expires.",
    )
    # The event stream's comment heartbeat (`: ping`): well under the read timeouts of proxies in front of the
    # API (nginx's proxy_read_timeout is 60 s by default), so a quiet stream is never cut as idle.
    stream_heartbeat_seconds: float = Field(
        default=15.0, gt=0, le=300, description="Seconds without an event after which the stream sends `: ping`."
    )

    @field_validator("jwt_algorithms", "namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        unknown = [alg for alg in value if alg not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
        if unknown:
            # "none" lands here too: unsigned tokens are never an option.
            raise ValueError(f"unsupported JWT algorithms: {', '.join(unknown)}")
        return value

    @property
    def uses_dev_secret(self) -> bool:
        return self.dev_mode and self.jwt_secret is None and not self.has_public_keys

    def refuse_dev_secret_in_pod(self, environ: Mapping[str, str]) -> None:
        """Raises when the public development secret would be accepted inside a Pod, unless forced."""
        if self.uses_dev_secret and environ.get(IN_POD_VARIABLE) and not self.dev_mode_force_in_pod:
            raise DevSecretInPodError(
                "refusing to start: SCHEDULED_JOBS_DEV_MODE=true would accept tokens signed with the public "
                f"development secret, and this process runs in a Pod ({IN_POD_VARIABLE} is set). Configure "
                "SCHEDULED_JOBS_JWT_SECRET, SCHEDULED_JOBS_JWT_PUBLIC_KEY or SCHEDULED_JOBS_JWT_JWKS_URL, or set "
                f"{DEV_MODE_FORCE_IN_POD_VARIABLE}=true for a throw-away cluster."
            )

    @property
    def has_public_keys(self) -> bool:
        return bool(self.jwt_public_key or self.jwt_jwks_url)

    def hmac_secret(self) -> str | None:
        """The secret HS* tokens are checked with, or None when HMAC tokens are not accepted."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEV_JWT_SECRET if self.uses_dev_secret else None

    @property
    def auth_configured(self) -> bool:
        return self.hmac_secret() is not None or self.has_public_keys

    def effective_algorithms(self) -> frozenset[str]:
        if self.jwt_algorithms:
            return frozenset(self.jwt_algorithms)
        algorithms: set[str] = set()
        if self.hmac_secret() is not None:
            algorithms.add("HS256")
        if self.has_public_keys:
            algorithms |= {"RS256", "ES256"}
        return frozenset(algorithms)
