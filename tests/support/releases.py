"""A release of the product as its own processes: HEAD from this repository, or an earlier commit checked out
in a `git worktree`, both run by this venv's Python with that tree's sources first on the path, as the
image of that release would run them.

`git worktree add` needs the commit in the repository: a shallow clone fails here, in words, rather than
testing something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from devrun.install import STATE_NAMESPACE
from devrun.processes import ROOT, Service, api_service, operator_service
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

SOURCE_ROOTS = ("common", "operator", "api", "tools")
# `helm upgrade` (Helm 4) applies the chart's objects server-side as this field manager, forcing conflicts.
HELM_FIELD_MANAGER = "helm"


@contextlib.contextmanager
def worktree(repo: Path, commit: str, path: Path) -> Iterator[Path]:
    """`commit` checked out (detached) at `path` for the duration; removed afterwards, also on failure."""
    found = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True, text=True
    )
    if found.returncode != 0:
        raise RuntimeError(
            f"commit {commit} is not in {repo} (a shallow clone? `git fetch --unshallow`): {found.stderr.strip()}"
        )
    # A run killed before its cleanup leaves its worktree registered; its directory went with the run's tmp.
    subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
    added = subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", str(path), commit], capture_output=True, text=True
    )
    if added.returncode != 0:
        raise RuntimeError(f"git worktree add {path} {commit} failed: {added.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)


class ReleaseService(Service):
    """A `Service` that runs in its release's tree (`cwd`)."""

    def __init__(self, service: Service, cwd: Path) -> None:
        super().__init__(service.name, service.argv, service.env, service.log_path.parent, cwd)
        self.log_path = service.log_path


@dataclass(frozen=True)
class Release:
    """The product's sources at `root` (this repository for HEAD, a worktree for an earlier commit)."""

    name: str
    root: Path

    @property
    def env(self) -> dict[str, str]:
        """Its own source roots ahead of this venv's editable install (which names HEAD's)."""
        return {"PYTHONPATH": os.pathsep.join([*(str(self.root / part) for part in SOURCE_ROOTS), str(self.root)])}

    def python(self, code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Runs `python -c code args...` as this release (its tree, its path); returns its standard output."""
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            env={**os.environ, **self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{self.name}: python -c failed ({result.returncode}):\n{result.stderr}")
        return result.stdout

    def modules(self) -> dict[str, str]:
        """What this release's processes import: its API version and where each package comes from."""
        probe = (
            "import json, scheduledjob, scheduledjob_operator, scheduledjob_api, devrun\n"
            "from scheduledjob import constants\n"
            "print(json.dumps({'version': constants.VERSION, **{m.__name__: m.__file__ for m in "
            "(scheduledjob, scheduledjob_operator, scheduledjob_api, devrun)}}))"
        )
        found: dict[str, str] = json.loads(self.python(probe))
        return found

    def install_prerequisites(self, kubeconfig: Path) -> None:
        """What `make run` of this release installs: its CRDs, admission policies and state namespace."""
        script = (
            "import asyncio, sys\n"
            "from kubernetes_asyncio.config import new_client_from_config\n"
            "from devrun.install import install_operator_prerequisites\n"
            "async def main():\n"
            "    api = await new_client_from_config(config_file=sys.argv[1])\n"
            "    async with api:\n"
            "        await install_operator_prerequisites(api)\n"
            "asyncio.run(main())\n"
        )
        self.python(script, str(kubeconfig))

    def operator(self, kubeconfig: Path, log_dir: Path, identity: str, env: dict[str, str], *extra: str) -> Service:
        """Its operator, `identity` in the leader Lease (a Pod's name)."""
        service = operator_service(kubeconfig, STATE_NAMESPACE, log_dir, *extra, env={**env, "POD_ID": identity})
        service.name = identity
        service.log_path = log_dir / f"{identity}.log"
        return self._own(service)

    def api(self, kubeconfig: Path, port: int, env: dict[str, str], log_dir: Path, name: str) -> Service:
        service = api_service(kubeconfig, port, env, log_dir)
        service.name = name
        service.log_path = log_dir / f"{name}.log"
        return self._own(service)

    def _own(self, service: Service) -> Service:
        service.env.update(self.env)
        return ReleaseService(service, self.root)


HEAD = Release("HEAD", ROOT)


async def apply_crds_as_the_chart_does(api: client.ApiClient, crd_dir: Path, within: float = 30) -> list[str]:
    """Server-side applies every CRD in `crd_dir` as `helm upgrade` does (field manager `helm`, conflicts
    forced); returns once each is Established and every version it serves answers a list."""
    extensions: Any = client.ApiextensionsV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    applied = _crds_in(crd_dir)
    for doc in applied:
        await extensions.patch_custom_resource_definition(
            doc["metadata"]["name"],
            doc,
            field_manager=HELM_FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    deadline = time.monotonic() + within
    for doc in applied:
        name, spec = doc["metadata"]["name"], doc["spec"]
        served = [version["name"] for version in spec["versions"] if version.get("served")]
        while not await _serving(extensions, custom, name, spec["group"], spec["names"]["plural"], served):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established and serving {served} {within}s after the apply")
            await asyncio.sleep(0.2)
    return [doc["metadata"]["name"] for doc in applied]


def _crds_in(directory: Path) -> list[dict[str, Any]]:
    """The CRDs of the directory's *.yaml files (small local files: read synchronously)."""
    docs = (doc for path in sorted(directory.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()))
    return [doc for doc in docs if doc and doc.get("kind") == "CustomResourceDefinition"]


async def _serving(extensions: Any, custom: Any, name: str, group: str, plural: str, versions: list[str]) -> bool:
    crd = await extensions.read_custom_resource_definition(name)
    if not any(cond.type == "Established" and cond.status == "True" for cond in crd.status.conditions or []):
        return False
    for version in versions:
        try:
            await custom.list_cluster_custom_object(group, version, plural, limit=1)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
    return True
