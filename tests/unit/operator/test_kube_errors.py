"""As an operator I tell the API server's refusals apart: a namespace being deleted is not retried, and a
refusal that will come again (forbidden, invalid) is a Refused with the server's message."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from scheduledjob_operator.kube import Conflict, Forbidden, NamespaceTerminating, Refused, Rejected, translate

# As kube-apiserver 1.36 answers a create in a namespace being deleted (seen in bench/'s operator log).
TERMINATING = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": 'cronjobs.batch "ledger-06" is forbidden: unable to create new content in namespace bench-ledger '
    "because it is being terminated",
    "reason": "Forbidden",
    "details": {
        "name": "ledger-06",
        "group": "batch",
        "kind": "cronjobs",
        "causes": [{"reason": "NamespaceTerminating", "message": "namespace bench-ledger is being terminated"}],
    },
    "code": 403,
}


def _error(status: int, body: dict[str, object], *, as_reason: bool = False) -> ApiException:
    error = ApiException(status=status, reason=json.dumps(body) if as_reason else "Forbidden")
    if not as_reason:
        error.body = json.dumps(body).encode()
    return error


@pytest.mark.parametrize("as_reason", [False, True], ids=["parsed call", "unparsed call"])
def test_a_create_in_a_namespace_being_deleted_is_namespace_terminating(as_reason: bool) -> None:
    assert isinstance(translate(_error(403, TERMINATING, as_reason=as_reason)), NamespaceTerminating)


@pytest.mark.parametrize("as_reason", [False, True], ids=["parsed call", "unparsed call"])
def test_any_other_forbidden_is_forbidden_with_the_servers_message(as_reason: bool) -> None:
    quota = {
        "kind": "Status",
        "status": "Failure",
        "message": 'jobs.batch "report-m1" is forbidden: exceeded quota: no-more-jobs, requested: count/jobs.batch=1',
        "reason": "Forbidden",
        "code": 403,
        "details": {"kind": "jobs"},
    }
    forbidden = translate(_error(403, quota, as_reason=as_reason))
    assert isinstance(forbidden, Forbidden) and not isinstance(forbidden, NamespaceTerminating)
    assert str(forbidden) == quota["message"]
    not_json = translate(ApiException(status=403, reason="Forbidden"))
    assert isinstance(not_json, Forbidden) and str(not_json) == "Forbidden"


def test_other_answers_stay_the_api_error_they_were() -> None:
    for status in (404, 500, 429):
        error = ApiException(status=status, reason="whatever")
        assert translate(error) is error


def test_conflicts_and_invalid_objects_keep_their_meaning() -> None:
    assert isinstance(translate(ApiException(status=409, reason="Conflict")), Conflict)
    invalid = _error(422, {"kind": "Status", "message": "spec.schedule: Invalid value", "code": 422})
    rejected = translate(invalid)
    assert isinstance(rejected, Rejected) and isinstance(rejected, Refused) and "spec.schedule" in str(rejected)
