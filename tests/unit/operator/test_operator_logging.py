"""As an operator reading the log I see one JSON line per meaningful action, not one per handler that succeeded."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from scheduledjob_operator.__main__ import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    handlers, level, objects_level = root.handlers[:], root.level, objects.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    objects.setLevel(objects_level)


def _log_and_read(verbose: bool, capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    configure_logging(verbose)
    ref = {"k8s_ref": {"namespace": "default", "name": "cache-cleanup"}}
    kopf_log = logging.getLogger("kopf.objects")
    kopf_log.info("Handler 'job_changed' succeeded.", extra=ref)
    kopf_log.info("Updating is processed: 1 succeeded; 0 failed.", extra=ref)
    kopf_log.error("Handler 'job_changed' failed with an exception. Will retry.", extra=ref)
    logging.getLogger("scheduledjob_operator.reconciler").info("ScheduledJob default/cache-cleanup changed")
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_handler_successes_are_left_out_and_the_rest_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    records = _log_and_read(False, capsys)
    assert [r["message"] for r in records] == [
        "Handler 'job_changed' failed with an exception. Will retry.",
        "ScheduledJob default/cache-cleanup changed",
    ]
    assert records[0]["object"] == {"namespace": "default", "name": "cache-cleanup"}
    assert records[0]["severity"] == "error"
    assert not logging.getLogger("kopf.objects").isEnabledFor(logging.INFO)  # not even made (cost per event)


def test_verbose_shows_handler_successes(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(_log_and_read(True, capsys)) == 4
