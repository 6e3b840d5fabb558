"""What the two commitment chains (token statements, `tokens.proofs`; miners' credits,
`ledger.credit_proofs`) share: one link as proofs and listings show it, and the accepted
blocks whose coinbase carries given commitments (one query, not one per commitment: a chain
listing names many). Proofs carry anchors with their evidence (`ledger.anchors`). Imports
the ledger's tables and accounting only."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from accounting.merkle_sum import inputs_digest
from poold.ledger.models import Block

_CHUNK = 5_000  # commitments per IN list (PostgreSQL takes at most 65,535 parameters)


def link(row: Any, label: dict[str, object]) -> dict[str, object]:
    """A root row (statement or credit) as a chain link: `label` names it (its period start,
    or its settlement key), then root, inputs digest, previous and commitment."""
    return {
        **label,
        "root": {"hash": row.root_hash, "sums": json.loads(row.sums)},
        "inputs_digest": inputs_digest(json.loads(row.inputs)).hex(),
        "previous": row.previous,
        "commitment": row.commitment,
    }


def anchors(conn: Connection, column: Any, commitments: list[str]) -> list[dict[str, object]]:
    """Accepted blocks still on the best chain (never an orphaned one) whose `column`
    (`Block.commitment` or `Block.credit_commitment`) is one of `commitments`: hash, height,
    commitment; in the order of `commitments`, then height."""
    order = {c: i for i, c in enumerate(commitments)}
    found: list[dict[str, object]] = []
    for i in range(0, len(commitments), _CHUNK):
        found += [
            {"hash": h, "height": int(height), "commitment": c}
            for h, height, c in conn.execute(
                select(Block.hash, Block.height, column).where(
                    column.in_(commitments[i : i + _CHUNK]),
                    Block.accepted.is_(True),
                    Block.status.in_(("pending", "confirmed")),
                )
            )
        ]
    found.sort(key=lambda a: (order[str(a["commitment"])], a["height"]))
    return found


def anchors_by_commitment(
    conn: Connection, column: Any, commitments: list[str]
) -> dict[str, list[dict[str, object]]]:
    """`anchors`, grouped: commitment -> [{hash, height}] (every commitment present)."""
    out: dict[str, list[dict[str, object]]] = {c: [] for c in commitments}
    for a in anchors(conn, column, commitments):
        out[str(a["commitment"])].append({"hash": a["hash"], "height": a["height"]})
    return out
