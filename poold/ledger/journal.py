"""The journal: account names, the one way anything is posted, and what a balance is.

Every account the ledger knows is built by a constructor here and read back by `parse`; no
other module writes or slices an account name. `post` is the only writer of journal entries:
it refuses lines that do not sum to zero (or are not whole satoshis, or name an account
`parse` does not know), and owns the idempotency key: the entry and its `settlements` row
are inserted in the caller's transaction, so a second post with the same key fails that
transaction with `AlreadyPosted` and changes nothing. Sign convention: debits positive,
credits negative; what the pool owes a miner or holder is the negative of their balance.

Two-phase transfers (as TigerBeetle's): a found block's entry is posted *pending*; at
maturity `resolve(..., post=True)` makes its lines count as posted, on orphan
`resolve(..., post=False)` voids them; a block back on the chain gets a new pending entry.
So "immature" is a pending line and "spendable" a posted one: `balances(conn, "pending")`
and `balances(conn, "posted")` say it, not a suffix on the account's name.

Accounts:
  miner:<account>                  what the pool owes a miner (pending until blocks mature)
  holder:<name>                    what token settlement owes a holder
  holder:<name>:debt               a holder's debt carried into the next period
  pool:<bucket>                    the pool's own buckets (POOL_BUCKETS); pool:wallet is the
                                   node wallet, a block's coinbase pending until it matures
  operator:<bucket>                the operator's side of token settlement (OPERATOR_BUCKETS)
Imports SQLAlchemy, the ledger models and the bulk writer only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from poold.ledger.db import bulk_insert_tuples, unique_violation
from poold.ledger.models import JournalEntry, JournalLine, Settlement

Phase = Literal["posted", "pending"]
POOL_BUCKETS = frozenset({"fee", "unallocated", "blocks", "wallet", "txfees", "fpps_paid"})
OPERATOR_BUCKETS = frozenset({"retained", "electricity", "service", "written_off", "make_good"})


class JournalError(ValueError):
    """Lines that must not be posted: unbalanced, not whole satoshis, or naming an account
    `parse` does not know."""


class AlreadyPosted(Exception):
    """An entry with this idempotency key exists: nothing was written."""


@dataclass(frozen=True, slots=True)
class ParsedAccount:
    kind: Literal["miner", "holder", "pool", "operator"]
    owner: str  # miner account, holder name, or bucket
    state: str = ""  # holder: "" | debt


def miner(account: str) -> str:
    if not account or ":" in account:
        raise JournalError(f"miner account {account!r}: must be non-empty, without ':'")
    return f"miner:{account}"


def holder(name: str, *, debt: bool = False) -> str:
    if not name:
        raise JournalError("holder name must be non-empty")
    return f"holder:{name}:debt" if debt else f"holder:{name}"


def pool(bucket: str) -> str:
    if bucket not in POOL_BUCKETS:
        raise JournalError(f"unknown pool bucket {bucket!r}")
    return f"pool:{bucket}"


def operator(bucket: str) -> str:
    if bucket not in OPERATOR_BUCKETS:
        raise JournalError(f"unknown operator bucket {bucket!r}")
    return f"operator:{bucket}"


def parse(name: str) -> ParsedAccount:
    """An account name back into its parts; JournalError for anything not built here."""
    kind, _, rest = name.partition(":")
    if kind == "miner":
        if rest and ":" not in rest:
            return ParsedAccount("miner", rest)
    elif kind == "holder" and rest:
        if rest.endswith(":debt") and len(rest) > len(":debt"):
            return ParsedAccount("holder", rest[: -len(":debt")], "debt")
        return ParsedAccount("holder", rest)
    elif kind == "pool" and rest in POOL_BUCKETS:
        return ParsedAccount("pool", rest)
    elif kind == "operator" and rest in OPERATOR_BUCKETS:
        return ParsedAccount("operator", rest)
    raise JournalError(f"not a ledger account: {name!r}")


def miner_of(name: str) -> str | None:
    """The miner account `name` is the journal account of, or None."""
    try:
        p = parse(name)
    except JournalError:
        return None
    return p.owner if p.kind == "miner" else None


def post(
    conn: Connection,
    *,
    kind: str,
    reference: str,
    key: str,
    lines: Sequence[tuple[str, int]],
    created_ms: int | None = None,
    phase: Phase = "posted",
) -> int:
    """Insert one balanced entry and its idempotency key in the caller's transaction; the
    entry id. An account may appear more than once; a zero line is kept (it shows the bucket).
    AlreadyPosted when `key` exists (the caller's transaction must then end: on PostgreSQL it
    is aborted); any other database error is the caller's, never read as "already posted"."""
    for account, amount in lines:
        parse(account)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise JournalError(f"entry {key!r}: {account} amount {amount!r} is not whole sat")
    total = sum(v for _a, v in lines)
    if total != 0:
        raise JournalError(f"entry {key!r} does not balance: its lines sum to {total} sat")
    entry_id: int = conn.execute(
        insert(JournalEntry)
        .values(
            kind=kind,
            reference=reference,
            created_ms=int(time.time() * 1000) if created_ms is None else created_ms,
            phase=phase,
        )
        .returning(JournalEntry.id)
    ).scalar_one()
    bulk_insert_tuples(  # COPY on PostgreSQL: a token period posts 100k lines
        conn,
        JournalLine.__table__,  # type: ignore[arg-type]
        ["entry_id", "account", "amount_sat"],
        [(entry_id, a, v) for a, v in lines],
    )
    try:
        conn.execute(insert(Settlement).values(key=key, entry_id=entry_id))
    except IntegrityError as exc:
        if unique_violation(exc):  # the key is taken: posted already (here or elsewhere)
            raise AlreadyPosted(key) from None
        raise JournalError(f"entry {key!r} was refused by the ledger: {exc.orig}") from None
    return entry_id


