"""Ledger fixtures: every ledger test runs on SQLite and on the PostgreSQL server at
127.0.0.1:5432 (a fresh schema per test, dropped after)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger.db import make_engine, migrate

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_available() -> str | None:
    try:
        eng = sa.create_engine(PG_URL)
        with eng.connect():
            pass
        eng.dispose()
        return None
    except sa.exc.SQLAlchemyError as exc:
        return f"no PostgreSQL server reachable at 127.0.0.1:5432 ({exc.__class__.__name__})"


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A new schema on the local server for one test; yields its name, drops it after."""
    schema = f"poold_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    reason = _pg_available()
    if reason:
        pytest.skip(reason)
    with fresh_pg_schema() as schema:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(ledger_url)
    migrate(engine)
    yield engine
    engine.dispose()
