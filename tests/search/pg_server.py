"""A throwaway PostgreSQL server for the tests: ``initdb`` in a temporary folder, ``pg_ctl start`` on
127.0.0.1 at a free port (and a unix socket in the same folder), a password-protected role, one fresh database
per test, everything stopped and deleted afterwards.

The server refuses to run as root, so as root it runs as the ``postgres`` user (``runuser``), in a folder
owned by that user. Tests skip, saying why, only where no server can be started (no PostgreSQL binaries — CI
installs them, see ``.ci/run`` —, no ``psycopg``, or no unprivileged user to run it as).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

USER, PASSWORD = "tensorslim", "s3cret-pw"


def bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``$TENSORSLIM_PG_BINDIR``, ``PATH``, else Debian's newest
    ``/usr/lib/postgresql/N/bin``."""
    if os.environ.get("TENSORSLIM_PG_BINDIR"):
        return Path(os.environ["TENSORSLIM_PG_BINDIR"])
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "pg_ctl").exists():
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(dirs[-1]).parent if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``start()`` / ``stop()`` a private cluster; ``url(db)`` / ``create_database()`` for the tests."""

    def __init__(self, bin_dir: Path):
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tensorslim-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.as_user: str | None = None
        if os.geteuid() == 0:  # postgres will not run as root
            self.as_user = "postgres"
            pw = pwd.getpwnam(self.as_user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_user:
            cmd = (["runuser", "-u", self.as_user, "--", *cmd] if shutil.which("runuser")
                   else ["su", self.as_user, "-s", "/bin/sh", "-c", shlex.join(cmd)])
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check, cwd=self.root)

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8", "--no-sync")
        for _ in range(5):  # a free port may be taken by someone else meanwhile: try another
            self.port = _free_port()
            opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -F -c max_connections=200"
            res = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                            "-t", "60", "start", check=False)
            if res.returncode == 0:
                break
        else:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {res.stderr.strip()} {log[-800:]}")
        self._admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name} OWNER {USER}")
        return name

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.data.exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _why_not() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]', part of the dev extra)"
    if bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql (.ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the test session (started on first use)."""
    why = _why_not()
    if why:
        pytest.skip(f"no PostgreSQL server can be started: {why}")
    server = PostgresServer(bindir())
    try:
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        server.stop()
        detail = getattr(err, "stderr", None) or err
        pytest.skip(f"no PostgreSQL server can be started: {' '.join(str(detail).split())[:300]}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server, as a ``postgresql+psycopg://user:pass@host:port/db`` URL."""
    return postgres_server.url(postgres_server.create_database())
