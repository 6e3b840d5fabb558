"""The journal: account names and the one way anything is posted.

Every account the ledger knows is built by a constructor here and read back by `parse`; no
other module writes or slices an account name. `post` is the only writer of journal entries:
it refuses lines that do not sum to zero (or are not whole satoshis, or name an account
`parse` does not know), and owns the idempotency key: the entry and its `settlements` row
are inserted in the caller's transaction, so a second post with the same key fails that
transaction with `AlreadyPosted` and changes nothing. Sign convention: debits positive,
credits negative; what the pool owes a miner or holder is the negative of their balance.

Accounts:
  coinbase:<block hash>            a found block's coinbase until it matures
  miner:<account>:immature         credits of blocks not yet mature
  miner:<account>:spendable        credits a payout may pay
  holder:<name>                    what token settlement owes a holder
  holder:<name>:debt               a holder's debt carried into the next period
  pool:<bucket>                    the pool's own buckets (POOL_BUCKETS)
  operator:<bucket>                the operator's side of token settlement (OPERATOR_BUCKETS)
Imports SQLAlchemy, the ledger models and the bulk writer only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from poold.ledger.db import bulk_insert_tuples
from poold.ledger.models import JournalEntry, JournalLine, Settlement

MinerState = Literal["immature", "spendable"]
POOL_BUCKETS = frozenset({"fee", "unallocated", "blocks", "wallet", "txfees", "fpps_paid"})
OPERATOR_BUCKETS = frozenset({"retained", "electricity", "service", "written_off"})
_HASH = re.compile(r"[0-9a-f]{64}")


class JournalError(ValueError):
    """Lines that must not be posted: unbalanced, not whole satoshis, or naming an account
    `parse` does not know."""


class AlreadyPosted(Exception):
    """An entry with this idempotency key exists: nothing was written."""


@dataclass(frozen=True, slots=True)
class ParsedAccount:
    kind: Literal["coinbase", "miner", "holder", "pool", "operator"]
    owner: str  # block hash, miner account, holder name, or bucket
    state: str = ""  # miner: immature | spendable; holder: "" | debt


def miner(account: str, state: MinerState) -> str:
    if not account or ":" in account:
        raise JournalError(f"miner account {account!r}: must be non-empty, without ':'")
    return f"miner:{account}:{state}"


def coinbase(block_hash: str) -> str:
    return f"coinbase:{block_hash}"


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
        account, _, state = rest.rpartition(":")
        if account and ":" not in account and state in ("immature", "spendable"):
            return ParsedAccount("miner", account, state)
    elif kind == "coinbase" and _HASH.fullmatch(rest):
        return ParsedAccount("coinbase", rest)
    elif kind == "holder" and rest:
        if rest.endswith(":debt") and len(rest) > len(":debt"):
            return ParsedAccount("holder", rest[: -len(":debt")], "debt")
        return ParsedAccount("holder", rest)
    elif kind == "pool" and rest in POOL_BUCKETS:
        return ParsedAccount("pool", rest)
    elif kind == "operator" and rest in OPERATOR_BUCKETS:
        return ParsedAccount("operator", rest)
    raise JournalError(f"not a ledger account: {name!r}")


def miner_of(name: str, state: MinerState) -> str | None:
    """The miner account of `name` when it is that miner's `state` account, else None."""
    try:
        p = parse(name)
    except JournalError:
        return None
    return p.owner if p.kind == "miner" and p.state == state else None


def post(
    conn: Connection,
    *,
    kind: str,
    reference: str,
    key: str,
    lines: Sequence[tuple[str, int]],
    created_ms: int | None = None,
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
        )
        .returning(JournalEntry.id)
    ).scalar_one()
    bulk_insert_tuples(  # COPY on PostgreSQL: a token period posts 100k lines
        conn,
        JournalLine.__table__,  # type: ignore[arg-type]
        ["entry_id", "account", "amount_sat"],
        [(entry_id, a, v) for a, v in lines],
    )
    try:  # the entry was just inserted: a violation here can only be the key's uniqueness
        conn.execute(insert(Settlement).values(key=key, entry_id=entry_id))
    except IntegrityError:
        raise AlreadyPosted(key) from None
    return entry_id


# -- SQL patterns and payees: the only other places account names are spelled --------------

#: LIKE patterns over account names, for queries that sum a kind of account.
HOLDER_LIKE = "holder:%"
HOLDER_DEBT_LIKE = "holder:%:debt"


def miner_like(state: MinerState | Literal["%"]) -> str:
    """LIKE pattern of every miner's `state` account (`%`: both states)."""
    return f"miner:%:{state}"


def payee_account(payee: str) -> str:
    """The account a payee is paid from: a token holder (`holder:<name>`) or a miner (its
    spendable balance; miner names never contain a colon)."""
    if payee.startswith("holder:"):
        parse(payee)
        return payee
    return miner(payee, "spendable")


def payee_of(account: str) -> str | None:
    """The payee an account pays, or None: `holder:<name>` for a holder, the miner's name for
    a miner's spendable balance."""
    try:
        p = parse(account)
    except JournalError:
        return None
    if p.kind == "holder" and not p.state:
        return account
    if p.kind == "miner" and p.state == "spendable":
        return p.owner
    return None
