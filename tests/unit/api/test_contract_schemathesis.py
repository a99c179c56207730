"""As a client generating code from the OpenAPI document, Schemathesis with every one of its checks and
every phase (examples, coverage, fuzzing, stateful) finds no mismatch between the document and what
the server does (issue 21: `page` with `cursor` refused though both are valid, a 400 for a long
execution id the document did not list, `Allow` advertising DELETE on `/transactions`, and then
any cursor not made by the API refused though the document allowed every string).

The run is the one `st run --checks all` makes, in-process over ASGI against the app on the in-memory
cluster with seeded jobs and an archive (tests/unit/api/test_fuzz_openapi.py seeds them), with a
full-rights token, so it fits a unit-test budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from pydantic import SecretStr
from scheduledjob_api.app import create_app
from scheduledjob_api.settings import Settings
from schemathesis.python import asgi

from tests.support import contract
from tests.unit.api.apitestkit import SECRET, migrated_archive, token
from tests.unit.api.test_fuzz_openapi import OPENAPI, archived_runs, seeded_cluster

SEED = 21
MAX_EXAMPLES = 40  # per operation and phase; about 1,500 requests in all


@pytest.fixture
def api_schema(tmp_path: Path) -> Iterator[schemathesis.BaseSchema]:
    archive = migrated_archive(tmp_path / "archive.sqlite", seed=archived_runs())
    app = create_app(Settings(jwt_secret=SecretStr(SECRET)), seeded_cluster(), archive)
    config = contract.all_checks_config(SEED, MAX_EXAMPLES, token())
    api_schema = schemathesis.openapi.from_asgi(OPENAPI, app, config=config)
    with asgi.get_client(cast(Any, app)) as http:
        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the cache never synced"
            time.sleep(0.02)
    yield api_schema
    asgi.shutdown_lifespans()


def test_schemathesis_with_all_checks_and_phases_finds_no_mismatch(api_schema: schemathesis.BaseSchema) -> None:
    outcome = contract.run(api_schema)
    print(f"\nschemathesis: {outcome.scenarios} scenarios in {outcome.seconds:.1f}s; phases {sorted(outcome.phases)}")
    outcome.assert_clean()
