"""A throwaway PostgreSQL server for the team set-up tests (tests/test_team.py).

Debian's server binaries (package `postgresql`, which .ci/run installs), a new cluster in a
temporary folder, TCP on a free loopback port with password authentication, stopped and
removed after the tests. PostgreSQL refuses to run as root: as root (CI), its own commands
run as the `postgres` account the Debian package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ADMIN = "postgres"  # the cluster's superuser
# .ci/run sets this: there a missing server fails the tests instead of skipping them.
REQUIRED = "DEEPNORMAL_REQUIRE_POSTGRES"


def server_bindir() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda path: int(Path(path).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def unavailable() -> str | None:
    """Why these tests cannot run here, or None."""
    try:
        import psycopg  # noqa: F401  (the `postgres` extra)
    except ImportError:
        return ("the PostgreSQL driver is not installed (pip install -e '.[postgres]'; "
                "make test does)")
    if server_bindir() is None:
        return "no PostgreSQL server (Debian package `postgresql`; .ci/run installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(ADMIN)
        except KeyError:
            return f"running as root and there is no '{ADMIN}' account to run PostgreSQL as"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRED):
        pytest.fail(f"{REQUIRED} is set and {reason}")
    pytest.skip(reason)


@dataclass
class Cluster:
    bindir: Path
    home: Path  # data folder, log, and the Unix socket
    port: int
    admin_password: str

    @property
    def os_user(self) -> str | None:
        return ADMIN if os.geteuid() == 0 else None

    @property
    def data(self) -> Path:
        return self.home / "data"

    def _as_owner(self, *args: str | Path) -> subprocess.CompletedProcess:
        result = subprocess.run([str(arg) for arg in args], cwd=self.home, user=self.os_user,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}\n"
                                 f"{self.log_tail()}")
        return result

    def log_tail(self) -> str:
        log = self.home / "server.log"
        return log.read_text()[-2000:] if log.exists() else ""

    def init(self) -> None:
        password_file = self.home / "admin-password"
        password_file.write_text(self.admin_password + "\n")
        self._chown(password_file)
        self._as_owner(self.bindir / "initdb", "-D", self.data, "-U", ADMIN, "-E", "UTF8",
                       "--auth-local=trust", "--auth-host=scram-sha-256",
                       f"--pwfile={password_file}", "--no-sync")
        password_file.unlink()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(self.bindir / "pg_ctl", "-D", self.data, "-l", self.home / "server.log",
                       "-o", options, "-w", "start")

    def stop(self) -> None:
        self._as_owner(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def is_running(self) -> bool:
        return subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"],
                              user=self.os_user, capture_output=True).returncode == 0

    def tool(self, name: str) -> str:
        """A client program (psql, createdb) of this server's version."""
        return str(self.bindir / name)

    def url(self, database: str, user: str, password: str | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql+psycopg://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def _chown(self, path: Path) -> None:
        if self.os_user:
            account = pwd.getpwnam(self.os_user)
            os.chown(path, account.pw_uid, account.pw_gid)


@contextlib.contextmanager
def throwaway_cluster(port: int):
    """A running cluster on 127.0.0.1:port; stopped and deleted afterwards."""
    reason = unavailable()
    if reason:
        skip_or_fail(reason)
    # Not under pytest's basetemp: that folder is private to the user running the tests,
    # and the server may run as another account.
    home = Path(tempfile.mkdtemp(prefix="deepnormal-postgres-"))
    cluster = Cluster(server_bindir(), home, port, admin_password="admin-secret")
    cluster._chown(home)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            cluster.stop()
        shutil.rmtree(home, ignore_errors=True)
