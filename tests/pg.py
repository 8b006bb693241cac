"""A throwaway PostgreSQL cluster for tests, from the Debian package's binaries.

`PgCluster.start()` runs initdb and pg_ctl on a temporary directory (trust auth, 127.0.0.1
and a free port, its socket in that directory, fsync off). initdb refuses to run as root,
so as root the server runs as the `postgres` system user the Debian package creates.
Without the binaries it raises PgMissing: the tests using it fail, never skip.
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
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
    "install the Debian package postgresql (`apt-get install -y postgresql`, "
    "or run `scripts/setup.sh --test`)"
)


class PgMissing(RuntimeError):
    pass


def bin_dir() -> Path:
    """The newest installed server's bin directory (PG_BIN overrides)."""
    if os.environ.get("PG_BIN"):
        found = Path(os.environ["PG_BIN"])
        if (found / "initdb").is_file():
            return found
        raise PgMissing(f"PG_BIN={found} has no initdb; {INSTALL_HINT}")
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(p: str) -> float:
        try:
            return float(Path(p).parent.parent.name)
        except ValueError:
            return 0.0

    if not candidates:
        raise PgMissing(INSTALL_HINT)
    return Path(max(candidates, key=version)).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    def __init__(self) -> None:
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self._pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgMissing(f"no `postgres` system user; {INSTALL_HINT}") from None
        self.dir = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.started = False

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def create_database(self, prefix: str = "t") -> str:
        """A new empty database in the cluster; its DSN."""
        import asyncpg  # only the callers that make databases need it

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(self.dsn)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)

    def _check(self, what: str, proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    def start(self) -> PgCluster:
        if self.as_root:
            os.chown(self.dir, self._pw.pw_uid, self._pw.pw_gid)
        self._check(
            "initdb",
            self._run(
                str(self.bin / "initdb"),
                "-D", str(self.data),
                "-U", "postgres",
                "--auth=trust",
                "-E", "UTF8",
                "--no-sync",
            ),
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=100"
        )
        proc = self._run(
            str(self.bin / "pg_ctl"),
            "start", "-w", "-t", "60",
            "-D", str(self.data),
            "-l", str(self.log),
            "-o", options,
        )  # fmt: skip
        self._check("pg_ctl start", proc)
        self.started = True
        return self

    def stop(self) -> None:
        try:
            if self.started:
                self._run(str(self.bin / "pg_ctl"), "stop", "-m", "immediate", "-D", str(self.data))
                self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
