"""An admin's pause of a ScheduledJob, read from its annotations (see docs/scheduledjob.md).

`spec.suspend` belongs to whoever owns the manifest (a GitOps tool re-applies it); the pause is kept
in annotations beside it, so neither undoes the other. The CronJob is suspended while either holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scheduledjob import constants as c
from scheduledjob.limits import REASON, SUBJECT, TIMESTAMP, cut


@dataclass(frozen=True)
class Pause:
    paused_by: str | None
    paused_at: str | None  # as written (RFC 3339 UTC when the API wrote it)
    reason: str | None

    @property
    def identity(self) -> str:
        """What tells one pause from the next (a new pause gets a new record and Event)."""
        return f"{self.paused_at or ''}|{self.paused_by or ''}"


@dataclass(frozen=True)
class Resume:
    resumed_by: str | None
    resumed_at: str | None


def _text(annotations: Mapping[str, Any], key: str, limit: int) -> str | None:
    """The annotation's text, cut to `limit`: anybody may set these annotations with kubectl, and an
    over-long value copied into the status (pausedBy, history) would make every status write a 422."""
    value = annotations.get(key)
    return cut(value.strip() or None, limit) if isinstance(value, str) else None


def pause_of(metadata: Mapping[str, Any] | None) -> Pause | None:
    """The pause in force, or None. Set by `paused-by` or `paused-at`; `pause-reason` alone is not a pause."""
    annotations = (metadata or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return None
    paused_by = _text(annotations, c.ANNOTATION_PAUSED_BY, SUBJECT)
    paused_at = _text(annotations, c.ANNOTATION_PAUSED_AT, TIMESTAMP)
    if paused_by is None and paused_at is None:
        return None
    return Pause(paused_by, paused_at, _text(annotations, c.ANNOTATION_PAUSE_REASON, REASON))


def resume_of(metadata: Mapping[str, Any] | None) -> Resume:
    annotations = (metadata or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        return Resume(None, None)
    return Resume(
        _text(annotations, c.ANNOTATION_RESUMED_BY, SUBJECT), _text(annotations, c.ANNOTATION_RESUMED_AT, TIMESTAMP)
    )


def pause_annotations(paused_by: str, paused_at: str, reason: str | None) -> dict[str, str | None]:
    """A merge patch of metadata.annotations that pauses (None removes a key)."""
    return {
        c.ANNOTATION_PAUSED_BY: paused_by,
        c.ANNOTATION_PAUSED_AT: paused_at,
        c.ANNOTATION_PAUSE_REASON: reason,
        c.ANNOTATION_RESUMED_BY: None,
        c.ANNOTATION_RESUMED_AT: None,
    }


def resume_annotations(resumed_by: str, resumed_at: str) -> dict[str, str | None]:
    """A merge patch of metadata.annotations that resumes."""
    return {
        c.ANNOTATION_PAUSED_BY: None,
        c.ANNOTATION_PAUSED_AT: None,
        c.ANNOTATION_PAUSE_REASON: None,
        c.ANNOTATION_RESUMED_BY: resumed_by,
        c.ANNOTATION_RESUMED_AT: resumed_at,
    }
