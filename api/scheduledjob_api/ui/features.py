"""The seams where features being built elsewhere plug into the dashboard.

Each view asks the service for what it shows; a service method that does not exist yet leaves its part
of the page out (with a note saying so), never a stand-in. When the method lands with the signature
below, its part of the page lights up with no change here:

- `execute(job_id, principal, reason=...)`: the optional reason field on "Run now".
- `pause(job_id, principal, reason)` / `resume(job_id, principal, reason)`: pause and resume buttons.
- `logs(job_id, execution_id, tail_lines)` -> {"lines": [...], "truncated": bool, ...}: a run's log tail.
- `recent_failures(limit)` -> transactions with `job_id`/`job_name`: the failures page (until then it is
  computed from each failing job's history).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Features:
    execute_reason: bool
    pause: bool
    logs: bool
    recent_failures: bool

    @classmethod
    def of(cls, service: Any) -> Features:
        execute = getattr(service, "execute", None)
        takes_reason = execute is not None and "reason" in inspect.signature(execute).parameters
        return cls(
            execute_reason=takes_reason,
            pause=callable(getattr(service, "pause", None)) and callable(getattr(service, "resume", None)),
            logs=callable(getattr(service, "logs", None)),
            recent_failures=callable(getattr(service, "recent_failures", None)),
        )
