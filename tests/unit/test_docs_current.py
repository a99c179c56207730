"""The API reference in docs/ is the one the code serves."""

from apidocs.__main__ import TARGET, openapi, render


def test_docs_api_md_matches_the_openapi_document() -> None:
    assert TARGET.read_text() == render(openapi()), "docs/api.md is out of date: run `make docs`"
