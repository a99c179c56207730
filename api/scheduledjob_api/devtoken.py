"""`python -m scheduledjob_api.devtoken`: print an HS256 JWT for local development.

Signed with SCHEDULED_JOBS_JWT_SECRET when set, else with the development secret (which the API
accepts only with SCHEDULED_JOBS_DEV_MODE=true).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import jwt

from scheduledjob_api.security import ALL_PERMISSIONS
from scheduledjob_api.settings import DEV_JWT_SECRET, Settings


def make_token(
    settings: Settings, *, subject: str, permissions: Sequence[str], ttl_seconds: int, now: datetime | None = None
) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": subject,
        "iat": issued,
        "exp": issued + timedelta(seconds=ttl_seconds),
        settings.permissions_claim: list(permissions),
    }
    # Match what the API will check, so the token works against it as configured.
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else DEV_JWT_SECRET
    return jwt.encode(claims, secret, algorithm="HS256")


DEV_SUBJECT = "dev-admin"  # `make run` and `make token` alike
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """Seconds from `3600`, `90s`, `30m`, `8h` or `7d`."""
    value = text.strip().lower()
    scale = _UNITS.get(value[-1:], 0)
    number = value[:-1] if scale else value
    if not number.isdigit() or int(number) <= 0:
        raise argparse.ArgumentTypeError(f"TTL must be a positive number of seconds or like 30m, 8h, 7d; got {text!r}")
    return int(number) * (scale or 1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scheduledjob_api.devtoken", description=__doc__)
    parser.add_argument(
        "--permissions",
        default=",".join(ALL_PERMISSIONS),
        help="comma-separated permissions (default: all five admin.scheduled_job.* permissions)",
    )
    parser.add_argument("--subject", default=DEV_SUBJECT, help=f"the token's sub claim (default {DEV_SUBJECT})")
    parser.add_argument(
        "--ttl", "--ttl-seconds", dest="ttl", type=parse_ttl, default=3600, help="lifetime: 3600, 30m, 8h, 7d (1h)"
    )
    args = parser.parse_args(argv)
    permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
    print(make_token(Settings(), subject=args.subject, permissions=permissions, ttl_seconds=args.ttl))


if __name__ == "__main__":
    main()
