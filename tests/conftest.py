"""Fixtures shared by test modules: a throwaway PostgreSQL cluster and store URLs for both
backends (PostgreSQL from tests/pg.py fails, never skips, when it is not installed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from pg import PgCluster, PgMissing


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
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/ivr.db"  # absolute: sqlite:////tmp/…
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return cluster.dsn.rsplit("/", 1)[0] + f"/{name}"
