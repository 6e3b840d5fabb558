"""One leader among the daemons sharing a ledger: a lease row with an epoch.

Block settlement, FPPS booking, token periods, block following, anchors and payouts run where
the leadership is held, and nowhere else. The leadership is one row (`models.LeaderLease`):
its holder, the end of its lease and an epoch. `hold()` is one transaction that locks the
row and either renews this process's lease or, when the lease has ended (or was released),
takes it with the epoch raised by one. One lease notion: it lasts `[ledger] node_lease_s`,
like a node's registration.

Why a row and not a session lock: PostgreSQL frees a session's advisory lock only once it
notices the session is dead, and behind a half-open socket (a partition, a stalled
middlebox) that takes the server's TCP keepalive, about two hours. A lease ends on time
whatever state the old connection is in. Its session has short server-side bounds
(`statement_timeout`, `idle_in_transaction_session_timeout`, TCP keepalives), so a lost
client cannot keep the row locked either.

The holder steps down by itself: it leads only until its last successful renewal's start plus
the lease less a margin (`leading()`), read from a monotonic clock, so it has stopped before any
other daemon may take over (the others wait for the lease's end by the ledger's clock). And a
deposed leader's write cannot land: every leader write checks the epoch inside its own
transaction (`db.fenced`, with the fence `fence()` returns), so a pass that began before a
takeover fails at its first write (`db.Deposed`) and the daemon steps down at once.

Imports SQLAlchemy and `ledger.db`, `ledger.models` only.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from poold.ledger.db import DATABASE_ERRORS, LEADER_ROW, Fence, insert_new, ledger_entry
from poold.ledger.models import LeaderLease


def holder_name(node_id: int) -> str:
    """Who holds the lease, as `poold nodes list` and the logs show it: node, host, pid, and a
    random tag (a restarted process is a new holder)."""
    return f"node {node_id} {socket.gethostname()}:{os.getpid()} {secrets.token_hex(4)}"


class Leadership:
    """This process's view of the lease: `hold()` renews or takes it, `leading()` says whether
    this process may act as the leader now, `fence()` what its writes are checked against."""

    def __init__(
        self,
        engine: Engine,
        *,
        holder: str,
        lease_s: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.holder = holder[:200]
        self.lease_s = lease_s
        self.clock = clock  # the ledger's time: the lease's end is written in it
        self.monotonic = monotonic  # this process's own deadline, immune to clock steps
        # Stop leading this long before the lease ends (clock skew between hosts, a pass's
        # last statement in flight).
        self.margin_s = min(2.0, lease_s / 5)
        self.epoch: int | None = None  # the epoch held (None: not leading)
        self.deadline = 0.0  # monotonic: leading until then unless renewed
        self.taken = False  # the last `hold()` took the lease (a new epoch), not renewed it
        self.in_flight_since: float | None = None  # monotonic start of a `hold()` under way
        db = engine.url.database
        # An in-memory ledger has one process by definition: it always leads, unfenced.
        self.alone = engine.dialect.name == "sqlite" and (not db or db == ":memory:")

    @property
    def held(self) -> bool:
        return self.leading()

    def leading(self) -> bool:
        """Whether this process leads now: it holds an epoch whose lease it renewed recently
        enough (a renewal that cannot reach the database does not count)."""
        if self.alone:
            return True
        return self.epoch is not None and self.monotonic() < self.deadline

    def fence(self) -> Fence | None:
        """The fence every leader write of this pass checks (None: no other process can lead)."""
        if self.alone or self.epoch is None:
            return None
        return Fence(self.epoch)

    def hold(self) -> bool:
        """Renew this process's lease or take an ended one, in one transaction; returns
        `leading()`. A database error leaves the lease as it was: this process goes on leading
        until its deadline, and no longer."""
        if self.alone:
            return True
        started = self.in_flight_since = self.monotonic()
        try:
            return self._hold(started)
        finally:
            self.in_flight_since = None

    def _hold(self, started: float) -> bool:
        now_ms = int(self.clock() * 1000)
        until_ms = now_ms + int(self.lease_s * 1000)
        self.taken = False
        try:
            with self.engine.begin() as conn:
                insert_new(
                    conn,
                    LeaderLease.__table__,  # type: ignore[arg-type]
                    [
                        {
                            "name": LEADER_ROW,
                            "epoch": 0,
                            "holder": "",
                            "lease_until_ms": 0,
                            "since_ms": now_ms,
                        }
                    ],
                )
                row = conn.execute(
                    select(LeaderLease.epoch, LeaderLease.holder, LeaderLease.lease_until_ms)
                    .where(LeaderLease.name == LEADER_ROW)
                    .with_for_update()
                ).one()
                epoch, holder, lease_until = int(row[0]), str(row[1]), int(row[2])
                mine = holder == self.holder and epoch == self.epoch
                if not mine and lease_until >= now_ms:
                    self.epoch = None  # another process leads (or this one was deposed)
                    return False
                values: dict[str, object] = {"lease_until_ms": until_ms}
                if not mine:
                    epoch += 1
                    values.update(epoch=epoch, holder=self.holder, since_ms=now_ms)
                conn.execute(
                    update(LeaderLease)
                    .where(LeaderLease.name == LEADER_ROW, LeaderLease.epoch == int(row[0]))
                    .values(**values)
                )
        except DATABASE_ERRORS:
            return self.leading()
        self.taken = not mine
        self.epoch = epoch
        self.deadline = started + self.lease_s - self.margin_s
        return self.leading()

    def step_down(self) -> None:
        """Stop leading now (a write was refused: another process holds a newer epoch)."""
        self.epoch = None
        self.deadline = 0.0

    def release(self) -> None:
        """Give the lease up (a clean stop), so another daemon takes it at its next pass. The
        epoch stays: the next holder raises it."""
        epoch, self.epoch = self.epoch, None
        self.deadline = 0.0
        if epoch is None or self.alone:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(LeaderLease)
                    .where(
                        LeaderLease.name == LEADER_ROW,
                        LeaderLease.epoch == epoch,
                        LeaderLease.holder == self.holder,
                    )
                    .values(lease_until_ms=0)
                )
        except DATABASE_ERRORS:
            pass  # the lease ends by itself


@ledger_entry
def current(engine: Engine) -> tuple[int, str, int] | None:
    """The lease row as (epoch, holder, lease end in ms), None before any leader."""
    with engine.connect() as conn:
        row = conn.execute(
            select(LeaderLease.epoch, LeaderLease.holder, LeaderLease.lease_until_ms).where(
                LeaderLease.name == LEADER_ROW
            )
        ).first()
    return None if row is None else (int(row[0]), str(row[1]), int(row[2]))
