"""As a cluster user I read the ScheduledJob CRD with `kubectl explain`: every field says what it is, with its
range and default, and the defaults are the ones the operator and the API apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scheduledjob import constants as c

CRD = Path(__file__).resolve().parents[2] / "crds" / "scheduledjobs.scheduling.selfhelp.io.yaml"


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _fields(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)] if path else []
    for name, child in (node.get("properties") or {}).items():
        found += _fields(child, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict) and items.get("type") == "object":
        found += _fields(items, f"{path}[]")
    return found


def test_every_field_has_a_description() -> None:
    # metadata is the one exception: the API server refuses a description there (ObjectMeta has its own).
    undescribed = [path for path, node in _fields(_schema()) if not node.get("description") and path != ".metadata"]
    assert not undescribed


def test_every_bounded_or_defaulted_field_states_its_range_and_default_in_words() -> None:
    for path, node in _fields(_schema()):
        text = node.get("description", "")
        if "default" in node:
            assert f"default {str(node['default']).lower()}" in text.lower(), path
        if "minimum" in node and "maximum" in node:
            assert f"{node['minimum']}-{node['maximum']}" in text, path


def test_crd_defaults_are_the_effective_values_the_operator_and_api_use() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["successfulJobsHistoryLimit"]["default"] == c.DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT
    assert spec["failedJobsHistoryLimit"]["default"] == c.DEFAULT_FAILED_JOBS_HISTORY_LIMIT
    assert spec["historyLimit"]["default"] == c.DEFAULT_HISTORY_LIMIT
    assert spec["historyLimit"]["maximum"] == c.MAX_HISTORY_LIMIT


def test_no_cel_rules_so_apply_errors_carry_no_rules_not_checked_line() -> None:
    # With any x-kubernetes-validations rule, the API server appends "<nil>: Invalid value: null: some
    # validation rules were not checked because the object was invalid" to every error that has an enum,
    # required, type or length violation (tests/integration/operator/test_crd_explain.py shows it).
    assert "x-kubernetes-validations" not in CRD.read_text()


def test_the_schedule_has_no_pattern_so_a_refusal_is_never_the_raw_regex() -> None:
    """A malformed schedule is refused by the schedule admission policy in words (deploy/schedule-policy.yaml;
    tests/integration/operator/test_crd_explain.py applies the cases this test's pattern used to hold)."""
    schedule = _schema()["properties"]["spec"]["properties"]["schedule"]
    assert "pattern" not in schedule
    assert (schedule["minLength"], schedule["maxLength"]) == (1, 256)
    assert "schedule admission policy" in schedule["description"]


SCHEMA_KEYWORDS = {
    "type", "format", "description", "properties", "items", "required", "enum", "default", "minimum", "maximum",
    "maxLength", "minLength", "maxItems", "minItems", "pattern", "nullable", "additionalProperties",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "anyOf", "oneOf", "allOf", "not", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "maxProperties", "minProperties", "uniqueItems", "title", "example",
    "externalDocs", "x-kubernetes-embedded-resource",
}  # fmt: skip


def test_every_schema_node_holds_only_schema_keywords() -> None:
    """A flow-style `{description: a, b}` splits at the comma into a key the API server refuses."""
    strays = [
        (path, sorted(set(node) - SCHEMA_KEYWORDS)) for path, node in _fields(_schema()) if set(node) - SCHEMA_KEYWORDS
    ]
    assert strays == []


# --- ScheduledJobNotifier ---------------------------------------------------------------------------------------------

NOTIFIER_CRD = CRD.with_name("scheduledjobnotifiers.scheduling.selfhelp.io.yaml")


def _notifier() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(NOTIFIER_CRD.read_text())
    return crd


def _notifier_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _notifier()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_notifier_crd_is_described_field_by_field_with_schema_keywords_only() -> None:
    fields = _fields(_notifier_schema())
    assert [path for path, node in fields if not node.get("description") and path != ".metadata"] == []
    assert [path for path, node in fields if set(node) - SCHEMA_KEYWORDS] == []
    for path, node in fields:
        if "default" in node:
            assert f"default {str(node['default']).lower()}" in node["description"].lower(), path


def test_the_notifier_crd_names_and_columns_are_the_ones_kubectl_users_type_and_read() -> None:
    from scheduledjob import notifications

    crd = _notifier()
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == (
        c.GROUP,
        notifications.KIND,
        notifications.PLURAL,
        ["sjn"],
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == c.VERSION and version["subresources"] == {"status": {}}
    shown = [col["name"].upper() for col in version["additionalPrinterColumns"] if not col.get("priority")]
    assert shown == ["READY", "URL", "LAST-STATUS", "PENDING", "FAILED", "AGE"]


def test_the_notifier_crd_takes_exactly_the_event_types_and_formats_the_operator_knows() -> None:
    from scheduledjob import notifications

    spec = _notifier_schema()["properties"]["spec"]
    assert spec["required"] == ["url", "secretRef"]
    assert tuple(spec["properties"]["events"]["items"]["enum"]) == notifications.EVENT_TYPES
    assert spec["properties"]["events"]["maxItems"] == len(notifications.EVENT_TYPES)
    assert spec["properties"]["format"]["enum"] == ["standard", "slack"]
    status = _notifier_schema()["properties"]["status"]["properties"]
    assert status["recentDeliveries"]["maxItems"] == notifications.RECENT_DELIVERIES
    reasons = status["conditions"]["description"]
    for reason in (
        notifications.ACCEPTED,
        notifications.FORBIDDEN_DESTINATION,
        notifications.SECRET_MISSING,
        notifications.INVALID_SECRET,
        notifications.INVALID_SPEC,
        notifications.GONE,
    ):
        assert reason in reasons


def test_the_notifier_crd_has_no_cel_rules_and_the_chart_carries_it_byte_for_byte() -> None:
    assert "x-kubernetes-validations" not in NOTIFIER_CRD.read_text()
    copy = CRD.parents[1] / "charts" / "scheduled-jobs" / "files" / "crds" / NOTIFIER_CRD.name
    assert copy.read_bytes() == NOTIFIER_CRD.read_bytes(), f"run: cp {NOTIFIER_CRD} {copy}"


def test_the_sample_notifier_is_one_the_operator_accepts() -> None:
    from scheduledjob import notifications

    sample = yaml.safe_load((CRD.parent / "samples" / "notifiers" / "ops-webhook.yaml").read_text())
    assert (sample["apiVersion"], sample["kind"]) == (c.API_VERSION, notifications.KIND)
    assert set(sample["spec"]) <= set(_notifier_schema()["properties"]["spec"]["properties"])
    spec = notifications.parse_notifier(sample["spec"])
    assert notifications.destination_problem(spec.url, allow_private=False) is None


# --- every CRD: its size, and v1 beside the deprecated v1alpha1 ------------------------------------------------------

CRDS = sorted(CRD.parent.glob("*.yaml"))
# All annotations of one object together may hold at most 256 KiB; client-side `kubectl apply` copies the whole
# object into one (last-applied-configuration), so a CRD above it cannot be applied that way (the field's complaint).
MAX_OBJECT_BYTES = 262_144
# What the chart adds to each (charts/scheduled-jobs/templates/crds.yaml; tests/chart/test_chart_render.py).
KEEP = {"helm.sh/resource-policy": "keep"}
# What may differ between the two versions of one CRD: nothing a client reads or writes.
VERSION_ONLY = {"name", "storage", "deprecated", "deprecationWarning"}


def test_there_are_the_three_crds() -> None:
    assert [path.name for path in CRDS] == [
        f"{plural}.{c.GROUP}.yaml" for plural in ("scheduledjobnotifiers", c.RUN_PLURAL, c.PLURAL)
    ]


@pytest.mark.parametrize("path", CRDS, ids=lambda path: path.name.split(".")[0])
def test_each_crd_is_under_256_kib_as_its_file_and_as_the_object_applied(path: Path) -> None:
    assert path.stat().st_size < MAX_OBJECT_BYTES
    crd: dict[str, Any] = yaml.safe_load(path.read_text())  # the YAML anchors expanded, as the API server gets it
    crd["metadata"]["annotations"] = {**crd["metadata"].get("annotations", {}), **KEEP}
    size = len(json.dumps(crd, separators=(",", ":"), ensure_ascii=False).encode())
    assert size < MAX_OBJECT_BYTES, f"{path.name}: {size} bytes as compact JSON"


@pytest.mark.parametrize("path", CRDS, ids=lambda path: path.name.split(".")[0])
def test_v1_is_the_one_storage_version_and_v1alpha1_is_served_deprecated_and_the_same(path: Path) -> None:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    kind = crd["spec"]["names"]["kind"]
    assert crd["spec"]["group"] == c.GROUP
    assert crd["spec"].get("conversion", {"strategy": "None"}) == {"strategy": "None"}  # no webhook to run
    versions = {version["name"]: version for version in crd["spec"]["versions"]}
    assert list(versions) == [c.VERSION, "v1alpha1"]  # v1 first: the version kubectl and discovery prefer
    assert [name for name, version in versions.items() if version["storage"]] == [c.VERSION]
    v1, v1alpha1 = versions[c.VERSION], versions["v1alpha1"]
    assert v1["served"] is True and not v1.get("deprecated") and "deprecationWarning" not in v1
    assert (v1alpha1["served"], v1alpha1["storage"], v1alpha1["deprecated"]) == (True, False, True)
    assert v1alpha1.get("deprecationWarning") == f"{c.GROUP}/v1alpha1 {kind} is deprecated; use {c.GROUP}/v1 {kind}"
    # Conversion None only changes apiVersion: so the schema, subresources and printer columns must be the same.
    for key in ("schema", "subresources", "additionalPrinterColumns"):
        assert key in v1 and v1[key] == v1alpha1[key], f"{kind}: {key} differs between v1 and v1alpha1"
    rest = {key: value for key, value in v1.items() if key not in VERSION_ONLY}
    assert rest == {key: value for key, value in v1alpha1.items() if key not in VERSION_ONLY}
