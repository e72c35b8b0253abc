"""Real MariaDB servers for the database tests.

``mysql_url``: a fresh database (``trtseg_test_<random>``, dropped at the end of the session) on the
server at 127.0.0.1:3306 (root, no password) when one answers, else (or always, with
TRTSEG_TEST_MYSQL=private) on a throwaway server this session starts. ``private_mariadb``: always a
throwaway server of the test's own, on its own port and data directory, that the test may stop and
start again (database-down tests).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.services.ports import free_port, kill_process, stop_process

logger = logging.getLogger(__name__)

SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


@dataclass(frozen=True)
class MariaDBServer:
    """Where a server listens and how to log in (root without password)."""

    host: str
    port: int
    user: str = "root"

    def url(self, database: str) -> str:
        return f"mysql+pymysql://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, sql: str, timeout_s: int = 5) -> None:
        """Run one administrative statement (CREATE/DROP DATABASE) on the server."""
        conn = pymysql.connect(host=self.host, port=self.port, user=self.user, connect_timeout=timeout_s)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
            conn.commit()
        finally:
            conn.close()

    def answers(self, timeout_s: int = 2) -> bool:
        try:
            pymysql.connect(host=self.host, port=self.port, user=self.user, connect_timeout=timeout_s).close()
            return True
        except pymysql.MySQLError:
            return False


def _binary(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


class PrivateMariaDB:
    """A throwaway MariaDB on its own data directory and port; stop() and start() keep both."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        server, install = _binary("mariadbd") or _binary("mysqld"), _binary("mariadb-install-db")
        if server is None or install is None:
            pytest.skip("MariaDB server binaries (mariadbd, mariadb-install-db) are not installed")
        self.server_bin, self.install_bin = server, install
        self.workdir = workdir
        self.datadir = workdir / "data"
        # Unix socket paths are limited to ~107 bytes, so the socket lives in a short directory.
        self._sockdir = Path(tempfile.mkdtemp(prefix="mdb"))
        self.port = port or free_port()
        self.info = MariaDBServer("127.0.0.1", self.port)
        self.proc: subprocess.Popen[bytes] | None = None
        self._install()

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _install(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.install_bin,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--innodb-log-file-size=8M",
            "--innodb-buffer-pool-size=16M",
            *self._user_args(),
        ]
        done = subprocess.run(args, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout_s: float = 60.0) -> PrivateMariaDB:
        """Start (or restart) the server and wait until it accepts logins."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - the server writes it for its life
        self.proc = subprocess.Popen(
            [
                self.server_bin,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self._sockdir / 'mysqld.sock'}",
                f"--pid-file={self.workdir / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=16M",
                "--performance-schema=OFF",
                "--max-connections=60",
                *self._user_args(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}: {self._log_tail()}")
            if self.info.answers(timeout_s=1):
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"mariadbd did not accept logins on port {self.port} in {timeout_s} s: {self._log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``): a clean shutdown keeps the data."""
        stop_process(self.proc, timeout_s, kill_wait_s=10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut would: InnoDB recovers on the next start."""
        kill_process(self.proc, wait_s=10)
        self.proc = None

    def url(self, database: str) -> str:
        return self.info.url(database)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self._sockdir, ignore_errors=True)

    def _log_tail(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture(scope="session")
def mysql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    """The machine's MariaDB at 127.0.0.1:3306 when it answers, else a throwaway one for the session."""
    shared = MariaDBServer("127.0.0.1", 3306)
    if os.environ.get("TRTSEG_TEST_MYSQL") != "private" and shared.answers():
        yield shared
        return
    private = PrivateMariaDB(tmp_path_factory.mktemp("mariadb-session"))
    try:
        private.start()
        yield private.info
    finally:
        private.cleanup()


@pytest.fixture(scope="session")
def mysql_url(mysql_server: MariaDBServer) -> Iterator[str]:
    """A URL of a fresh, empty database of this session (dropped at the end)."""
    name = f"trtseg_test_{secrets.token_hex(4)}"
    mysql_server.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield mysql_server.url(name)
    finally:
        try:
            mysql_server.execute(f"DROP DATABASE IF EXISTS `{name}`")
        except pymysql.MySQLError as exc:  # the server went away: nothing left to drop
            logger.warning("could not drop test database name=%s error=%s", name, exc)


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    """A started throwaway MariaDB of this test, stoppable and restartable on the same port and data."""
    server = PrivateMariaDB(tmp_path / "mariadb")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
