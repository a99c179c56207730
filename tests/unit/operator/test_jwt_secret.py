"""The API's generated JWT Secret as the operator creates it: labelled as the release, owned by its ConfigMap."""

from __future__ import annotations

import base64

from scheduledjob_operator.jwt_secret import generated_secret

OWNER = {
    "name": "scheduledjob-id-sequence",
    "uid": "0b6f4c1e-1111-2222-3333-444455556666",
    "labels": {
        "app.kubernetes.io/instance": "sj",
        "app.kubernetes.io/name": "scheduled-jobs",
        "app.kubernetes.io/component": "operator",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "scheduled-jobs-0.1.0",
    },
}


def test_the_secret_holds_the_value_under_the_charts_key() -> None:
    secret = generated_secret("sj-scheduled-jobs-jwt", "jwt-secret", "s3cr3t", OWNER)
    assert (secret["kind"], secret["type"], secret["metadata"]["name"]) == ("Secret", "Opaque", "sj-scheduled-jobs-jwt")
    assert base64.b64decode(secret["data"]["jwt-secret"]) == b"s3cr3t"


def test_uninstalling_the_release_collects_it_with_the_id_sequence_configmap() -> None:
    metadata = generated_secret("sj-scheduled-jobs-jwt", "jwt-secret", "s3cr3t", OWNER)["metadata"]
    assert metadata["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": OWNER["name"], "uid": OWNER["uid"]}
    ]
    # Found by the release's label like the chart's objects, but not claimed to be Helm's.
    assert metadata["labels"] == {
        "app.kubernetes.io/instance": "sj",
        "app.kubernetes.io/name": "scheduled-jobs",
        "app.kubernetes.io/component": "api",
        "app.kubernetes.io/managed-by": "scheduledjob-operator",
    }


def test_without_the_configmap_it_is_created_unowned() -> None:
    metadata = generated_secret("jwt", "key", "value", None)["metadata"]
    assert metadata == {"name": "jwt"}


def test_the_archive_password_secret_is_labelled_as_the_archive() -> None:
    secret = generated_secret("sj-scheduled-jobs-archive-password", "password", "pw", OWNER, component="archive")
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "archive"
    assert base64.b64decode(secret["data"]["password"]) == b"pw"


async def test_without_the_variable_no_archive_secret_is_made() -> None:
    from scheduledjob_operator.jwt_secret import ensure_generated_archive_secret

    await ensure_generated_archive_secret(None, "ns", environ={})  # type: ignore[arg-type]  # never touches the API
