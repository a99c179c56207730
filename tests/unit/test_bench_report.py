"""A benchmark's results say which commit they measured, and whether the code differed from it: the results
file the run writes into is no such difference (a scale run merges into the last full run's file)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import report


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_a_changed_results_file_is_not_dirty_code_and_a_changed_module_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "results.json").write_text("{}\n")
    (tmp_path / "operator.py").write_text("WARMUP_SHARE = 0.5\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    monkeypatch.setattr(report, "ROOT", tmp_path)

    (tmp_path / "bench" / "results.json").write_text('{"api_ready_seconds_20k": 31.78}\n')
    info = report.git_info()
    assert info["dirty"] is False and info["changed_files"] == ["M bench/results.json"]

    (tmp_path / "operator.py").write_text("WARMUP_SHARE = 1.0\n")
    assert report.git_info()["dirty"] is True
