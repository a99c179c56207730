"""The API reference in docs/ is the one the code serves, and the README lists every endpoint."""

from apidocs.__main__ import ROOT, TARGET, openapi, render


def test_docs_api_md_matches_the_openapi_document() -> None:
    assert TARGET.read_text() == render(openapi()), "docs/api.md is out of date: run `make docs`"


def test_the_readme_table_lists_every_endpoint_of_the_openapi_document() -> None:
    """Issue 21: the README's endpoint table lacked the transactions endpoints."""
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = [
        f"{method.upper()} {path}"
        for path, operations in openapi()["paths"].items()
        if path.startswith("/cms-api/")
        for method in operations
        if not any(row.startswith(f"| `{method.upper()} {path}`") or row.startswith(f"| `{method.upper()} {path} (")
                   for row in rows)
    ]  # fmt: skip
    assert missing == []
