"""Engines for both backends, migrations (Alembic), and the schema check the daemon runs first.

SQLAlchemy errors become `LedgerError` here, with a message an operator can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Table, create_engine, event, inspect, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from poold.ledger.models import SCHEMA_VERSION, SchemaVersion

MIGRATIONS = Path(__file__).parent / "migrations"


class LedgerError(RuntimeError):
    """The ledger database is unusable; the message says why and what to do."""


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


def make_engine(url: str) -> Engine:
    """An engine that has connected once (so a bad URL fails here, clearly)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        # pre_ping: after a database outage, stale pooled connections are replaced, not used.
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ValueError) as exc:
        raise LedgerError(f"ledger url {_safe(url)!r} is not usable: {exc}") from None
    if engine.dialect.name == "sqlite":
        db = engine.url.database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # type: ignore[no-untyped-def]
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise LedgerError(
            f"cannot connect to the ledger at {_safe(url)}: {exc.__class__.__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip().splitlines()[0]}"
        ) from None
    return engine


def migrate(engine: Engine) -> str:
    """Bring the schema to the version this code expects (`poold migrate`)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except SQLAlchemyError as exc:
        raise LedgerError(f"migration failed: {exc}") from None
    return SCHEMA_VERSION


def check_schema(engine: Engine) -> None:
    """Refuse to run on a ledger whose schema is not the one this code expects."""
    try:
        if not inspect(engine).has_table(SchemaVersion.__tablename__):
            raise LedgerError("the ledger has no poold schema yet: run `poold migrate`")
        with engine.connect() as conn:
            found = conn.execute(select(SchemaVersion.version)).scalars().all()
    except SQLAlchemyError as exc:
        raise LedgerError(f"cannot read the ledger schema: {exc}") from None
    if SCHEMA_VERSION not in found:
        raise LedgerError(
            f"the ledger schema is {', '.join(found) or 'empty'}, this poold needs "
            f"{SCHEMA_VERSION}: run `poold migrate`"
        )


def open_ledger(url: str, *, migrate_schema: bool = False) -> Engine:
    """An engine on a ledger whose schema is this code's (migrating first when asked)."""
    engine = make_engine(url)
    if migrate_schema:
        migrate(engine)
    check_schema(engine)
    return engine


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows (dicts with the same keys) in the current transaction."""
    if rows:
        columns = list(rows[0])
        bulk_insert_tuples(conn, table, columns, [tuple(r[c] for c in columns) for r in rows])


def bulk_insert_tuples(
    conn: Connection, table: Table, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert many rows, given as tuples in `columns` order, in the current transaction: COPY
    on PostgreSQL (one round trip for 100k rows), the DB-API driver's own executemany on SQLite
    (no per-row SQLAlchemy work). Values must already be plain ints/strs/None."""
    if not rows:
        return
    raw: Any = conn.connection.driver_connection  # this transaction's own connection
    names = ", ".join(columns)
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" for _ in columns)
        raw.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    elif conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
    else:
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])
