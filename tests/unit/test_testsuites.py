"""`make test` runs its suites side by side (tools/testsuites): every test file runs in exactly one of them."""

from __future__ import annotations

from pathlib import Path

from testsuites.__main__ import ROOT, SUITES, Suite


def _runs(suite: Suite, path: Path) -> bool:
    def under(prefixes: tuple[str, ...]) -> bool:
        return any(path.is_relative_to(ROOT / prefix) for prefix in prefixes)

    return under(suite.paths) and not under(suite.ignore)


def test_every_test_file_runs_in_exactly_one_suite() -> None:
    files = sorted((ROOT / "tests").rglob("test_*.py"))
    assert len(files) > 100
    counted = {path.relative_to(ROOT): sum(_runs(suite, path) for suite in SUITES) for path in files}
    assert {path: n for path, n in counted.items() if n != 1} == {}
