"""As an admin in an air-gapped cluster I open the API docs (Swagger UI and ReDoc) and they work: every
asset comes from the API itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.unit.api.liveserver import live_server

PAGES = ["/cms-api/v1/docs", "/cms-api/v1/redoc"]


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with live_server() as base:
        yield base


@pytest.mark.parametrize("page", PAGES)
def test_every_asset_of_the_docs_pages_is_served_by_the_api(server: str, page: str) -> None:
    status, html = _get(server + page)
    assert status == 200
    text = html.decode()
    references = _References()
    references.feed(text)
    assert len(references.urls) >= 2, references.urls  # a script (and a stylesheet or icon) at least
    for url in references.urls:
        assert url.startswith("/cms-api/v1/"), f"{page} loads {url} from elsewhere"
        status, body = _get(server + url)
        assert status == 200 and len(body) > 1000, url
    assert not re.findall(r"https?://(?!127\.0\.0\.1)[\w.-]+", text.replace("http://www.w3.org", "")), text


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless Chromium (apt-get install chromium)")
@pytest.mark.parametrize(("page", "rendered"), [(PAGES[0], "opblock-summary"), (PAGES[1], "List scheduled jobs")])
def test_the_docs_render_in_a_browser_that_cannot_reach_any_other_host(
    server: str, page: str, rendered: str, tmp_path: Path
) -> None:
    # Every host name but the server's fails to resolve: a CDN-hosted script would not load.
    result = subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=10000", "--dump-dom", server + page,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rendered in result.stdout, result.stderr[-2000:]
