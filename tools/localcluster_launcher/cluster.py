"""LocalCluster: etcd -> kube-apiserver -> kube-controller-manager -> fake kubelet, as child processes."""

from __future__ import annotations

import fcntl
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from . import health
from .build import ensure_binary
from .kubeconfig import write_kubeconfig
from .pki import Pki, create_pki, existing_pki
from .process import ClusterError, Component, free_port, port_is_free, spawn, stop

DEFAULT_TIMEOUT = 90.0
NODE_NAME = "localcluster-node"
PORTS_FILE = "ports.json"  # with keep_data: the ports of the last start, reused while free
LOCK_FILE = "lock"  # held while a control plane runs from the directory
CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "namespace-controller",
    "deployment-controller",
    "replicaset-controller",
    "clusterrole-aggregation-controller",
    # StorageVersionMigrations (storagemigration.k8s.io/v1, GA in 1.37): rewrites every object of a resource at
    # its storage version and prunes a CRD's status.storedVersions. Needs the garbage collector (its informers)
    # and client-go's InOrderInformers and InformerResourceVersion gates (on by default in v1.37.2).
    "storage-version-migrator-controller",
)

# Requests of the clients the tests run, not of the control plane's own components; metadata only.
# Leases are audited too: the operator's leader Lease shows when each replica took it (its first successful write).
# A watch is logged once, when it opens (ResponseStarted): who watches what (the API's event stream proves its
# subscribers add none, tests/integration/api/test_event_stream.py). Other requests once, when answered.
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "userGroups": ["system:serviceaccounts", "system:nodes"]},
        {"level": "None", "users": ["system:kube-controller-manager", "system:apiserver"]},
        {"level": "Metadata", "verbs": ["watch"], "omitStages": ["ResponseComplete"]},
        {
            "level": "Metadata",
            "verbs": ["get", "list", "create", "update", "patch", "delete", "deletecollection"],
            "omitStages": ["ResponseStarted"],
        },
        {"level": "None"},
    ],
}


