"""What a simulated container writes to stdout, and when: pure functions of the pod and the clock.

No container runs, so its output is a timeline derived from pod annotations:
  localcluster.selfhelp.io/log: the text, lines separated by ``\\n`` (default: one line naming the
    image and command);
  localcluster.selfhelp.io/log-repeat: how many times the text is written (default 1), for big logs
    (an annotation holds at most 256 KiB; 500,000 repeats of a 100-byte line are a 50 MB log);
and the lines are spread evenly over the container's duration (line k of n at start + duration * k / n).
Nothing is materialised: a 50 MB log costs no memory, each requested line is computed from its index.

`select` implements the kubelet's PodLogOptions semantics (k8s.io/api core/v1): tailLines, sinceSeconds /
sinceTime, limitBytes (may stop mid-line) and timestamps (an RFC3339Nano prefix on each line).
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ANNOTATION_LOG = "localcluster.selfhelp.io/log"
ANNOTATION_LOG_REPEAT = "localcluster.selfhelp.io/log-repeat"
MAX_REPEAT = 10_000_000


@dataclass(frozen=True)
class Output:
    """One container instance's output: ``lines`` repeated ``repeat`` times over [started, started + duration]."""

    lines: tuple[str, ...]
    repeat: int
    started: dt.datetime
    duration: float

    @property
    def total(self) -> int:
        return len(self.lines) * self.repeat

    def line(self, index: int) -> str:
        return self.lines[index % len(self.lines)]

    def written_at(self, index: int) -> dt.datetime:
        return self.started + dt.timedelta(seconds=self.duration * index / max(self.total, 1))

    def written_by(self, moment: dt.datetime) -> int:
        """How many lines exist at ``moment`` (line k exists once written_at(k) <= moment)."""
        if moment < self.started:
            return 0
        if self.duration <= 0:
            return self.total
        elapsed = (moment - self.started).total_seconds()
        # written_at(k) <= moment  <=>  k <= elapsed * total / duration
        return min(self.total, int(elapsed * self.total / self.duration) + 1)

    def first_after(self, moment: dt.datetime) -> int:
        """Index of the first line written at or after ``moment``."""
        if moment <= self.started:
            return 0
        if self.duration <= 0:
            return self.total
        elapsed = (moment - self.started).total_seconds()
        return min(self.total, math.ceil(elapsed * self.total / self.duration))


def container_text(pod: dict[str, Any], container: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """(lines, repeat) the container writes, from the pod's annotations."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(ANNOTATION_LOG)
    if text is None:
        words = [*(container.get("command") or []), *(container.get("args") or [])]
        text = f"{container.get('image', '')} {shlex.join(words)}".strip()
    lines = tuple(text.split("\n"))
    if len(lines) > 1 and lines[-1] == "":
        lines = lines[:-1]  # a trailing newline ends the last line, it does not start another
    try:
        repeat = min(MAX_REPEAT, max(1, int(annotations.get(ANNOTATION_LOG_REPEAT, 1))))
    except ValueError:
        repeat = 1
    return lines, repeat


def rfc3339_nano(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass(frozen=True)
class Selection:
    """The PodLogOptions that choose which lines (and bytes) are sent."""

    tail_lines: int | None = None
    since: dt.datetime | None = None
    limit_bytes: int | None = None
    timestamps: bool = False


def first_index(output: Output, available: int, selection: Selection) -> int:
    start = 0
    if selection.since is not None:
        start = max(start, output.first_after(selection.since))
    if selection.tail_lines is not None:
        start = max(start, available - selection.tail_lines)
    return min(start, available)


def render(output: Output, index: int, timestamps: bool) -> bytes:
    prefix = f"{rfc3339_nano(output.written_at(index))} " if timestamps else ""
    return f"{prefix}{output.line(index)}\n".encode()


def select(output: Output, available: int, selection: Selection) -> Iterator[bytes]:
    """The chunks a non-following request gets for the first ``available`` lines."""
    budget = selection.limit_bytes
    for index in range(first_index(output, available, selection), available):
        chunk = render(output, index, selection.timestamps)
        if budget is not None:
            if budget <= 0:
                return
            chunk = chunk[:budget]
            budget -= len(chunk)
        yield chunk
