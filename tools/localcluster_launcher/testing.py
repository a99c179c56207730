"""Test support shared by the pytest fixtures: which cluster a session runs against."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import LocalCluster

# kubernetes_asyncio accepts plain dicts as request bodies; its stubs only name the model classes.
Manifest = Any


@dataclass(frozen=True)
class KubeCluster:
    kubeconfig: Path
    # The LocalCluster this session started (fake kubelet, stamped v1.37.2), for fault tests such as
    # restarting its kube-apiserver; None for a cluster given by KUBECONFIG.
    control_plane: LocalCluster | None = field(default=None, compare=False, repr=False)

    @property
    def local(self) -> bool:
        return self.control_plane is not None


def session_cluster(state_dir: Path, controller_manager_args: tuple[str, ...] = ()) -> Iterator[KubeCluster]:
    """Generator for a session fixture: ``KUBECONFIG``'s cluster if set, else a LocalCluster in ``state_dir``
    (its kube-controller-manager with ``controller_manager_args`` besides its own).

    A failing build or start raises: the tests depending on it error out instead of being skipped.
    """
    given = os.environ.get("KUBECONFIG")
    if given:
        yield KubeCluster(Path(given.split(os.pathsep)[0]))
        return
    with LocalCluster(controller_manager_args=controller_manager_args) as cluster:
        cluster.start(state_dir)
        yield KubeCluster(cluster.kubeconfig, control_plane=cluster)


def manifest(body: dict[str, Any]) -> Manifest:
    """Pass a plain dict where the client's stubs expect a model (runtime accepts both)."""
    return body
