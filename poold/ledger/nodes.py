"""The stratum nodes feeding one ledger: registration, leases, and how far settlement may go.

Every daemon (every worker of one) is a node: it registers at start with its node id and its
share log's identity, and renews a lease every ledger pass. A node id held by another log is
refused with an error that says what to change. Each node's watermark is its ingest
checkpoint's `through_ms` (see `ingest`): every share and block of the node before it is in
the ledger.

`gate` is what every settlement waits for: the oldest watermark among live nodes. A node that
stopped cleanly (its final heartbeat ingested) holds nothing back. A node whose lease lapsed
holds settlement back for `wait_ms`, then is excluded, and the gate says which node was left
out so the operator sees it. Imports the ledger's tables only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from poold.ledger.db import LedgerError, ledger_entry
from poold.ledger.models import IngestCheckpoint, StratumNode


class NodeConflict(LedgerError):
    """A node id another share log holds: two daemons (or workers) configured alike."""


@dataclass(frozen=True, slots=True)
class NodeState:
    node_id: int
    log_id: str
    host: str
    started_ms: int
    lease_until_ms: int
    through_ms: int  # every share and block before this is ingested (0: none yet)
    beat_ms: int  # when its newest ingested heartbeat was written
    status: str  # live | stopped (cleanly) | lapsed (waited for) | excluded (no longer)


@dataclass(frozen=True, slots=True)
class Gate:
    """How far settlement may go: every live node is ingested through `through_ms`."""

    through_ms: int
    waiting: list[str] = field(default_factory=list)  # lapsed nodes still waited for
    excluded: list[str] = field(default_factory=list)  # lapsed nodes settled without
    excluded_nodes: tuple[int, ...] = ()  # their ids (recorded with each settlement)

    def minute_ms(self) -> int:
        """Blocks found before this start of a minute may settle (windows are whole minutes)."""
        return self.through_ms // 60_000 * 60_000


@ledger_entry
def register(
    engine: Engine, node_id: int, log_id: str, host: str, *, now_ms: int, lease_ms: int
) -> None:
    """Register node `node_id` (share log `log_id`, running at `host`) and take its lease."""
    with engine.begin() as conn:
        row = conn.execute(
            select(StratumNode.log_id, StratumNode.host)
            .where(StratumNode.node_id == node_id)
            .with_for_update()
        ).first()
        values = {
            "log_id": log_id,
            "host": host[:200],
            "started_ms": now_ms,
            "lease_until_ms": now_ms + lease_ms,
        }
        if row is None:
            conn.execute(insert(StratumNode).values(node_id=node_id, **values))
            return
        if row.log_id != log_id:
            raise NodeConflict(
                f"node id {node_id} belongs to another share log in this ledger (log "
                f"{row.log_id}, last run at {row.host}); this daemon's log is {log_id}. Each "
                "daemon needs its own [stratum] node_id, and a daemon with workers = N uses "
                f"node_id to node_id + N - 1. If node {node_id}'s old log is gone for good, "
                f"`poold nodes retire {node_id}` frees its id."
            )
        conn.execute(update(StratumNode).where(StratumNode.node_id == node_id).values(**values))


@ledger_entry
def renew(engine: Engine, node_id: int, log_id: str, *, now_ms: int, lease_ms: int) -> None:
    """Extend the node's lease; a node retired meanwhile is told so (it must not go on)."""
    with engine.begin() as conn:
        done = conn.execute(
            update(StratumNode)
            .where(StratumNode.node_id == node_id, StratumNode.log_id == log_id)
            .values(lease_until_ms=now_ms + lease_ms)
        ).rowcount
        if not done:
            raise NodeConflict(f"node {node_id} is no longer registered to this share log")


@ledger_entry
def retire(engine: Engine, node_id: int) -> bool:
    """Forget node `node_id`'s registration (its ingested shares stay): its id is free."""
    with engine.begin() as conn:
        gone = conn.execute(
            StratumNode.__table__.delete().where(StratumNode.node_id == node_id)  # type: ignore[attr-defined]
        ).rowcount
        return bool(gone)


