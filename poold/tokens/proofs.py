"""Verifiable token statements: every settled period's lines become a Merkle-sum tree
(`accounting.merkle_sum`) whose root, published inputs and previous commitment are committed
in the same transaction as the statements (`statement_roots`), each holder's leaf hidden
behind a salt only that holder is given. A holder's proof (`proof_for`) is what `verify.py`
checks; the chain (`roots`) is public. Imports the ledger's tables and accounting only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from fractions import Fraction
from operator import attrgetter
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from accounting import TokenSettlement
from accounting.merkle_sum import (
    GENESIS,
    LINE_FIELDS,
    commitment,
    inputs_digest,
    node_json,
    period_tree,
    proof_document,
    root_of_rows,
    salted_id,
)
from poold.config import TokensConfig
from poold.ledger.anchors import anchored_cut
from poold.ledger.commitments import anchors_by_commitment, link
from poold.ledger.db import bulk_insert_tuples
from poold.ledger.models import Block, HolderSalt, StatementRoot, TokenStatement

MAX_CHAIN = 10_000  # links after a period a proof carries


def _salts(conn: Connection, holders: list[str]) -> dict[str, bytes]:
    """Each holder's salt, new ones made (and bulk-written) for holders without one. Reads
    the whole table: an IN list of 100,000 names is past PostgreSQL's parameter limit."""
    have = {
        h: bytes.fromhex(s) for h, s in conn.execute(select(HolderSalt.holder, HolderSalt.salt))
    }
    new = {h: secrets.token_bytes(16) for h in holders if h not in have}
    bulk_insert_tuples(
        conn,
        HolderSalt.__table__,  # type: ignore[arg-type]
        ["holder", "salt"],
        [(h, v.hex()) for h, v in new.items()],
    )
    return {**have, **new}


def published_inputs(
    cfg: TokensConfig,
    start: int,
    end: int,
    *,
    atoms_per_token: int,
    btc_usd: Fraction,
    delivered_th_per_s: Fraction,
    earnings_sat: int,
    holders_pot_sat: int,
) -> dict[str, object]:
    """Everything a holder needs to recompute their line (exact values as strings)."""
    return {
        "period_start": start,
        "period_end": end,
        "atoms_per_token": atoms_per_token,
        "th_per_token": str(cfg.th_per_token),
        "w_per_th": str(cfg.w_per_th),
        "usd_per_kwh": str(cfg.usd_per_kwh),
        "discount": str(cfg.discount),
        "service_usd_per_th_day": str(cfg.service_usd_per_th_day),
        "btc_usd": str(btc_usd),
        "delivered_th_per_s": str(delivered_th_per_s),
        "earnings_sat": earnings_sat,
        "holders_pot_sat": holders_pot_sat,
        "negative_policy": cfg.negative_policy,
    }


def commit_period(
    conn: Connection, start: int, inputs: Mapping[str, object], result: TokenSettlement
) -> str:
    """Build the period's tree and record its root and commitment (in the caller's
    transaction, the one that posts the statements); returns the commitment."""
    salts = _salts(conn, sorted(result.lines))
    keyed = sorted((salted_id(salts[h], h), h) for h in result.lines)
    get = attrgetter(*LINE_FIELDS)  # a line's fields as one tuple: 100,000 lines a period
    root = root_of_rows([s for s, _h in keyed], [get(result.lines[h]) for _s, h in keyed])
    prev = conn.execute(
        select(StatementRoot.commitment)
        .where(StatementRoot.period_start < start)
        .order_by(StatementRoot.period_start.desc())
        .limit(1)
    ).scalar()
    previous = bytes.fromhex(prev) if prev else GENESIS
    done = commitment(root, inputs_digest(inputs), previous).hex()
    conn.execute(
        insert(StatementRoot).values(
            period_start=start,
            root_hash=root.hash.hex(),
            sums=json.dumps(list(root.sums)),
            inputs=json.dumps(dict(inputs), sort_keys=True),
            previous=previous.hex(),
            commitment=done,
        )
    )
    return done


def _link(row: Any) -> dict[str, object]:
    return link(row, {"period_start": int(row.period_start)})


def roots(conn: Connection, limit: int, offset: int) -> list[dict[str, object]]:
    """The chain of commitments, newest first, with each period's published inputs and the
    accepted blocks whose coinbase carries the commitment."""
    rows = conn.execute(
        select(StatementRoot)
        .order_by(StatementRoot.period_start.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    blocks = anchors_by_commitment(conn, Block.commitment, [r.commitment for r in rows])
    return [
        {**_link(r), "inputs": json.loads(r.inputs), "blocks": blocks[r.commitment]} for r in rows
    ]


def latest_commitment(conn: Connection) -> str | None:
    found: str | None = conn.execute(
        select(StatementRoot.commitment).order_by(StatementRoot.period_start.desc()).limit(1)
    ).scalar()
    return found


def proof_for(conn: Connection, holder: str, period_start: int) -> dict[str, object] | None:
    """The holder's proof for one settled period (None: no statement of theirs in it)."""
    root = conn.execute(
        select(StatementRoot).where(StatementRoot.period_start == period_start)
    ).first()
    if root is None:
        return None
    inputs = json.loads(root.inputs)
    q = int(inputs["atoms_per_token"])
    rows = conn.execute(
        select(TokenStatement.holder, TokenStatement.token_seconds, *(
            getattr(TokenStatement, f) for f in LINE_FIELDS if f != "atom_seconds"
        )).where(TokenStatement.period_start == period_start)
    ).all()  # fmt: skip
    lines: dict[str, dict[str, int]] = {}
    for h, ts, *amounts in rows:
        atoms = Fraction(ts) * q
        lines[h] = {"atom_seconds": int(atoms), **dict(zip(LINE_FIELDS[1:], amounts, strict=True))}
    if holder not in lines:
        return None
    salts = {
        h: bytes.fromhex(s)
        for h, s in conn.execute(
            select(HolderSalt.holder, HolderSalt.salt).join(
                TokenStatement,
                (TokenStatement.holder == HolderSalt.holder)
                & (TokenStatement.period_start == period_start),
            )
        )
    }
    tree = period_tree(lines, salts)
    if node_json(tree.root) != {"hash": root.root_hash, "sums": json.loads(root.sums)}:
        raise ValueError(f"the statements of period {period_start} no longer match its root")
    later = conn.execute(
        select(StatementRoot)
        .where(StatementRoot.period_start > period_start)
        .order_by(StatementRoot.period_start)
        .limit(MAX_CHAIN)
    ).all()
    later_rows = list(later)
    doc = proof_document(
        tree,
        holder,
        salts[holder],
        lines[holder],
        inputs,
        bytes.fromhex(root.previous),
        [_link(r) for r in later_rows],
    )
    # The anchors of this commitment or a later one, with the evidence that checks them.
    chain = [root.commitment, *(r.commitment for r in later_rows)]
    doc.update(anchored_cut(conn, "statement", chain))
    return doc
