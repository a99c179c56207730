"""Everything under tests/integration needs a real control plane: mark it so `-m "not integration"` works."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's: filter by path.
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


from tests.integration.fixtures import (  # noqa: E402  (fixtures of the product's own tests)
    archive_url,
    crds,
    log_dir,
    no_session_operator,
    operator,
    operators,
    running_operator,
    scheduled_jobs,
)
from tests.support.postgres import postgres  # noqa: E402
from tests.support.toxiproxy import apiserver_link, database_link, toxiproxy  # noqa: E402

__all__ = [
    "apiserver_link",
    "archive_url",
    "crds",
    "database_link",
    "log_dir",
    "no_session_operator",
    "operator",
    "operators",
    "postgres",
    "running_operator",
    "scheduled_jobs",
    "toxiproxy",
]
