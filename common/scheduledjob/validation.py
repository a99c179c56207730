"""Checks what the CRD schema cannot: cron syntax, the IANA time zone, pydantic types of old objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from scheduledjob.cron import ScheduleError, validate_schedule
from scheduledjob.models import ScheduledJobSpec


@dataclass(frozen=True)
class SpecProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def parse_spec(raw: dict[str, Any]) -> ScheduledJobSpec | SpecProblem:
    """A valid spec, or the first problem found, naming the field (e.g. spec.timeZone)."""
    try:
        spec = ScheduledJobSpec.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        return SpecProblem(f"spec.{location}", first["msg"])
    try:
        validate_schedule(spec.schedule, spec.time_zone)
    except ScheduleError as error:
        return SpecProblem(error.field, error.message)
    containers = spec.job_template.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
    if not containers:
        return SpecProblem("spec.jobTemplate.spec.template.spec.containers", "at least one container is required")
    return spec
