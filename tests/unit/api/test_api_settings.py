"""Settings from the environment, and the development token printer."""

from __future__ import annotations

import os
import subprocess
import sys

import jwt
import pytest
from pydantic import SecretStr, ValidationError
from scheduledjob_api import devtoken
from scheduledjob_api.security import ALL_PERMISSIONS, READ
from scheduledjob_api.settings import DEV_JWT_SECRET, Settings


def test_environment_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULED_JOBS_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_ALGORITHMS", "RS256,ES256")
    monkeypatch.setenv("SCHEDULED_JOBS_ROLE_PERMISSIONS", '{"admin": ["admin.scheduled_job.read"]}')
    monkeypatch.setenv("SCHEDULED_JOBS_DEV_MODE", "true")
    settings = Settings()
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.effective_algorithms() == {"RS256", "ES256"}
    assert settings.role_permissions == {"admin": [READ]}
    assert settings.dev_mode is True


@pytest.mark.parametrize("algorithms", ["none", "HS256,none", "XYZ"])
def test_unknown_or_none_algorithms_are_refused(monkeypatch: pytest.MonkeyPatch, algorithms: str) -> None:
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_ALGORITHMS", algorithms)
    with pytest.raises(ValidationError):
        Settings()


def test_default_algorithms_follow_the_configured_keys() -> None:
    assert Settings(jwt_secret=SecretStr("s")).effective_algorithms() == {"HS256"}
    assert Settings(jwt_jwks_url="https://idp/jwks").effective_algorithms() == {"RS256", "ES256"}
    assert Settings().effective_algorithms() == set()
    assert Settings(dev_mode=True).effective_algorithms() == {"HS256"}


def test_dev_secret_only_in_dev_mode_without_real_keys() -> None:
    assert Settings().hmac_secret() is None
    assert Settings(dev_mode=True).hmac_secret() == DEV_JWT_SECRET
    assert Settings(dev_mode=True, jwt_secret=SecretStr("real")).hmac_secret() == "real"
    assert Settings(dev_mode=True, jwt_jwks_url="https://idp/jwks").hmac_secret() is None


def test_devtoken_defaults_to_all_permissions_and_the_dev_secret(capsys: pytest.CaptureFixture[str]) -> None:
    devtoken.main([])
    claims = jwt.decode(capsys.readouterr().out.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["permissions"] == list(ALL_PERMISSIONS)
    assert claims["sub"] == "dev-admin"
    assert claims["exp"] - claims["iat"] == 3600


def test_devtoken_narrows_permissions_and_uses_the_configured_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_SECRET", "configured-secret-" + "y" * 40)
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_AUDIENCE", "selfhelp")
    devtoken.main(
        ["--permissions", f"{READ}, admin.scheduled_job.execute", "--subject", "carol", "--ttl-seconds", "60"]
    )
    claims = jwt.decode(
        capsys.readouterr().out.strip(), "configured-secret-" + "y" * 40, algorithms=["HS256"], audience="selfhelp"
    )
    assert claims["permissions"] == [READ, "admin.scheduled_job.execute"]
    assert claims["sub"] == "carol"
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("ttl", ["0", "-5", "soon", "10w", ""])
def test_devtoken_refuses_a_ttl_that_is_not_a_positive_duration(ttl: str) -> None:
    with pytest.raises(SystemExit):
        devtoken.main(["--ttl", ttl])


@pytest.mark.parametrize(("ttl", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("8h", 28800), ("7d", 604800)])
def test_make_token_ttl_takes_seconds_or_a_duration(ttl: str, seconds: int, capsys: pytest.CaptureFixture[str]) -> None:
    devtoken.main(["--ttl", ttl, "--subject", "ops-oncall"])
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("ops-oncall", seconds)


def test_main_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    from scheduledjob_api.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "--port" in capsys.readouterr().out


def test_a_broken_public_key_fails_at_start_naming_the_setting() -> None:
    from scheduledjob_api.security import TokenVerifier

    with pytest.raises(ValueError, match="SCHEDULED_JOBS_JWT_PUBLIC_KEY"):
        TokenVerifier(Settings(jwt_public_key="not a key"))


def test_the_api_refuses_to_start_in_a_pod_with_the_dev_secret() -> None:
    """`python -m scheduledjob_api` as a Pod would run it (KUBERNETES_SERVICE_HOST set by the kubelet)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join(sys.path),
        "KUBERNETES_SERVICE_HOST": "10.96.0.1",
        "SCHEDULED_JOBS_DEV_MODE": "true",
    }
    started = subprocess.run(
        [sys.executable, "-m", "scheduledjob_api", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 2, started.stderr
    assert "refusing to start" in started.stderr and "SCHEDULED_JOBS_DEV_MODE_FORCE_IN_POD" in started.stderr


def test_jwt_time_and_jwks_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_LEEWAY_SECONDS", "30")
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_JWKS_STALE_SECONDS", "7200")
    monkeypatch.setenv("SCHEDULED_JOBS_DEV_MODE_FORCE_IN_POD", "true")
    settings = Settings()
    assert (settings.jwt_leeway_seconds, settings.jwt_jwks_stale_seconds) == (30, 7200)
    assert settings.dev_mode_force_in_pod is True
    assert (Settings().jwt_jwks_cache_seconds, Settings().jwt_jwks_cooldown_seconds) == (300, 30)
    monkeypatch.setenv("SCHEDULED_JOBS_JWT_LEEWAY_SECONDS", "-1")
    with pytest.raises(ValidationError):
        Settings()
