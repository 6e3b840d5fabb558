"""Verifiable miner credits: every settlement that credits miners (a PPLNS, PROP or SOLO
block, an FPPS booking) gets a Merkle-sum tree over its lines (`accounting.merkle_sum.CREDIT`:
satoshis credited, the account's exact score; FPPS adds the carried remainders and the share
count), written in the settlement's own transaction with its published inputs and its link in
the credit chain (`credit_roots`; `previous` is unique, so two settlers racing cannot fork
it: one fails and retries). Each miner's leaf is hidden behind a secret salt (kept with the
holders' salts under the miner's journal account name). A miner's proof (`credit_proof`) is
what `verify.py` checks; the chain (`credit_roots`) is public, and every found block's
coinbase (and every anchor transaction, `ledger.anchors`) carries its newest commitment.
Imports the ledger's tables, the journal and accounting only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from accounting.merkle_sum import (
    GENESIS,
    commitment,
    credit_layout,
    inputs_digest,
    node_json,
    period_root,
    period_tree,
    proof_document,
)
from poold.ledger import journal
from poold.ledger.anchors import anchored_cut
from poold.ledger.commitments import anchors_by_commitment, link
from poold.ledger.models import Block, CreditRoot, HolderSalt, JournalLine, Settlement

MAX_CHAIN = 10_000  # links after a settlement a proof carries
_CHUNK = 5_000  # names per IN list (PostgreSQL takes at most 65,535 parameters)


def exact(value: Fraction) -> str:
    """A Fraction as the verifier reads it: "n" or "n/d"."""
    return str(value)


def _salts(conn: Connection, accounts: list[str], *, create: bool = True) -> dict[str, bytes]:
    """Each account's salt (kept under its journal name), new ones made for accounts without
    (`create`), else a missing salt is an error."""
    keys = {journal.miner(a): a for a in accounts}
    have: dict[str, bytes] = {}
    names = list(keys)
    for i in range(0, len(names), _CHUNK):
        for k, s in conn.execute(
            select(HolderSalt.holder, HolderSalt.salt).where(
                HolderSalt.holder.in_(names[i : i + _CHUNK])
            )
        ):
            have[keys[k]] = bytes.fromhex(s)
    new = {a: secrets.token_bytes(16) for a in accounts if a not in have}
    if new and not create:
        raise ValueError(f"no salt for {sorted(new)[:3]}: the credit tree cannot be rebuilt")
    if new:
        conn.execute(
            insert(HolderSalt),
            [{"holder": journal.miner(a), "salt": v.hex()} for a, v in new.items()],
        )
    return {**have, **new}


def block_lines(
    credits: Mapping[str, int], scores: Mapping[str, Fraction]
) -> dict[str, dict[str, object]]:
    """A block split's lines: every account with a score or a credit."""
    return {
        a: {
            "credit_sat": int(credits.get(a, 0)),
            "score": exact(scores.get(a, Fraction(0))),
            "carry_in": "0",
            "carry_out": "0",
        }
        for a in sorted(set(credits) | set(scores))
    }


def commit_credits(
    conn: Connection,
    *,
    key: str,
    kind: str,
    reference: str,
    inputs: Mapping[str, object],
    lines: Mapping[str, Mapping[str, object]],
) -> str:
    """Build the settlement's tree and record its root and commitment in the caller's
    transaction (the one that posts the credits); returns the commitment."""
    root = period_root(lines, _salts(conn, sorted(lines)), credit_layout(lines))
    prev = conn.execute(
        select(CreditRoot.commitment).order_by(CreditRoot.id.desc()).limit(1)
    ).scalar()
    previous = bytes.fromhex(prev) if prev else GENESIS
    published = {**inputs, "key": key, "kind": kind}
    done = commitment(root, inputs_digest(published), previous).hex()
    conn.execute(
        insert(CreditRoot).values(
            key=key,
            kind=kind,
            reference=reference,
            root_hash=root.hash.hex(),
            sums=json.dumps(list(root.sums)),
            inputs=json.dumps(published, sort_keys=True),
            lines=json.dumps(lines, sort_keys=True),
            previous=previous.hex(),
            commitment=done,
        )
    )
    return done


