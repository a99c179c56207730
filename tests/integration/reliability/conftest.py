"""The reliability suites use the admin API process and its client from the API suite's fixtures."""

from __future__ import annotations

from tests.integration.api.conftest import admin, api_process

__all__ = ["admin", "api_process"]
