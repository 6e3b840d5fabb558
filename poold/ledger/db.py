"""Engines for both backends, migrations (Alembic), and the schema check the daemon runs first.

SQLAlchemy errors become `LedgerError` here, with a message an operator can act on: every
public ledger entry point that takes an Engine is wrapped in `ledger_entry` (or
`ledger_entry_async`), the one place driver exceptions are converted.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import psycopg
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Table, create_engine, event, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from poold.config import redact_url
from poold.ledger.models import SCHEMA_VERSION, SchemaVersion

MIGRATIONS = Path(__file__).parent / "migrations"
#: The lease row's name (`models.LeaderLease`).
LEADER_ROW = "leader"


class LedgerError(RuntimeError):
    """The ledger database is unusable; the message says why and what to do."""


class LedgerUnreachable(LedgerError):
    """No connection to the ledger's server (down, refused, timed out): worth retrying, unlike
    a wrong URL or schema."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Bounds on every database call, so an outage or a server that stops answering becomes an
    error the caller retries instead of a hang (PostgreSQL; SQLite waits `connect_s` for a lock).

    connect_s: to open a connection; also the TCP timeouts (unacknowledged data, keepalive
    probes) that notice a vanished server. statement_s: any one statement, server-side.
    idle_s: a session idle inside a transaction this long is ended by the server, and the
    server's own keepalive probes notice a vanished client within about as long: a client
    cut off mid-transaction (a half-open socket) cannot keep its row locks — the leader's
    lease row among them — for longer (None: the server's defaults)."""

    connect_s: float = 10.0
    statement_s: float = 300.0
    idle_s: float | None = None


DEFAULT_TIMEOUTS = Timeouts()


P = ParamSpec("P")
R = TypeVar("R")
#: What a database outage, a timeout or a lost connection raises below SQLAlchemy too (COPY
#: goes to psycopg directly).
DATABASE_ERRORS = (SQLAlchemyError, psycopg.Error, sqlite3.Error)


#: Set on every function `ledger_entry` wrapped.
CONVERTS = "converts_database_errors"


def _failed(fn: Callable[..., Any], exc: BaseException) -> LedgerError:
    first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return LedgerError(f"{fn.__name__}: the ledger database failed: {first}")


def ledger_entry(fn: Callable[P, R]) -> Callable[P, R]:
    """Database errors raised by `fn` leave it as `LedgerError` (the caller retries)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DATABASE_ERRORS as exc:
            raise _failed(fn, exc) from exc

    setattr(wrapper, CONVERTS, True)  # tests look for it
    return wrapper


def ledger_entry_async(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`ledger_entry` for coroutine functions (database work in threads, awaited here)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except DATABASE_ERRORS as exc:
            raise _failed(fn, exc) from exc

    setattr(wrapper, CONVERTS, True)  # tests look for it
    return wrapper


class Deposed(LedgerError):
    """A leader write refused: another daemon took the leadership (a newer epoch) since this
    one's pass began. Nothing of the write was kept; the writer steps down at once."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The leadership epoch a leader's writes are made under (`ledger.leader`)."""

    epoch: int


#: The fence of the leader's work in progress: every `fenced` transaction checks it.
FENCE: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("poold_fence", default=None)


def check_fence(conn: Connection, fence: Fence) -> None:
    """Raise `Deposed` unless the lease row still carries `fence`'s epoch. On PostgreSQL the
    update locks the row until this transaction ends, so a takeover (which updates that row)
    waits for the commit: the write lands wholly before the new epoch or not at all."""
    from poold.ledger.models import LeaderLease

    kept = conn.execute(
        update(LeaderLease)
        .where(LeaderLease.name == LEADER_ROW, LeaderLease.epoch == fence.epoch)
        .values(epoch=LeaderLease.epoch)
    ).rowcount
    if not kept:
        raise Deposed(
            f"leadership epoch {fence.epoch} is over (another daemon leads now): write refused"
        )


@contextlib.contextmanager
def fenced(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` for a leader write: when a fence is set (`FENCE`, by the leader's
    pass), the epoch is checked last, just before the commit, in the same transaction."""
    with engine.begin() as conn:
        yield conn
        fence = FENCE.get()
        if fence is not None:
            check_fence(conn, fence)


@contextlib.contextmanager
def fence_set(fence: Fence | None) -> Iterator[None]:
    """Run the block's leader writes under `fence` (None: unfenced, as `poold settle`)."""
    token = FENCE.set(fence)
    try:
        yield
    finally:
        FENCE.reset(token)


def unique_violation(exc: Exception) -> bool:
    """Whether a database error is a unique-key violation (another writer inserted the same
    key first), as opposed to any other broken constraint, which is a bug to report."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None)
    if code is not None:  # PostgreSQL: 23505 unique_violation
        return bool(code == "23505")
    return "UNIQUE constraint failed" in str(orig)  # SQLite


def insert_new(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert the rows whose unique keys are not taken yet, skip the others: another daemon
    may insert the same name at the same moment, and that is no error."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), rows)
    else:
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), rows)


def make_engine(url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Engine:
    """An engine that has connected once (so a bad URL fails here, clearly); a server that
    cannot be reached raises `LedgerUnreachable`."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    connect_s = max(1, round(timeouts.connect_s))
    if url.startswith("postgresql"):
        connect_args: dict[str, Any] = {
            "connect_timeout": connect_s,
            "tcp_user_timeout": connect_s * 1000,  # ms: sent data never acknowledged
            "keepalives": 1,
            "keepalives_idle": connect_s,
            "keepalives_interval": max(1, connect_s // 3),
            "keepalives_count": 3,
        }
    else:
        connect_args = {"timeout": timeouts.connect_s}  # sqlite3: wait this long for a lock
    try:
        # pre_ping: after a database outage, stale pooled connections are replaced, not used.
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise LedgerError(f"ledger url {redact_url(url)!r} is not usable: {exc}") from None
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

    elif engine.dialect.name == "postgresql":
        statement_ms = max(1, round(timeouts.statement_s * 1000))

        settings = [f"SET statement_timeout = {statement_ms}"]
        if timeouts.idle_s is not None:
            idle_s = max(1, round(timeouts.idle_s))
            settings += [
                f"SET idle_in_transaction_session_timeout = {idle_s * 1000}",
                f"SET tcp_keepalives_idle = {max(1, idle_s // 2)}",
                f"SET tcp_keepalives_interval = {max(1, idle_s // 6)}",
                "SET tcp_keepalives_count = 3",
            ]

        @event.listens_for(engine, "connect")
        def _bounds(conn, _record):  # type: ignore[no-untyped-def]
            with conn.cursor() as cur:
                for setting in settings:
                    cur.execute(setting)
            conn.commit()

    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise LedgerUnreachable(
            f"cannot connect to the ledger at {redact_url(url)}: {exc.__class__.__name__}: "
            f"{str(exc.orig if hasattr(exc, 'orig') else exc).strip().splitlines()[0]}"
        ) from None
    return engine


def migrate(engine: Engine) -> str:
    """Bring the schema to the version this code expects (`poold migrate`)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Several daemons (or workers) starting with auto_migrate at once: one migrates, the
    # others wait for it and then find nothing to do.
    with contextlib.ExitStack() as stack:
        db = engine.url.database
        if engine.dialect.name == "sqlite" and db and db != ":memory:":
            fd = os.open(db + ".migrate", os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
        try:
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    conn.execute(
                        text(
                            "SELECT pg_advisory_xact_lock(hashtext('poold migrate ' || "
                            "current_database() || '.' || current_schema()))"
                        )
                    )
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


def open_ledger(
    url: str, *, migrate_schema: bool = False, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> Engine:
    """An engine on a ledger whose schema is this code's (migrating first when asked)."""
    engine = make_engine(url, timeouts)
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


#: A column for `copy_columns`: (name, PostgreSQL binary kind "int4" | "int8" | "text", values).
CopyColumn = tuple[str, str, Any]
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
_COPY_TRAILER = b"\xff\xff"


def copy_payload(columns: list[CopyColumn]) -> bytes:
    """PostgreSQL binary COPY data for rows given as columns: int columns as int64 arrays (or
    lists), text columns as lists of ints/strs (stored as their decimal text) or None (NULL).
    Rows are laid out with NumPy, one structured array per combination of text widths, so no
    Python work is done per field; row order is not kept (a table has none)."""
    n = len(columns[0][2])
    if n == 0:
        return _COPY_HEADER + _COPY_TRAILER
    texts = {
        i: [b"" if v is None else str(v).encode() for v in vals]
        for i, (_c, kind, vals) in enumerate(columns)
        if kind == "text"
    }
    nulls = {
        i: np.fromiter((v is None for v in vals), np.bool_, n)
        for i, (_c, kind, vals) in enumerate(columns)
        if kind == "text"
    }
    widths = {i: np.fromiter(map(len, t), np.int64, n) for i, t in texts.items()}
    combo = np.zeros(n, np.int64)
    for w in widths.values():
        combo = combo * 1024 + w
    if any(int(w.max()) >= 1024 for w in widths.values()):
        raise ValueError("a text value is longer than 1023 bytes")
    numbers = {
        i: np.asarray(vals, dtype=np.int64)
        for i, (_c, kind, vals) in enumerate(columns)
        if kind != "text"
    }
    parts = [_COPY_HEADER]
    for value in np.unique(combo).tolist():
        rows = np.flatnonzero(combo == value)
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i, (_c, kind, _v) in enumerate(columns):
            width = int(widths[i][rows[0]]) if kind == "text" else 4 if kind == "int4" else 8
            fields.append((f"len{i}", ">i4"))
            fields.append((f"f{i}", f"S{width}" if kind == "text" else f">i{width}"))
        rec = np.empty(len(rows), dtype=np.dtype(fields))
        rec["count"] = len(columns)
        for i, (_c, kind, _v) in enumerate(columns):
            if kind == "text":  # a NULL is length -1 and no bytes
                rec[f"len{i}"] = np.where(nulls[i][rows], -1, widths[i][rows])
                rec[f"f{i}"] = [texts[i][r] for r in rows.tolist()]
            else:
                rec[f"len{i}"] = 4 if kind == "int4" else 8
                rec[f"f{i}"] = numbers[i][rows]
        parts.append(rec.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


def copy_columns(conn: Connection, table: Table, columns: list[CopyColumn]) -> None:
    """Insert rows given as columns in the current transaction: binary COPY on PostgreSQL,
    the driver's executemany elsewhere."""
    if conn.dialect.name != "postgresql":
        names = [c for c, _k, _v in columns]
        values = [
            [None if v is None else str(v) for v in vals]
            if kind == "text"
            else list(np.asarray(vals).tolist())
            for _c, kind, vals in columns
        ]
        bulk_insert_tuples(conn, table, names, list(zip(*values, strict=True)))
        return
    raw: Any = conn.connection.driver_connection
    listed = ", ".join(c for c, _k, _v in columns)
    data = copy_payload(columns)
    with (
        raw.cursor() as cur,
        cur.copy(f"COPY {table.name} ({listed}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        step = 1 << 20
        for i in range(0, len(data), step):
            copy.write(data[i : i + step])
