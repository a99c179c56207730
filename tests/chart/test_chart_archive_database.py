"""The chart's evaluation PostgreSQL, configured as the chart configures it, on a real PostgreSQL server.

The server is Debian's (tests/support/postgres.py), started with the chart's rendered pg_hba.conf and its
password settings; the archive's owner is made by the chart's rendered SQL, and the password is rotated by the
chart's rendered start script. No container runs here, so the NetworkPolicy is proven by rendering: it admits
the operator's and the API's pods alone (test_chart_render.py and below); the password is what a pod that gets
through anyway (no enforcing CNI) still lacks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr
from scheduledjob_archive.repository import Archive
from scheduledjob_archive.settings import ArchiveSettings

from tests.chart.test_chart_render import FULLNAME, NAMESPACE, Doc, Helm, by_kind, container, one
from tests.support.postgres import SERVER_USER, _bin, _free_port

PASSWORD = "first-Pa55word'with\"quotes"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


@dataclass(frozen=True)
class ChartDatabase:
    directory: Path
    port: int
    user: str
    config: dict[str, str]  # the rendered ConfigMap's data

    def run(self, *argv: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
        command = [RUNUSER, "-u", SERVER_USER, "--", *argv] if os.geteuid() == 0 else list(argv)
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=120, check=False, env=env)
        assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def psql(self, *args: str) -> str:
        """psql as the superuser over the Unix socket (the chart's `local all all trust`)."""
        return self.run(_bin("psql"), "-h", str(self.directory), "-p", str(self.port), "-U", "postgres", *args)

    def url(self, database: str | None = None, user: str | None = None) -> str:
        return f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database or self.user}"


def rendered(helm: Helm) -> tuple[Doc, Doc]:
    docs = helm.template()
    return one(docs, "ConfigMap", f"{FULLNAME}-archive-config"), one(docs, "StatefulSet", f"{FULLNAME}-archive")


def write(path: Path, text: str, mode: int = 0o640) -> Path:
    path.write_text(text)
    path.chmod(mode)
    if os.geteuid() == 0:
        shutil.chown(path, SERVER_USER)
    return path