# -- SQL patterns and payees: the only other places account names are spelled --------------

#: LIKE patterns over account names, for queries that sum a kind of account.
HOLDER_LIKE = "holder:%"
HOLDER_DEBT_LIKE = "holder:%:debt"


MINER_LIKE = "miner:%"


def payee_account(payee: str) -> str:
    """The account a payee is paid from: a token holder (`holder:<name>`) or a miner (its
    spendable balance; miner names never contain a colon)."""
    if payee.startswith("holder:"):
        parse(payee)
        return payee
    return miner(payee)


def payee_of(account: str) -> str | None:
    """The payee an account pays, or None: `holder:<name>` for a holder, the miner's name for
    a miner's account."""
    try:
        p = parse(account)
    except JournalError:
        return None
    if p.kind == "holder" and not p.state:
        return account
    if p.kind == "miner":
        return p.owner
    return None


# -- two-phase: resolving a pending entry, and balances by phase ------------------------------


def resolve(
    conn: Connection, pending_id: int, *, post: bool, kind: str, reference: str, key: str
) -> int:
    """Post (maturity) or void (orphan) the pending entry `pending_id`, once: a second
    resolution of it, or the same `key` again, is AlreadyPosted."""
    found = conn.execute(select(JournalEntry.phase).where(JournalEntry.id == pending_id)).scalar()
    if found != "pending":
        raise JournalError(f"entry {pending_id} is not a pending entry ({found!r})")
    try:
        entry_id: int = conn.execute(
            insert(JournalEntry)
            .values(
                kind=kind,
                reference=reference,
                created_ms=int(time.time() * 1000),
                phase="post" if post else "void",
                pending_id=pending_id,
            )
            .returning(JournalEntry.id)
        ).scalar_one()
        conn.execute(insert(Settlement).values(key=key, entry_id=entry_id))
    except IntegrityError as exc:
        if unique_violation(exc):  # resolved already, or the key is taken
            raise AlreadyPosted(key) from None
        raise JournalError(f"entry {key!r} was refused by the ledger: {exc.orig}") from None
    return entry_id


def open_pending(conn: Connection, reference: str) -> int | None:
    """The newest pending entry of `reference` (a block hash) that nothing resolved yet."""
    resolution = aliased(JournalEntry)
    found: int | None = conn.execute(
        select(func.max(JournalEntry.id))
        .outerjoin(resolution, resolution.pending_id == JournalEntry.id)
        .where(
            JournalEntry.reference == reference,
            JournalEntry.phase == "pending",
            resolution.id.is_(None),
        )
    ).scalar()
    return found


def counts_as(phase: Phase) -> tuple[Any, Any]:
    """(the resolution alias to outer-join on `JournalEntry`, the condition) selecting the
    lines that count as `phase` now: posted = posted entries and pending ones a `post`
    resolved; pending = pending entries nothing resolved yet. Voided lines count as neither."""
    resolution = aliased(JournalEntry)
    if phase == "posted":
        cond = or_(
            JournalEntry.phase == "posted",
            and_(JournalEntry.phase == "pending", resolution.phase == "post"),
        )
    else:
        cond = and_(JournalEntry.phase == "pending", resolution.id.is_(None))
    return resolution, cond


def balances(conn: Connection, phase: Phase, *where: Any) -> dict[str, int]:
    """Each account's `phase` balance (satoshis), over the lines matching `where`."""
    resolution, cond = counts_as(phase)
    rows = conn.execute(
        select(JournalLine.account, func.sum(JournalLine.amount_sat))
        .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .outerjoin(resolution, resolution.pending_id == JournalEntry.id)
        .where(cond, *where)
        .group_by(JournalLine.account)
    )
    return {a: int(v) for a, v in rows}
