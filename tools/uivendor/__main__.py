"""`python -m uivendor [--check]`: refresh the dashboard's vendored files from the npm registry.

Each package is fetched with `npm pack NAME@VERSION` (the published tarball, nothing built locally),
the listed files are copied out, and a `MANIFEST.sha256` (the format `sha256sum -c` reads) records
each file's digest next to the package version and the tarball's own integrity. Only this script needs
Node/npm; CI and the image use the committed files. `--check` verifies the committed files against
their manifests without the network (a unit test does the same).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI_VENDOR = ROOT / "api" / "scheduledjob_api" / "ui" / "static" / "vendor"
TEST_VENDOR = ROOT / "tests" / "integration" / "ui" / "vendor"
MANIFEST = "MANIFEST.sha256"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: dict[str, str]  # path inside the tarball's package/ -> file name in the vendor directory
    target: Path


PACKAGES = (
    # htmx 2.0.x, not 4: 4 swaps error responses and changes attribute inheritance (research A2).
    Package("htmx.org", "2.0.11", {"dist/htmx.min.js": "htmx.min.js", "LICENSE": "htmx.LICENSE"}, UI_VENDOR),
    # The pages' live updates (/ui/events); 2.2.x is the line for htmx 2.
    Package(
        "htmx-ext-sse",
        "2.2.4",
        {"dist/sse.min.js": "htmx-ext-sse.min.js", "LICENSE": "htmx-ext-sse.LICENSE"},
        UI_VENDOR,
    ),
    Package(
        "uplot",
        "1.6.32",
        {
            "dist/uPlot.iife.min.js": "uPlot.iife.min.js",
            "dist/uPlot.min.css": "uPlot.min.css",
            "LICENSE": "uPlot.LICENSE",
        },
        UI_VENDOR,
    ),
    # For the accessibility tests only: injected by Playwright, never served.
    Package("axe-core", "4.14.1", {"axe.min.js": "axe.min.js", "LICENSE": "axe-core.LICENSE"}, TEST_VENDOR),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pack(package: Package, workdir: Path) -> tuple[Path, str]:
    result = subprocess.run(
        ["npm", "pack", f"{package.name}@{package.version}", "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(result.stdout)[0]
    return workdir / info["filename"], str(info["integrity"])


def refresh() -> None:
    manifests: dict[Path, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for package in PACKAGES:
            tarball, integrity = _pack(package, workdir)
            unpacked = workdir / package.name
            with tarfile.open(tarball) as archive:
                archive.extractall(unpacked, filter="data")
            package.target.mkdir(parents=True, exist_ok=True)
            lines = manifests.setdefault(package.target, [])
            lines.append(f"# {package.name}@{package.version} {integrity}")
            for source, name in package.files.items():
                destination = package.target / name
                shutil.copyfile(unpacked / "package" / source, destination)
                lines.append(f"{sha256(destination)}  {name}")
                print(f"{package.name}@{package.version}: {source} -> {destination.relative_to(ROOT)}")
    for target, lines in manifests.items():
        (target / MANIFEST).write_text("\n".join(lines) + "\n")


def check(directory: Path) -> list[str]:
    """Problems with a vendor directory: digests that differ, files missing or not in the manifest."""
    problems: list[str] = []
    listed: set[str] = set()
    for line in (directory / MANIFEST).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        listed.add(name)
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: listed but missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: SHA-256 differs from {MANIFEST}")
    for path in directory.iterdir():
        if path.name != MANIFEST and path.name not in listed:
            problems.append(f"{path.name}: not in {MANIFEST}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uivendor", description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify the committed files; no network")
    args = parser.parse_args(argv)
    if not args.check:
        refresh()
    problems = [f"{d.relative_to(ROOT)}/{p}" for d in (UI_VENDOR, TEST_VENDOR) for p in check(d)]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
