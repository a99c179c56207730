"""As a client generating code from the OpenAPI document, I find that the real API (a process on the real
control plane, with the real operator and the archive on PostgreSQL) does what the document says:
Schemathesis with every check and every phase, the stateful one included, finds no mismatch.

The in-process run (tests/unit/api/test_contract_schemathesis.py) covers many more cases on the in-memory
cluster; this one proves the contract holds on the real stack too (real cluster errors, real archive
paging, real run requests), on a small budget per operation.
"""

from __future__ import annotations

import httpx
import schemathesis

from tests.integration.api.conftest import job_id_of, token
from tests.support import contract
from tests.support.kube import ScheduledJobs, job_template

MAX_EXAMPLES = 30  # per operation and phase
SEED = 21


async def test_the_real_api_does_what_its_openapi_document_says(
    admin: httpx.AsyncClient, api_process: str, scheduled_jobs: ScheduledJobs
) -> None:
    # Jobs to find: one that has run (so transactions, logs and cancel have something), one paused.
    await scheduled_jobs.create("contract-ran", {"schedule": "@yearly", "jobTemplate": job_template(seconds=1)})
    await scheduled_jobs.create("contract-idle", {"schedule": "@hourly", "jobTemplate": job_template()})
    ran = await job_id_of(admin, scheduled_jobs.namespace, "contract-ran")
    await job_id_of(admin, scheduled_jobs.namespace, "contract-idle")
    assert (await admin.post(f"/{ran}/execute", json={"reason": "contract"})).status_code == 200

    config = contract.all_checks_config(SEED, MAX_EXAMPLES, token("contract-tester"))
    schema = schemathesis.openapi.from_url(f"{api_process}/cms-api/v1/openapi.json", config=config)
    outcome = contract.run(schema)
    print(f"\nschemathesis on the real stack: {outcome.scenarios} scenarios in {outcome.seconds:.1f}s")
    outcome.assert_clean()