def registered_log(conn: Connection, node_id: int) -> str | None:
    found: str | None = conn.execute(
        select(StratumNode.log_id).where(StratumNode.node_id == node_id)
    ).scalar()
    return found


def ingested_segment(conn: Connection, node_id: int) -> int | None:
    """The segment of the node's share log its ingest checkpoint is in (None: none yet)."""
    seg = conn.execute(
        select(IngestCheckpoint.segment).where(IngestCheckpoint.node_id == node_id)
    ).scalar()
    return None if seg is None else int(seg)


def states(conn: Connection, *, now_ms: int, wait_ms: int) -> list[NodeState]:
    """Every registered node with its watermark and status, by node id."""
    rows = conn.execute(
        select(
            StratumNode.node_id,
            StratumNode.log_id,
            StratumNode.host,
            StratumNode.started_ms,
            StratumNode.lease_until_ms,
            IngestCheckpoint.through_ms,
            IngestCheckpoint.beat_ms,
            IngestCheckpoint.final,
        )
        .outerjoin(IngestCheckpoint, IngestCheckpoint.node_id == StratumNode.node_id)
        .order_by(StratumNode.node_id)
    ).all()
    out = []
    for node_id, log_id, host, started, lease, through, beat, final in rows:
        through, beat = through or 0, beat or 0
        if final and beat >= started:
            status = "stopped"  # its last heartbeat before a clean stop is ingested
        elif lease >= now_ms:
            status = "live"
        elif now_ms - lease <= wait_ms:
            status = "lapsed"
        else:
            status = "excluded"
        out.append(NodeState(node_id, log_id, host, started, lease, through, beat, status))
    return out


def gate(conn: Connection, *, now_ms: int, wait_ms: int) -> Gate:
    """How far every settlement may go now (see the module's docstring)."""
    return gate_of(states(conn, now_ms=now_ms, wait_ms=wait_ms), now_ms=now_ms, wait_ms=wait_ms)


def gate_of(listed: list[NodeState], *, now_ms: int, wait_ms: int) -> Gate:
    """`gate` from node states already read."""
    limits, waiting, excluded, ids = [], [], [], []
    for n in listed:
        if n.status in ("live", "lapsed"):
            limits.append(n.through_ms)
        if n.status == "lapsed":
            waiting.append(
                f"node {n.node_id} ({n.host}) lost its lease {(now_ms - n.lease_until_ms) // 1000}"
                f" s ago; waiting up to {wait_ms // 1000} s for its shares"
            )
        elif n.status == "excluded":
            ids.append(n.node_id)
            excluded.append(
                f"node {n.node_id} ({n.host}) lost its lease {(now_ms - n.lease_until_ms) // 1000}"
                f" s ago: settling without its shares after {n.through_ms}"
            )
    return Gate(min(limits, default=now_ms), waiting, excluded, tuple(ids))


@ledger_entry
def read_states(engine: Engine, *, now_ms: int, wait_ms: int) -> list[NodeState]:
    with engine.connect() as conn:
        return states(conn, now_ms=now_ms, wait_ms=wait_ms)


def overview(conn: Connection, now_ms: int, wait_ms: int) -> dict[str, object]:
    """The nodes as the API shows them: each node's status and lag, and how far settlement
    may go now."""
    listed = states(conn, now_ms=now_ms, wait_ms=wait_ms)
    g = gate_of(listed, now_ms=now_ms, wait_ms=wait_ms)
    return {
        "settle_through_ms": g.through_ms,
        "waiting": g.waiting,
        "excluded": g.excluded,
        "nodes": [
            {
                "node_id": n.node_id,
                "status": n.status,
                "host": n.host,
                "lease_until_ms": n.lease_until_ms,
                "ingested_through_ms": n.through_ms,
                "lag_ms": max(0, now_ms - n.through_ms),
            }
            for n in listed
        ],
    }