def _link(row: Any) -> dict[str, object]:
    return link(row, {"key": row.key})


def credit_roots(conn: Connection, limit: int, offset: int) -> list[dict[str, object]]:
    """The credit chain, newest first, with each settlement's inputs and anchoring blocks."""
    rows = conn.execute(
        select(CreditRoot).order_by(CreditRoot.id.desc()).limit(limit).offset(offset)
    ).all()
    blocks = anchors_by_commitment(conn, Block.credit_commitment, [r.commitment for r in rows])
    return [
        {**_link(r), "inputs": json.loads(r.inputs), "blocks": blocks[r.commitment]} for r in rows
    ]


def latest_credit_commitment(conn: Connection) -> str | None:
    found: str | None = conn.execute(
        select(CreditRoot.commitment).order_by(CreditRoot.id.desc()).limit(1)
    ).scalar()
    return found


def credit_proof(conn: Connection, account: str, reference: str) -> dict[str, object] | None:
    """The account's proof for the settlement with `reference` (a block hash, or an FPPS
    booking's period end), None when it has no line there."""
    root = conn.execute(select(CreditRoot).where(CreditRoot.reference == reference)).first()
    if root is None:
        return None
    lines: dict[str, dict[str, object]] = json.loads(root.lines)
    if account not in lines:
        return None
    salts = _salts(conn, sorted(lines), create=False)
    layout = credit_layout(lines)
    tree = period_tree(lines, salts, layout)
    if node_json(tree.root) != {"hash": root.root_hash, "sums": json.loads(root.sums)}:
        raise ValueError(f"the lines of settlement {root.key} no longer match its root")
    later = list(
        conn.execute(
            select(CreditRoot)
            .where(CreditRoot.id > root.id)
            .order_by(CreditRoot.id)
            .limit(MAX_CHAIN)
        ).all()
    )
    doc = proof_document(
        tree,
        account,
        salts[account],
        lines[account],
        json.loads(root.inputs),
        bytes.fromhex(root.previous),
        [_link(r) for r in later],
        layout,
    )
    chain = [root.commitment, *(r.commitment for r in later)]
    doc.update(anchored_cut(conn, "credit", chain))
    return doc


def check(conn: Connection) -> list[str]:
    """The audit (`ledger verify`): the credit chain links without a gap from the genesis,
    every root matches its stored lines, and every settlement's miner credits in the journal
    are exactly its lines' credits."""
    problems: list[str] = []
    previous = GENESIS.hex()
    rows = conn.execute(
        select(CreditRoot, Settlement.entry_id)
        .outerjoin(Settlement, Settlement.key == CreditRoot.key)
        .order_by(CreditRoot.id)
    )
    for root in rows:  # the root's columns and its settlement's entry id
        entry_id = root.entry_id
        if root.previous != previous:
            problems.append(f"the credit chain breaks at {root.key}")
        previous = root.commitment
        lines: dict[str, dict[str, object]] = json.loads(root.lines)
        got = commitment(
            period_root(lines, _salts(conn, sorted(lines), create=False), credit_layout(lines)),
            inputs_digest(json.loads(root.inputs)),
            bytes.fromhex(root.previous),
        ).hex()
        if got != root.commitment:
            problems.append(f"the credit root of {root.key} does not match its lines")
        if entry_id is None:
            problems.append(f"the credit root of {root.key} has no settlement")
            continue
        posted: dict[str, int] = {}
        for name, amount in conn.execute(
            select(JournalLine.account, JournalLine.amount_sat).where(
                JournalLine.entry_id == entry_id
            )
        ):
            miner = journal.miner_of(name)
            if miner is not None:
                posted[miner] = -int(amount)
        stated = {a: int(v["credit_sat"]) for a, v in lines.items() if int(v["credit_sat"])}  # type: ignore[call-overload]
        if posted != stated:
            problems.append(f"the journal's credits of {root.key} differ from its credit lines")
    return problems
