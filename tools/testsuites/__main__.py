"""`make test`: the test suites side by side, each a pytest session of its own, so each on its own control
plane, PostgreSQL and temporary directory (tests/support starts them per session, on free ports).

Most of the integration stories wait for minute slots; one after the other they took 53 minutes of a CI run
(2 cores). The first suite's output is shown as it runs; each other suite's follows it, in this order,
with its exit code and how long it took. The exit code is the first suite's that failed, else 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Suite:
    name: str
    paths: tuple[str, ...]
    ignore: tuple[str, ...] = ()
    durations: int = 25  # the slowest tests it lists

    def command(self, basetemp: Path) -> list[str]:
        ignored = [f"--ignore={path}" for path in self.ignore]
        return [
            sys.executable,
            "-m",
            "pytest",
            *self.paths,
            *ignored,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--durations={self.durations}",
            f"--basetemp={basetemp}",
        ]


UPGRADE = "tests/integration/upgrade"  # N-1 -> N on its own control plane: mostly waiting for slots
# The API's stories and the faults: the longest stories (runs through minute slots, killed operators, an API
# server cut off), about as long together as everything else.
STORIES = ("tests/integration/api", "tests/integration/reliability", "tests/integration/faults")
SUITES = (
    Suite("the suite", ("tests",), ignore=(UPGRADE, *STORIES)),
    Suite("the stories", STORIES),
    Suite("the upgrade story", (UPGRADE,), durations=5),
)


def main() -> int:
    base = Path(os.environ.get("TMPDIR") or tempfile.gettempdir()) / "scheduled-jobs-test-suites"
    shutil.rmtree(base, ignore_errors=True)
    running: list[Running] = []
    try:
        for number, suite in enumerate(SUITES):
            running.append(Running.start(suite, base / str(number), shown=number == 0))
        while any(run.process.poll() is None for run in running):
            for run in running:
                run.note_end()
            time.sleep(1)
        for run in running:
            run.note_end()
            if run.output is not None:
                print(f"\n== {run.suite.name} ({' '.join(run.suite.paths)}), beside the one above", flush=True)
                sys.stdout.write(run.output.read_text(errors="replace"))
            print(f"== {run.suite.name}: exit {run.process.returncode} after {run.seconds:.0f}s", flush=True)
        return next((run.process.returncode for run in running if run.process.returncode), 0)
    finally:
        for run in running:
            if run.process.poll() is None:  # interrupted: Ctrl-C reached the suites too; let them tear down
                try:
                    run.process.wait(timeout=60)
                except subprocess.TimeoutExpired:  # no suite outlives make
                    run.process.terminate()
                    run.process.wait()


@dataclass
class Running:
    suite: Suite
    process: subprocess.Popen[bytes]
    output: Path | None  # None: shown as it runs
    began: float
    ended: float | None = None

    @classmethod
    def start(cls, suite: Suite, where: Path, *, shown: bool) -> Running:
        where.mkdir(parents=True)
        command = suite.command(where / "t")
        if shown:
            return cls(suite, subprocess.Popen(command, cwd=ROOT), None, time.monotonic())
        output = where / "output.log"
        with output.open("wb") as sink:
            process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        return cls(suite, process, output, time.monotonic())

    def note_end(self) -> None:
        if self.ended is None and self.process.poll() is not None:
            self.ended = time.monotonic()

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.began


if __name__ == "__main__":
    sys.exit(main())
