"""Where the archive lives and how long it keeps what, from `SCHEDULED_JOBS_ARCHIVE_*` variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

STATE_DIR_VARIABLE: Final = "SCHEDULED_JOBS_STATE_DIR"


def default_url(state_dir: Path | None = None) -> str:
    """The embedded default: a SQLite file in the state directory (`SCHEDULED_JOBS_STATE_DIR`, else
    the working directory)."""
    directory = state_dir or Path(os.environ.get(STATE_DIR_VARIABLE) or ".")
    return f"sqlite+aiosqlite:///{directory.resolve() / 'archive.sqlite'}"


class ArchiveSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDULED_JOBS_ARCHIVE_", extra="ignore")

    url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://user:pw@host/db. "
        "Empty: a SQLite file in SCHEDULED_JOBS_STATE_DIR.",
    )
    password_file: Path | None = Field(
        default=None,
        description="A file holding the database password (e.g. a mounted Secret), put into the URL when the "
        "connection is opened; keeps the password out of environment variables. Read again at each open.",
    )
    retention_days: float = Field(default=90, gt=0, description="Rows older than this (by started_at) go.")
    retention_per_job: int = Field(default=10_000, ge=1, description="Newest rows kept per ScheduledJob id.")
    logs_retention_days: float = Field(default=30, gt=0, description="Captured logs older than this go.")
    prune_batch: int = Field(default=1000, ge=1, le=100_000, description="Rows deleted per statement.")
    prune_interval_seconds: float = Field(default=3600, gt=0, description="Between prunes (the first at start).")
    count_cap: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="A listing's totalCount is exact up to this many records, then reported as more than it "
        "(an exact count over millions of rows costs more than the page).",
    )
    timeout_seconds: float = Field(default=10, gt=0, le=300, description="Deadline of one archive call.")

    def resolved_url(self) -> str:
        url = self.url.get_secret_value() if self.url else default_url()
        if self.password_file is None:
            return url
        # A missing file raises: the operator's startup is retried until the kubelet has mounted it.
        password = self.password_file.read_text().rstrip("\r\n")
        return make_url(url).set(password=password).render_as_string(hide_password=False)