@dataclass
class LocalCluster:
    """A throw-away control plane rooted in one state directory.

    ``start`` wipes earlier etcd data and PKI in that directory: every start is a fresh cluster. With
    ``keep_data`` (`make cluster-up`, `make run`) it reuses them and the ports of the last start, so the
    objects, the certificates and the kubeconfig's server URL survive a stop and a new start.
    """

    binary: Path | None = None
    keep_data: bool = False
    with_kubelet: bool = True
    timeout: float = DEFAULT_TIMEOUT
    components: list[Component] = field(default_factory=list)
    state_dir: Path = Path()
    server: str = ""
    kubeconfig: Path = Path()
    timings: dict[str, float] = field(default_factory=dict)
    # The API server's audit log (JSON lines): requests of non-system users, with their User-Agent,
    # so fault tests can count each operator replica's writes (tests/integration/faults/).
    audit_log: Path = Path()
    kubelet_port: int = 0  # of the simulated kubelet's HTTPS API (logs), advertised by the Node
    # More flags for the kube-controller-manager, e.g. a higher client QPS (bench/scale.py).
    controller_manager_args: tuple[str, ...] = ()
    _apiserver_argv: list[str] = field(default_factory=list, repr=False)
    _ca_cert: Path = field(default=Path(), repr=False)
    _lock: TextIO | None = field(default=None, repr=False)  # the state dir's lock file, held

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, state_dir: Path) -> None:
        """Start everything and wait for each stage; on any failure stop what was started."""
        self.state_dir = state_dir.resolve()
        self._hold_state_dir()
        begin = time.monotonic()
        try:
            self._start(self.binary or ensure_binary())
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - begin

    def _hold_state_dir(self) -> None:
        """One control plane per state directory: a second one (a `make bench` beside another, a second
        `make run`) would wipe or share the first one's etcd data under it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.state_dir / LOCK_FILE).open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ClusterError(
                f"{self.state_dir} is in use by another local control plane: stop it first "
                "(`make cluster-down`, or let the benchmark or run using it finish) or give another --state-dir"
            ) from None
        self._lock = lock

    def _start(self, binary: Path) -> None:
        sd = self.state_dir
        if not self.keep_data:
            for stale in ("etcd", "pki"):
                shutil.rmtree(sd / stale, ignore_errors=True)
            (sd / PORTS_FILE).unlink(missing_ok=True)
        sd.mkdir(parents=True, exist_ok=True)
        pki = (self.keep_data and existing_pki(sd / "pki")) or create_pki(sd / "pki")

        etcd_url = self._start_etcd(binary)
        self.server = self._start_apiserver(binary, pki, etcd_url)
        self.kubeconfig = write_kubeconfig(sd / "kubeconfig", self.server, pki)
        self._start_controller_manager(binary, pki)
        if self.with_kubelet:
            self._start_kubelet(pki)

    def _port(self, name: str) -> int:
        """A free port; with ``keep_data`` the one this component had last time when it is still free."""
        path = self.state_dir / PORTS_FILE
        try:
            ports = json.loads(path.read_text()) if self.keep_data else {}
        except (OSError, ValueError):
            ports = {}
        port = ports.get(name)
        if not (isinstance(port, int) and port_is_free(port)):
            port = free_port()
        ports[name] = port
        path.write_text(json.dumps(ports) + "\n")
        return port

    def _spawn(self, name: str, argv: list[str]) -> Component:
        comp = spawn(name, argv, self.state_dir / "logs" / f"{name}.log")
        self.components.append(comp)
        return comp

    def _wait(self, check: Any, what: str, stage: str) -> None:
        self.timings[stage] = health.wait_until(check, what, self.timeout, self.components)

    def _start_etcd(self, binary: Path) -> str:
        client, peer = self._port("etcd-client"), self._port("etcd-peer")
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        data = self.state_dir / "etcd"
        data.mkdir(mode=0o700, exist_ok=self.keep_data)
        self._spawn(
            "etcd",
            [
                str(binary), "etcd",
                "--name=localcluster",
                f"--data-dir={data}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=localcluster={peer_url}",
                "--unsafe-no-fsync=true",  # test data: durability is worth nothing, speed is
                "--log-level=warn",
            ],
        )  # fmt: skip

        def healthy() -> bool:
            body = health.get_json(f"{url}/health")
            return isinstance(body, dict) and body.get("health") == "true"

        self._wait(healthy, f"etcd {url}/health", "etcd")
        return url

    def _start_apiserver(self, binary: Path, pki: Pki, etcd_url: str) -> str:
        port = self._port("kube-apiserver")
        server = f"https://127.0.0.1:{port}"
        self.audit_log = self.state_dir / "audit.log"
        audit_policy = self.state_dir / "audit-policy.json"
        audit_policy.write_text(json.dumps(AUDIT_POLICY))
        self._apiserver_argv = [
            str(binary), "kube-apiserver",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=batch",  # buffered: requests never wait for the log file
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            # No default route needed, and no attempt to publish a loopback endpoint.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--cert-dir={self.state_dir / 'pki'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki.sa_key}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # pods/log and kubectl logs reach the simulated kubelet over TLS verified both ways.
            f"--kubelet-client-certificate={pki.kubelet_client_cert}",
            f"--kubelet-client-key={pki.kubelet_client_key}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]  # fmt: skip
        self._spawn("kube-apiserver", self._apiserver_argv)
        self._ca_cert = pki.ca_cert
        self._wait_apiserver_ready(server, "apiserver")
        return server

    def _wait_apiserver_ready(self, server: str, stage: str) -> None:
        ctx = health.tls_context(self._ca_cert)
        self._wait(lambda: health.http_get(f"{server}/readyz", ctx)[0] == 200, f"kube-apiserver {server}/readyz", stage)

    def restart_apiserver(self, down_seconds: float = 0.0) -> float:
        """Stops the kube-apiserver (SIGTERM, as a rolling restart does), keeps it down for
        ``down_seconds``, then starts it again with the same port, certificates and etcd, so every
        client's kubeconfig stays valid. Returns the seconds from the stop until /readyz is 200 again."""
        index = next(i for i, comp in enumerate(self.components) if comp.name == "kube-apiserver")
        begin = time.monotonic()
        stop(self.components[index])
        time.sleep(down_seconds)
        log = self.state_dir / "logs" / "kube-apiserver.log"
        self.components[index] = spawn("kube-apiserver", self._apiserver_argv, log, append=True)
        self._wait_apiserver_ready(self.server, "apiserver-restart")
        return time.monotonic() - begin

    def _start_controller_manager(self, binary: Path, pki: Pki) -> None:
        self._spawn(
            "kube-controller-manager",
            [
                str(binary), "kube-controller-manager",
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--secure-port=0",
                *self.controller_manager_args,
            ],
        )  # fmt: skip
        ctx = health.tls_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        # The serviceaccount-controller creating `default` proves the KCM is connected and working.
        self._wait(lambda: health.http_get(url, ctx)[0] == 200, "the default ServiceAccount", "controller-manager")

    def _start_kubelet(self, pki: Pki) -> None:
        self.kubelet_port = free_port()
        self._spawn(
            "kubelet",
            [
                sys.executable, "-m", "localcluster_launcher", "kubelet",
                f"--kubeconfig={self.kubeconfig}", f"--node-name={NODE_NAME}",
                f"--port={self.kubelet_port}", f"--tls-cert-file={pki.kubelet_cert}",
                f"--tls-private-key-file={pki.kubelet_key}", f"--client-ca-file={pki.ca_cert}",
            ],
        )  # fmt: skip
        ctx = health.tls_context(pki.ca_cert, pki.admin_cert, pki.admin_key)
        url = f"{self.server}/api/v1/nodes/{NODE_NAME}"

        def node_ready() -> bool:
            node = health.get_json(url, ctx)
            if not isinstance(node, dict):
                return False
            conditions = node.get("status", {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        self._wait(node_ready, f"Node {NODE_NAME} to be Ready (fake kubelet)", "kubelet")

    def stop(self) -> None:
        """Stop in reverse start order so the apiserver never outlives etcd by long."""
        while self.components:
            stop(self.components.pop())
        if self._lock is not None:
            self._lock.close()  # releases the state directory
            self._lock = None

    def describe(self) -> dict[str, Any]:
        """JSON-able state for the CLI's state file."""
        return {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ca": str(self.state_dir / "pki" / "ca.crt"),
            "components": {c.name: {"pid": c.pid, "log": str(c.log)} for c in self.components},
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }

    def write_state(self, path: Path, **extra: Any) -> None:
        path.write_text(json.dumps({**self.describe(), **extra}, indent=2) + "\n")
