"""As an operator reading the API's log I get JSON lines, and probes every few seconds do not flood it."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from scheduledjob_api.__main__ import logging_config


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logging.config.dictConfig(logging_config("INFO"))
    yield out
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_access_log_is_json_and_skips_probes(stream: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    fmt = '%s - "%s %s HTTP/%s" %d'
    access.info(fmt, "127.0.0.1:5000", "GET", "/readyz", "1.1", 200)
    access.info(fmt, "127.0.0.1:5000", "GET", "/metrics", "1.1", 200)
    access.info(fmt, "127.0.0.1:5000", "POST", "/cms-api/v1/admin/scheduled-jobs/1/execute", "1.1", 200)
    logging.getLogger("scheduledjob_api.cache").warning("cache: jobs in all namespaces failed")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["logger"], r["level"]) for r in records] == [
        ("uvicorn.access", "INFO"),
        ("scheduledjob_api.cache", "WARNING"),
    ]
    assert "/execute" in records[0]["message"] and "time" in records[0]


def test_uvicorns_coloured_copy_of_a_message_is_left_out(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7, extra={"color_message": "\x1b[36m"})
    assert json.loads(stream.getvalue()) == {
        "time": json.loads(stream.getvalue())["time"],
        "level": "INFO",
        "logger": "uvicorn.error",
        "message": "Started server process [7]",
    }
