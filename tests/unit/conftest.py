"""The state suite runs against both backends: ``state_db`` is a fresh SQLite file's path or a
fresh database's URL on a real PostgreSQL server this session started (tests/statedbs.py)."""

from __future__ import annotations

import os

import pytest

from tests import statedbs

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg_server():
    why = statedbs.missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test the PostgreSQL backend: {why}")
        pytest.skip(f"no PostgreSQL server for the state suite: {why}")
    server = statedbs.PgServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def state_db(request, tmp_path):
    """Where a StateStore lives: a new SQLite file, or a new PostgreSQL database (its URL)."""
    if request.param == "sqlite":
        return tmp_path / "state" / "lrelease.db"
    return request.getfixturevalue("pg_server").new_database()
