"""The state suite's two backends. A throwaway PostgreSQL server for a test session: Debian's
postgresql binaries, a cluster in a temp dir, a unix socket there and 127.0.0.1 on a free port,
stopped and deleted at the end; and raw access to either backend, outside lrelease.

initdb refuses to run as root: as root, the cluster belongs to the ``postgres`` OS user (the
Debian package creates it). The tests connect over TCP as role ``lrelease`` with a random
password (SCRAM), so every URL they use carries a password that must never be shown."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

PG_BIN = Path(os.environ.get("LRELEASE_PG_BIN", "/usr/lib/postgresql/15/bin"))
ROLE = "lrelease"


def missing() -> str:
    """Why no server can be started here ("" when it can)."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"{PG_BIN / tool} is missing (Debian package postgresql; scripts/bootstrap.sh installs it)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres OS user to own the cluster"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="lrelease-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        self.user = "postgres" if os.geteuid() == 0 else None
        self._count = 0

    def _run(self, *args: str) -> None:
        kw = {"user": self.user, "group": self.user} if self.user else {}
        subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=120, cwd=self.root, **kw)

    def start(self) -> PgServer:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256")
        options = (f"-k {self.root} -h 127.0.0.1 -p {self.port} -c fsync=off -c synchronous_commit=off"
                   " -c full_page_writes=off -c max_connections=200")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")
        self.admin(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        return self

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database owned by the test role; its URL (with the password)."""
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        self.admin(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def raw(target, sql: str, **params) -> list[tuple]:
    """Run ``sql`` on the database at ``target`` outside lrelease (what an operator or a broken
    process might do); the rows it returns, if any."""
    url = target if isinstance(target, str) else f"sqlite:///{target}"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def dump(target) -> str:
    """Every row of every table of the database at ``target``, as text."""
    url = target if isinstance(target, str) else f"sqlite:///{target}"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return "\n".join(repr(tuple(row)) for name in names
                             for row in conn.execute(sa.text(f'SELECT * FROM "{name}"')))  # noqa: S608
    finally:
        engine.dispose()
