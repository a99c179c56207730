"""metav1.Condition bookkeeping and the one-word state shown by kubectl and the API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from scheduledjob.models import Condition, State
from scheduledjob.timefmt import format_utc


def set_condition(
    conditions: list[Condition],
    *,
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Replaces the condition of that type; lastTransitionTime moves only when the status changes."""
    previous = next((cond for cond in conditions if cond.type == type_), None)
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=format_utc(now) if changed or previous is None else previous.last_transition_time,
    )
    return [cond for cond in conditions if cond.type != type_] + [updated]


def derive_state(*, valid: bool, suspended: bool, active: list[str]) -> State:
    if not valid:
        return "error"
    if active:
        return "running"  # a manual run of a suspended job is still running
    return "suspended" if suspended else "idle"
