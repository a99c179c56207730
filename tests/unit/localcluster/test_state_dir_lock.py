"""As a developer running `make bench` (or `make run`) twice by mistake, the second control plane
refuses to start on the first one's state directory instead of wiping its etcd data under it."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
from localcluster_launcher.cluster import LOCK_FILE, LocalCluster
from localcluster_launcher.process import ClusterError


def test_a_second_control_plane_on_a_state_dir_in_use_refuses_and_wipes_nothing(tmp_path: Path) -> None:
    etcd_data = tmp_path / "etcd" / "member"
    etcd_data.mkdir(parents=True)
    (etcd_data / "snap").write_text("the first cluster's data")
    with (tmp_path / LOCK_FILE).open("w") as first:  # as a running control plane holds it
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ClusterError, match="in use by another local control plane"):
            LocalCluster(binary=tmp_path / "no-binary").start(tmp_path)
    assert (etcd_data / "snap").read_text() == "the first cluster's data"


def test_the_state_dir_is_free_again_once_a_control_plane_stops(tmp_path: Path) -> None:
    cluster = LocalCluster(binary=tmp_path / "no-binary")  # etcd cannot start: start fails, then stops
    with pytest.raises((ClusterError, OSError)):
        cluster.start(tmp_path)
    with (tmp_path / LOCK_FILE).open("w") as next_one:
        fcntl.flock(next_one, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise BlockingIOError if still held
