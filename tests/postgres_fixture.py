"""A throwaway PostgreSQL server for the store tests.

Registered as a pytest plugin by ``tests/conftest.py``.

``postgres_server`` (session scope) runs Debian's ``initdb`` into a temporary folder and starts
the server on a free TCP port of 127.0.0.1 (trust authentication, unix socket inside the
temporary folder, fsync off), and stops it at the end.  initdb and postgres refuse to run as
root, so under root they run as the ``postgres`` system user.  ``postgres_url`` gives each test
a fresh, empty database.  ``store_url`` parametrises a test over SQLite and PostgreSQL (as the
database owner, for migrations and trigger checks).  ``app_store_url`` does the same, but the
PostgreSQL database is migrated by the owner and the URL logs in as the least-privilege
application role (``echomeasure db init --roles``): the store tests run as the app would.

Without the PostgreSQL binaries (``make system-deps`` installs them) the PostgreSQL cases are
skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running throwaway server; ``url(dbname)`` gives a SQLAlchemy URL."""

    def __init__(self, bindir: Path, root: Path, port: int, run_as: str | None) -> None:
        self.bindir, self.root, self.port, self.run_as = bindir, root, port, run_as
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log = root / "postgres.log"

    def _cmd(self, *args: str) -> list[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *cmd] if self.run_as else cmd

    def start(self) -> None:
        self.socket_dir.mkdir()
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for p in (self.root, self.socket_dir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        run = lambda cmd: subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
        run(self._cmd("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"))
        opts = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        run(self._cmd("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start"))

    def stop(self) -> None:
        subprocess.run(
            self._cmd("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"),
            capture_output=True,
            timeout=60,
        )

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return name


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (skips when the binaries are absent)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin); run `make system-deps`")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed; pip install -e '.[postgres]'")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="echomeasure-pg-"))
    server = PostgresServer(bindir, root, _free_port(), run_as)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.log.read_text() if server.log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {exc.stderr or exc.stdout}\n{log}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a fresh, empty PostgreSQL database for one test."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture
def postgres_app_url(postgres_url: str) -> str:
    """A fresh PostgreSQL database migrated by its owner; the URL logs in as the app role."""
    from echomeasure.store import open_store
    from echomeasure.store.admin import create_app_role

    open_store(postgres_url).close()
    return create_app_role(postgres_url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def app_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: SQLite file in tmp_path, or PostgreSQL as the application role."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("postgres_app_url")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL: SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("postgres_url")
