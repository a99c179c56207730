"""CLI: ``python -m localcluster_launcher {up,down,status,serve,kubelet} ...``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import supervisor
from .build import ensure_binary
from .cluster import NODE_NAME
from .process import ClusterError, pid_alive


def _up(state_dir: Path, foreground: bool) -> int:
    state = supervisor.read_state(state_dir)
    if supervisor.supervisor_pid(state_dir) is not None and state and supervisor.apiserver_ready(state):
        print(f"localcluster already running at {state['server']}; KUBECONFIG={state['kubeconfig']}")
        return 0
    if supervisor.stop_background(state_dir):
        print("stopped the remains of an unhealthy earlier cluster")
    try:
        binary = ensure_binary()
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if foreground:
        return supervisor.serve(state_dir, binary)
    print(f"starting etcd, kube-apiserver, kube-controller-manager and the fake kubelet ({state_dir}) ...")
    begin = time.monotonic()
    proc = supervisor.start_background(state_dir, binary)
    error = supervisor.wait_ready(state_dir, proc)
    if error is not None:
        print(f"error: localcluster did not start: {error}", file=sys.stderr)
        return 1
    kubeconfig = (state_dir / "kubeconfig").resolve()
    print(f"localcluster ready in {time.monotonic() - begin:.1f}s\n  export KUBECONFIG={kubeconfig}")
    return 0


def _down(state_dir: Path) -> int:
    print("localcluster stopped" if supervisor.stop_background(state_dir) else "localcluster was not running")
    return 0


def _status(state_dir: Path) -> int:
    state = supervisor.read_state(state_dir)
    pid = supervisor.supervisor_pid(state_dir)
    if state is None or pid is None:
        # Not running is an answer, not an error (`make cluster-status` exits 0); unhealthy is 1.
        print(f"localcluster: not running (state dir {state_dir})")
        return 0
    healthy = True
    print(f"{'supervisor':<24} pid {pid:<8} running")
    for name, comp in state.get("components", {}).items():
        alive = pid_alive(int(comp["pid"]))
        healthy &= alive
        print(f"{name:<24} pid {comp['pid']:<8} {'running' if alive else 'DEAD'}  log {comp['log']}")
    ready = supervisor.apiserver_ready(state)
    healthy &= ready
    print(f"{'apiserver /readyz':<24} {'ok' if ready else 'NOT READY'}  {state['server']}")
    print(f"{'node':<24} {NODE_NAME} (simulated; containers are not executed)")
    print(f"{'kubeconfig':<24} {state['kubeconfig']}")
    print(f"{'started in':<24} {state.get('timings', {}).get('total', '?')}s")
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster_launcher", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the cluster in the background (idempotent)"),
        ("down", "stop everything `up` started"),
        ("status", "show components and health; exit 1 if running but unhealthy"),
        ("serve", "internal: run the cluster in this process until SIGTERM"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--state-dir", type=Path, default=Path(".cluster"))
        if name == "up":
            cmd.add_argument("--foreground", action="store_true", help="run in this terminal until Ctrl-C")
        if name == "serve":
            cmd.add_argument("--binary", type=Path, default=None)
    kubelet = sub.add_parser("kubelet", help="internal: run the simulated kubelet")
    kubelet.add_argument("--kubeconfig", type=Path, required=True)
    kubelet.add_argument("--node-name", default=NODE_NAME)
    kubelet.add_argument("--port", type=int, default=0, help="port of the kubelet API (0: not served)")
    kubelet.add_argument("--tls-cert-file", type=Path, help="serving certificate of the kubelet API")
    kubelet.add_argument("--tls-private-key-file", type=Path)
    kubelet.add_argument("--client-ca-file", type=Path, help="CA that signs the apiserver's client certificate")

    args = parser.parse_args(argv)
    if args.command == "kubelet":
        from .kubelet import Serving
        from .kubelet import main as kubelet_main  # keeps the other commands free of aiohttp imports

        serving = None
        if args.port:
            serving = Serving(args.port, args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
        kubelet_main(args.kubeconfig, args.node_name, serving)
        return 0
    state_dir: Path = args.state_dir.resolve()
    if args.command == "up":
        return _up(state_dir, args.foreground)
    if args.command == "down":
        return _down(state_dir)
    if args.command == "status":
        return _status(state_dir)
    return supervisor.serve(state_dir, args.binary)


if __name__ == "__main__":
    sys.exit(main())
