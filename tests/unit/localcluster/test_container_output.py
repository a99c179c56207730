"""The simulated container's stdout: spread over its run, selected as a kubelet selects it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from localcluster_launcher.container_output import Output, Selection, container_text, select
from localcluster_launcher.kubelet_server import BadRequest, parse_log_request

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def text(output: Output, available: int, selection: Selection | None = None) -> str:
    return b"".join(select(output, available, selection or Selection())).decode()


def test_lines_are_spread_evenly_over_the_duration() -> None:
    output = Output(("step 1", "step 2", "boom"), 1, T0, 3.0)
    assert [output.written_by(T0 + dt.timedelta(seconds=s)) for s in (0, 0.9, 1.0, 2.5, 10)] == [1, 1, 2, 3, 3]
    assert text(output, output.total) == "step 1\nstep 2\nboom\n"


def test_tail_since_limit_and_timestamps() -> None:
    output = Output(("a", "b", "c", "d"), 1, T0, 4.0)
    assert text(output, 4, Selection(tail_lines=2)) == "c\nd\n"
    assert text(output, 4, Selection(since=T0 + dt.timedelta(seconds=2))) == "c\nd\n"
    assert text(output, 4, Selection(limit_bytes=3)) == "a\nb"  # may stop mid-line
    assert text(output, 1, Selection(timestamps=True)) == "2026-01-01T00:00:00.000000000Z a\n"


def test_a_huge_log_is_computed_not_stored() -> None:
    output = Output(("x" * 99,), 500_000, T0, 1.0)  # 50 MB
    assert output.total * 100 == 50_000_000
    assert text(output, output.total, Selection(tail_lines=2)) == ("x" * 99 + "\n") * 2


def test_the_default_line_names_image_and_command() -> None:
    pod: dict[str, Any] = {"metadata": {"annotations": {}}}
    lines, repeat = container_text(pod, {"image": "busybox", "command": ["sh", "-c", "echo hi"]})
    assert (lines, repeat) == (("busybox sh -c 'echo hi'",), 1)
    annotated = {"metadata": {"annotations": {"localcluster.selfhelp.io/log": "one\ntwo\n"}}}
    assert container_text(annotated, {})[0] == ("one", "two")


def test_log_options_are_parsed_and_checked() -> None:
    options = parse_log_request({"tailLines": "5", "follow": "true", "limitBytes": "10"}, T0)
    assert (options.selection.tail_lines, options.follow, options.selection.limit_bytes) == (5, True, 10)
    assert parse_log_request({"tail": "3"}, T0).selection.tail_lines == 3
    assert parse_log_request({"sinceSeconds": "60"}, T0).selection.since == T0 - dt.timedelta(seconds=60)
    for bad in ({"tailLines": "-1"}, {"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, {"follow": "yes"}):
        with pytest.raises(BadRequest):
            parse_log_request(bad, T0)
