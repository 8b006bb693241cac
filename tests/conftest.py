"""Fixtures shared by test modules: a throwaway PostgreSQL cluster and store URLs for both
backends (PostgreSQL from tests/pg.py fails, never skips, when it is not installed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pg import PgCluster, PgMissing

from ivr.store import Store, open_store


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    missing = None
    try:
        cluster = PgCluster()
    except PgMissing as e:
        missing = str(e)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database for a server to start on: a SQLite path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "data" / "ivr.db")
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    yield asyncio.run(cluster.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/ivr.db"  # absolute: sqlite:////tmp/…
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return await cluster.create_database()


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    s = await open_store(url)
    try:
        yield s
    finally:
        await s.close()
