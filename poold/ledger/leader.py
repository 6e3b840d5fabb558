"""One leader among the daemons sharing a ledger.

Block settlement, FPPS booking, token periods, block following and payouts run where the
leadership is held, and nowhere else. On PostgreSQL the leadership is a session advisory lock
held on a connection of its own: when the holder dies (kill -9 included) its session ends
and the server frees the lock, so another daemon takes it at its next ledger pass. On a
SQLite file it is an exclusive `flock` on `<database>.leader` (the kernel frees it when the
holder dies); an in-memory SQLite ledger has one process by definition. `hold()` is called
every pass: it checks that a held lock is still held (the session may have died with the
server) and otherwise tries to take it. Imports SQLAlchemy only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from poold.ledger.db import DATABASE_ERRORS

#: The locks' names. On PostgreSQL the advisory key is hashed from the name, the database
#: and the schema, so two ledgers on one server (or two tests) never share a lock.
LEADER_KEY = "poold leader"
PAYOUTS_KEY = "poold payouts"
_KEY_SQL = "hashtext(:name || ' ' || current_database() || '.' || current_schema())"


class Leadership:
    """A lock only one process holds at a time; `hold()` -> whether this process has it."""

    def __init__(self, engine: Engine, key: str = LEADER_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        self._fd = -1
        self.held = False

    def hold(self) -> bool:
        """Keep (or take) the lock; False when another process holds it or the database
        cannot be reached (a lost session lost the lock with it)."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            self.held = self._hold_advisory()
        elif dialect == "sqlite":
            db = self.engine.url.database
            self.held = True if not db or db == ":memory:" else self._hold_file(Path(db))
        else:
            self.held = True
        return self.held

    def _hold_advisory(self) -> bool:
        try:
            if self._conn is not None:
                if self.held:
                    self._conn.execute(text("SELECT 1")).scalar()  # still our session?
                    return True
            else:
                self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            got = self._conn.execute(
                text(f"SELECT pg_try_advisory_lock({_KEY_SQL})"), {"name": self.key}
            )
            return bool(got.scalar())
        except DATABASE_ERRORS:
            self._drop()
            return False

    def _hold_file(self, db: Path) -> bool:
        if self._fd >= 0:
            return True
        suffix = "." + self.key.split()[-1]  # ledger.db.leader, ledger.db.payouts
        fd = os.open(str(db) + suffix, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()  # never back to the pool: its session may hold the lock
                self._conn.close()
            except DATABASE_ERRORS:
                pass
            self._conn = None

    def release(self) -> None:
        """Give the lock up (a clean stop), so another daemon takes it at once."""
        if self._conn is not None:
            try:
                if self.held:
                    self._conn.execute(
                        text(f"SELECT pg_advisory_unlock({_KEY_SQL})"), {"name": self.key}
                    )
            except DATABASE_ERRORS:
                pass
            self._drop()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.held = False
