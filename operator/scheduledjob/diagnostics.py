"""What a run left behind besides its outcome: captured container logs (pure data).

Placeholder written by the archive branch with the fields the `logs` branch defines; the archive
stores these in its `execution_logs` table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerLog:
    pod: str
    container: str
    text: str
    truncated: bool = False
    unavailable_reason: str | None = None