@pytest.fixture(scope="module")
def database(helm: Helm) -> Iterator[ChartDatabase]:
    configmap, statefulset = rendered(helm)
    env = {e["name"]: e.get("value") for e in container(statefulset)["env"]}
    directory = Path(tempfile.mkdtemp(prefix="selfhelp-chart-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, SERVER_USER)
    db = ChartDatabase(directory, _free_port(), env["ARCHIVE_USER"], configmap["data"])
    data = directory / "data"
    hba = write(directory / "pg_hba.conf", db.config["pg_hba.conf"])
    password_file = write(directory / "password", PASSWORD + "\n")
    # What the image's entrypoint does on the first start: initdb, the server with the chart's settings, then
    # /docker-entrypoint-initdb.d/10-archive-role.sh (psql -v user -v password -f archive-role.sql).
    db.run(_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = (
        f"-p {db.port} -c listen_addresses=127.0.0.1 -k {directory} -c fsync=off "
        f"-c hba_file={hba} -c password_encryption=scram-sha-256"
    )
    pg_ctl = [_bin("pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w"]
    db.run(*pg_ctl, "-o", options, "start")
    try:
        sql = write(directory / "archive-role.sql", db.config["archive-role.sql"])
        db.psql("-v", "ON_ERROR_STOP=1", "-d", "postgres", "-v", f"user={db.user}", "-v", f"password={PASSWORD}",
                "-f", str(sql))  # fmt: skip
        db.psql(
            "-c", f"ALTER ROLE postgres PASSWORD '{password_file.read_text().strip().replace(chr(39), chr(39) * 2)}'"
        )
        yield db
    finally:
        subprocess.run(
            ([RUNUSER, "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []) + [*pg_ctl, "-m", "fast", "stop"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)


async def connects(url: str, password: str | None) -> bool:
    try:
        connection = await asyncpg.connect(url, password=password, timeout=10)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    await connection.close()
    return True


async def test_a_connection_without_the_password_fails(database: ChartDatabase) -> None:
    assert await connects(database.url(), PASSWORD)  # the right one works, so the failures below are about it
    assert not await connects(database.url(), None)
    assert not await connects(database.url(), "")
    assert not await connects(database.url(), "guessed")
    # The superuser is refused over TCP whatever the password; the owner reaches its own database only.
    assert not await connects(database.url("postgres", "postgres"), PASSWORD)
    assert not await connects(database.url("postgres"), PASSWORD)
    assert not await connects(database.url(user="postgres"), PASSWORD)


async def test_the_password_is_stored_as_scram_and_the_owner_is_no_superuser(database: ChartDatabase) -> None:
    stored = database.psql("-At", "-c", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{database.user}'")
    assert stored.startswith("SCRAM-SHA-256$"), stored
    connection = await asyncpg.connect(database.url(), password=PASSWORD)
    try:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles"
            " WHERE rolname = current_user"
        )
        assert role is not None and not any(role.values()), dict(role or {})
        owner = await connection.fetchval("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'")
        assert owner == database.user
        assert await connection.fetchval("SELECT current_database()") == database.user
    finally:
        await connection.close()


async def test_the_archive_migrates_and_writes_as_the_owner_with_the_password_from_a_file(
    database: ChartDatabase, tmp_path: Path
) -> None:
    """What the operator does at start, with the env the chart gives it (URL without password + password file)."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # as mounted from the Secret (a trailing newline is forgiven)
    url = database.url().replace("postgresql://", "postgresql+asyncpg://")
    archive = Archive.from_settings(ArchiveSettings(url=SecretStr(url), password_file=password_file))
    try:
        await archive.migrate()
    finally:
        await archive.close()
    tables = database.psql(
        "-At", "-d", database.user, "-c", "SELECT tableowner FROM pg_tables WHERE schemaname='public'"
    )
    assert set(tables.split()) == {database.user}
    with pytest.raises(FileNotFoundError):  # before the kubelet mounted the Secret: the operator's start retries
        ArchiveSettings(url=SecretStr(url), password_file=tmp_path / "absent").resolved_url()


def run_start_script(database: ChartDatabase, directory: Path, data: Path, password_file: Path) -> None:
    """The chart's start.sh as the container runs it, with a stand-in for the image's entrypoint that starts
    Debian's server (on `database.port`) with the chart's pg_hba.conf."""
    bindir = directory / "bin"
    bindir.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(bindir, SERVER_USER)
    hba = write(directory / "pg_hba.conf", database.config["pg_hba.conf"])
    write(
        bindir / "docker-entrypoint.sh",
        "#!/bin/sh\n"
        '[ "$1" = postgres ] && [ "$2" = -c ] || exit 64\n'  # called as the chart calls the image's entrypoint
        f'exec {_bin("pg_ctl")} -D "$PGDATA" -l {directory / "log"} -w start -o "-p {database.port} '
        f'-c listen_addresses=127.0.0.1 -k {directory} -c hba_file={hba} -c password_encryption=scram-sha-256"\n',
        0o750,
    )
    start = write(directory / "start.sh", database.config["start.sh"], 0o750)
    postgres_bin = str(Path(_bin("postgres")).parent)
    env = {
        "PATH": f"{bindir}:{postgres_bin}:/usr/bin:/bin",
        "PGDATA": str(data),
        "POSTGRES_PASSWORD_FILE": str(password_file),
        "ARCHIVE_USER": database.user,
    }
    database.run("/bin/sh", str(start), env=env)


def test_a_restart_sets_the_password_from_the_secret_which_is_how_it_rotates(database: ChartDatabase) -> None:
    """The chart's start.sh: before the image's entrypoint starts the server, single-user mode sets the owner's
    password from the mounted file."""
    directory, data = database.directory, database.directory / "data"
    database.run(_bin("pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop")
    run_start_script(database, directory, data, write(directory / "rotated", "second-Pa55word\n"))

    assert not asyncio.run(connects(database.url(), PASSWORD))
    assert asyncio.run(connects(database.url(), "second-Pa55word"))
    stored = database.psql("-At", "-c", f"SELECT rolpassword FROM pg_authid WHERE rolname = '{database.user}'")
    assert stored.startswith("SCRAM-SHA-256$")


def test_only_the_operator_and_the_api_may_reach_it(helm: Helm) -> None:
    """No CNI here: the rendered NetworkPolicy's selectors are the proof that other pods are not admitted."""
    docs = helm.template()
    policy = one(docs, "NetworkPolicy", f"{FULLNAME}-archive")["spec"]
    statefulset = one(docs, "StatefulSet", f"{FULLNAME}-archive")
    assert policy["podSelector"]["matchLabels"] == statefulset["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "postgresql", "protocol": "TCP"}]
    peers = rule["from"]
    assert all(set(peer) == {"podSelector"} for peer in peers), peers  # same namespace, no ipBlock, no "any"
    admitted = [peer["podSelector"]["matchLabels"] for peer in peers]
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    expected = [
        deployments[f"{FULLNAME}-{component}"]["spec"]["selector"]["matchLabels"] for component in ("operator", "api")
    ]
    assert admitted == expected
    for labels in admitted:
        assert labels["app.kubernetes.io/component"] in {"operator", "api"} and "app.kubernetes.io/instance" in labels
    # A pod of the release without those labels (e.g. the database itself, or a Job's pod) matches no peer.
    assert statefulset["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "archive"
    assert statefulset["metadata"]["namespace"] == NAMESPACE


def test_the_database_pod_is_restricted_probed_and_reads_its_password_from_a_file(helm: Helm) -> None:
    docs = helm.template()
    statefulset = one(docs, "StatefulSet", f"{FULLNAME}-archive")
    pod = statefulset["spec"]["template"]["spec"]
    db = container(statefulset)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    sc = db["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(db)
    env = {e["name"]: e for e in db["env"]}
    assert "POSTGRES_HOST_AUTH_METHOD" not in env and "POSTGRES_PASSWORD" not in env
    assert all("valueFrom" not in e for e in env.values())  # no secret in the environment
    mounts = {m["mountPath"]: m for m in db["volumeMounts"]}
    password_dir = str(Path(env["POSTGRES_PASSWORD_FILE"]["value"]).parent)
    assert mounts[password_dir]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = volumes[mounts[password_dir]["name"]]["secret"]
    assert secret["secretName"] == f"{FULLNAME}-archive-password" and not secret.get("optional")
    # Writable: the data volume, the socket and /tmp only.
    writable = {m["mountPath"] for m in db["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/postgresql/data", "/var/run/postgresql", "/tmp"}
    # The chart renders no Secret (the operator creates it once): no render re-rolls the password.
    assert not by_kind(docs, "Secret")
    hba = one(docs, "ConfigMap", f"{FULLNAME}-archive-config")["data"]["pg_hba.conf"]
    host_lines = [line.split() for line in hba.splitlines() if line.startswith("host")]
    assert host_lines == [
        ["host", "scheduledjobs", "scheduledjobs", "all", "scram-sha-256"],
        ["host", "all", "all", "all", "reject"],
    ]
    # The operator creates it, and the operator and the API read it from a file.
    operator = one(docs, "Deployment", f"{FULLNAME}-operator")
    operator_env = {e["name"]: e.get("value") for e in container(operator)["env"]}
    assert operator_env["SCHEDULED_JOBS_GENERATED_ARCHIVE_SECRET_NAME"] == f"{FULLNAME}-archive-password"
    for component, optional in (("operator", True), ("api", False)):
        spec = one(docs, "Deployment", f"{FULLNAME}-{component}")["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == f"{FULLNAME}-archive-password"
        assert bool(volume["secret"].get("optional")) is optional  # the operator starts before it exists


def test_a_data_directory_of_an_earlier_chart_gets_the_owner_at_its_next_start(database: ChartDatabase) -> None:
    """Before this chart version the evaluation database was a superuser with trust authentication: its data
    directory has no owner role. The upgraded Pod's start script creates it, its database and schema."""
    directory = Path(tempfile.mkdtemp(prefix="selfhelp-chart-pg-old-"))
    if os.geteuid() == 0:
        shutil.chown(directory, SERVER_USER)
    data = directory / "data"
    old = ChartDatabase(directory, _free_port(), database.user, database.config)
    try:
        old.run(_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        run_start_script(old, directory, data, write(directory / "password", "upgraded-Pa55word\n"))
        assert not asyncio.run(connects(old.url(), None))
        assert asyncio.run(connects(old.url(), "upgraded-Pa55word"))
        owner = old.psql(
            "-At", "-d", old.user, "-c", "SELECT nspowner::regrole FROM pg_namespace WHERE nspname='public'"
        )
        assert owner.strip() == old.user
        superuser = old.psql("-At", "-c", f"SELECT rolsuper FROM pg_roles WHERE rolname = '{old.user}'")
        assert superuser.strip() == "f"
    finally:
        subprocess.run(
            ([RUNUSER, "-u", SERVER_USER, "--"] if os.geteuid() == 0 else [])
            + [_bin("pg_ctl"), "-D", str(data), "-w", "-m", "fast", "stop"],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(directory, ignore_errors=True)
