"""The vendored JavaScript is exactly what the manifest says (so a hand edit or a partial refresh shows)."""

from __future__ import annotations

from pathlib import Path

from uivendor.__main__ import MANIFEST, PACKAGES, TEST_VENDOR, UI_VENDOR, check


def test_every_vendored_file_matches_its_manifest_digest_and_nothing_else_is_there() -> None:
    assert check(UI_VENDOR) == []
    assert check(TEST_VENDOR) == []


def test_the_manifest_names_each_package_at_its_pinned_version() -> None:
    text = (UI_VENDOR / MANIFEST).read_text() + (TEST_VENDOR / MANIFEST).read_text()
    for package in PACKAGES:
        assert f"# {package.name}@{package.version} sha512-" in text


def test_a_changed_file_is_reported(tmp_path: Path) -> None:
    for path in UI_VENDOR.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "htmx.min.js").write_text("alert(1)")
    (tmp_path / "extra.js").write_text("")
    assert sorted(check(tmp_path)) == [
        "extra.js: not in MANIFEST.sha256",
        "htmx.min.js: SHA-256 differs from MANIFEST.sha256",
    ]
