"""Payouts: spendable miner balances paid through the bitcoind wallet, never twice.

One run (under the `payouts` lease, so two processes never pay at once):
  1. reconcile: a payout left as `intent` (a crash or timeout around the wallet call) is looked
     up in the wallet by its comment `poold-payout:<id>`: found -> recorded as sent; not found ->
     the wallet never sent it -> `failed`, nothing moved. Sent payouts are followed to
     `confirmed`.
  2. plan: payees owed at least their threshold (per-account override, else the config
     minimum) with a valid address (their override, else the name if it is one), in batches of
     at most `max_outputs` addresses. Payees are miner accounts (their spendable balance) and
     token holders (`holder:<name>`, what their statements paid them).
  3. send each batch: the intent row is committed first, then the wallet is called, then the
     txid, fee and journal entry are written in one transaction:
        + amount  miner:<account>:spendable or holder:<name>   (the pool no longer owes it)
        - total+fee pool:wallet
        + fee     pool:txfees                 (the pool pays the network fee)
Imports SQLAlchemy, poold.ledger and poold.bitcoind.client only.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from poold.bitcoind.client import BitcoindError, BitcoindRefused, Wallet, WalletTx
from poold.chain.address import Network, address_to_script
from poold.ledger import journal
from poold.ledger.db import (
    Fence,
    LedgerError,
    fence_set,
    fenced,
    ledger_entry,
    ledger_entry_async,
)
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import (
    JournalLine,
    LedgerLock,
    Payout,
    PayoutItem,
    PayoutSetting,
)

COMMENT = "poold-payout:{}"


class PayoutError(RuntimeError):
    """A payout run stopped; the message says why and what state it left."""


@dataclass(frozen=True)
class Payment:
    account: str
    address: str
    amount_sat: int


@dataclass
class PayoutReport:
    batches: list[list[Payment]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # account -> why not paid now
    sent: list[tuple[int, str, int]] = field(default_factory=list)  # (payout id, txid, total)
    reconciled: list[tuple[int, str]] = field(default_factory=list)  # (payout id, new status)

    @property
    def total_sat(self) -> int:
        return sum(p.amount_sat for batch in self.batches for p in batch)


@ledger_entry
def set_account(
    engine: Engine, account: str, *, address: str | None, min_payout_sat: int | None
) -> None:
    """Store an account's payout address and/or threshold (None leaves a field unchanged)."""
    with engine.begin() as conn:
        row = conn.execute(
            select(PayoutSetting.address, PayoutSetting.min_payout_sat).where(
                PayoutSetting.account == account
            )
        ).first()
        if row is None:
            conn.execute(
                insert(PayoutSetting).values(
                    account=account, address=address, min_payout_sat=min_payout_sat
                )
            )
        else:
            conn.execute(
                update(PayoutSetting)
                .where(PayoutSetting.account == account)
                .values(
                    address=address if address is not None else row[0],
                    min_payout_sat=min_payout_sat if min_payout_sat is not None else row[1],
                )
            )


def ledger_account(payee: str) -> str:
    """The journal account a payee is paid from: a miner account's spendable balance, or a
    token holder's (payees named `holder:<name>`; miner names never contain a colon)."""
    return journal.payee_account(payee)


@ledger_entry
def owed(engine: Engine) -> dict[str, int]:
    """What the pool owes each payee now, satoshis: miners by account name (their posted
    balance: credits of matured blocks, FPPS bookings), token holders as `holder:<name>`."""
    with engine.connect() as conn:
        rows = journal.balances(
            conn,
            "posted",
            JournalLine.account.like(journal.MINER_LIKE)
            | (
                JournalLine.account.like(journal.HOLDER_LIKE)
                & ~JournalLine.account.like(journal.HOLDER_DEBT_LIKE)
            ),
        ).items()
    out: dict[str, int] = {}
    for account, total in rows:
        payee = journal.payee_of(account)
        if payee is not None and total:
            out[payee] = -int(total)
    return out


@ledger_entry
def plan(
    engine: Engine, *, network: Network, min_payout_sat: int, max_outputs: int
) -> tuple[list[list[Payment]], dict[str, str]]:
    """Who is paid how much now, in batches, and why the others are not."""
    balances = owed(engine)
    with engine.connect() as conn:
        settings = {
            a: (addr, m)
            for a, addr, m in conn.execute(
                select(PayoutSetting.account, PayoutSetting.address, PayoutSetting.min_payout_sat)
            )
        }
        unresolved = set(
            conn.execute(
                select(PayoutItem.account)
                .join(Payout, PayoutItem.payout_id == Payout.id)
                .where(Payout.status == "intent")
            ).scalars()
        )
    payments: list[Payment] = []
    skipped: dict[str, str] = {}
    for account in sorted(balances):
        amount = balances[account]
        address, threshold = settings.get(account, (None, None))
        threshold = min_payout_sat if threshold is None else threshold
        if account in unresolved:
            skipped[account] = "a payout to it is not reconciled yet"
        elif amount < threshold:
            skipped[account] = f"balance {amount} sat is below its threshold {threshold} sat"
        else:
            candidate = address or account.removeprefix("holder:")
            try:
                address_to_script(candidate, network)
            except ValueError as exc:
                skipped[account] = (
                    f"no valid {network.value} payout address ({candidate!r}: {exc}); "
                    "set one with `poold account set`"
                )
                continue
            payments.append(Payment(account, candidate, amount))
    # One output per address per transaction: accounts sharing an address go to later batches.
    batches: list[list[Payment]] = []
    for p in payments:
        for batch in batches:
            if len(batch) < max_outputs and all(q.address != p.address for q in batch):
                batch.append(p)
                break
        else:
            batches.append([p])
    return batches, skipped


# --- the lease ---------------------------------------------------------------------------


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's process: only its operator can say it is gone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


@ledger_entry
def acquire(engine: Engine, name: str) -> None:
    """Take the lease `name` or raise PayoutError naming who holds it. A holder on this
    machine that no longer runs (kill -9) is replaced."""
    for _ in range(2):
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(LedgerLock).values(
                        name=name, holder=_me(), since_ms=int(time.time() * 1000)
                    )
                )
            return
        except IntegrityError:
            with engine.begin() as conn:
                holder = conn.execute(
                    select(LedgerLock.holder).where(LedgerLock.name == name)
                ).scalar()
                if holder is not None and _alive(holder):
                    raise PayoutError(f"{name} are already running in {holder}") from None
                conn.execute(
                    delete(LedgerLock).where(LedgerLock.name == name, LedgerLock.holder == holder)
                )
    raise PayoutError(f"could not take the {name} lease")


@ledger_entry
def release(engine: Engine, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(LedgerLock).where(LedgerLock.name == name, LedgerLock.holder == _me()))


# --- writes ------------------------------------------------------------------------------


def _write_intent(engine: Engine, batch: list[Payment], fence: Fence | None = None) -> int:
    with fence_set(fence), fenced(engine) as conn:
        payout_id = conn.execute(
            insert(Payout)
            .values(
                status="intent",
                created_ms=int(time.time() * 1000),
                total_sat=sum(p.amount_sat for p in batch),
                confirmations=0,
                epoch=None if fence is None else fence.epoch,
            )
            .returning(Payout.id)
        ).scalar_one()
        conn.execute(
            insert(PayoutItem),
            [
                {
                    "payout_id": payout_id,
                    "account": p.account,
                    "address": p.address,
                    "amount_sat": p.amount_sat,
                }
                for p in batch
            ],
        )
    return int(payout_id)


def _record_sent(engine: Engine, payout_id: int, tx: WalletTx, fence: Fence | None = None) -> bool:
    """Txid, fee and the journal entry, in one transaction; False if already recorded."""
    try:
        with fence_set(fence), fenced(engine) as conn:
            status, total = conn.execute(
                select(Payout.status, Payout.total_sat).where(Payout.id == payout_id)
            ).one()
            if status != "intent":
                return False
            items = conn.execute(
                select(PayoutItem.account, PayoutItem.amount_sat).where(
                    PayoutItem.payout_id == payout_id
                )
            ).all()
            lines = [(ledger_account(a), int(v)) for a, v in items]
            lines.append((journal.pool("wallet"), -(int(total) + tx.fee_sat)))
            if tx.fee_sat:
                lines.append((journal.pool("txfees"), tx.fee_sat))
            entry_id = post(
                conn, kind="payout", reference=tx.txid, key=f"payout:{payout_id}", lines=lines
            )
            conn.execute(
                update(Payout)
                .where(Payout.id == payout_id)
                .values(
                    status="sent",
                    txid=tx.txid,
                    fee_sat=tx.fee_sat,
                    entry_id=entry_id,
                    confirmations=max(tx.confirmations, 0),
                )
            )
        return True
    except AlreadyPosted:
        return False


def _set_status(
    engine: Engine, payout_id: int, status: str, fence: Fence | None = None, **values: object
) -> None:
    with fence_set(fence), fenced(engine) as conn:
        conn.execute(update(Payout).where(Payout.id == payout_id).values(status=status, **values))


def _open_payouts(engine: Engine) -> list[tuple[int, str, str | None, int, int | None]]:
    with engine.connect() as conn:
        return [
            (int(i), s, t, int(c), None if e is None else int(e))
            for i, s, t, c, e in conn.execute(
                select(Payout.id, Payout.status, Payout.txid, Payout.created_ms, Payout.epoch)
                .where(Payout.status.in_(("intent", "sent")))
                .order_by(Payout.id)
            )
        ]


@ledger_entry_async
async def reconcile(
    engine: Engine,
    wallet: Wallet,
    *,
    confirmations: int = 1,
    fence: Fence | None = None,
    lease_ms: int = 0,
) -> list[tuple[int, str]]:
    """Settle what earlier runs left open; returns (payout id, new status) for each change.

    Under a fence, an intent written in an older leadership epoch is looked up only once that
    leader cannot be sending any more: its lease (at most `lease_ms` from the intent) is over,
    and so is the wallet call it may have started just before (bounded by another lease)."""
    changes: list[tuple[int, str]] = []
    now_ms = int(time.time() * 1000)
    for payout_id, status, txid, created_ms, epoch in await asyncio.to_thread(
        _open_payouts, engine
    ):
        if (
            status == "intent"
            and fence is not None
            and epoch is not None
            and epoch != fence.epoch
            and now_ms < created_ms + 2 * lease_ms
        ):
            continue  # its leader may still be sending: the next run looks again
        if status == "intent":
            found = await wallet.find_sent(COMMENT.format(payout_id), created_ms // 1000 - 60)
            if found is None:
                await asyncio.to_thread(
                    _set_status,
                    engine,
                    payout_id,
                    "failed",
                    fence,
                    reason="the wallet has no send for it: it was never paid",
                )
                changes.append((payout_id, "failed"))
            else:
                tx = await wallet.wallet_tx(found)
                if await asyncio.to_thread(_record_sent, engine, payout_id, tx, fence):
                    changes.append((payout_id, "sent"))
            continue
        assert txid is not None
        tx = await wallet.wallet_tx(txid)
        if tx.confirmations >= confirmations:
            await asyncio.to_thread(
                _set_status, engine, payout_id, "confirmed", fence, confirmations=tx.confirmations
            )
            changes.append((payout_id, "confirmed"))
        elif tx.confirmations < 0:
            # Never re-paid automatically: the operator decides (the wallet may still mine it).
            await asyncio.to_thread(
                _set_status,
                engine,
                payout_id,
                "conflicted",
                fence,
                reason="the wallet reports a conflict",
            )
            changes.append((payout_id, "conflicted"))
    return changes


@ledger_entry_async
async def run_payouts(
    engine: Engine,
    wallet: Wallet,
    *,
    network: Network,
    min_payout_sat: int,
    max_outputs: int,
    send: bool,
    confirmations: int = 1,
    fence: Fence | None = None,
    lease_ms: int = 0,
    leading: Callable[[], bool] = lambda: True,
) -> PayoutReport:
    """Reconcile, plan, and (with `send`) pay. A dry run writes nothing.

    The daemon's leader passes its `fence` (each intent is committed with its epoch, every
    write checks it), its lease and `leading`, asked just before each wallet call: a leader
    that stepped down sends nothing more."""
    report = PayoutReport()
    if not send:
        report.batches, report.skipped = await asyncio.to_thread(
            plan, engine, network=network, min_payout_sat=min_payout_sat, max_outputs=max_outputs
        )
        return report
    await asyncio.to_thread(acquire, engine, "payouts")
    try:
        report.reconciled = await reconcile(
            engine, wallet, confirmations=confirmations, fence=fence, lease_ms=lease_ms
        )
        report.batches, report.skipped = await asyncio.to_thread(
            plan, engine, network=network, min_payout_sat=min_payout_sat, max_outputs=max_outputs
        )
        for batch in report.batches:
            payout_id = await asyncio.to_thread(_write_intent, engine, batch, fence)
            if not leading():
                raise PayoutError(
                    f"payout {payout_id}: this daemon no longer leads, nothing sent; the intent "
                    "is reconciled by the next leader"
                )
            outputs: dict[str, int] = defaultdict(int)
            for p in batch:
                outputs[p.address] += p.amount_sat
            try:
                txid = await wallet.send_many(dict(outputs), COMMENT.format(payout_id))
            except BitcoindRefused as exc:
                await asyncio.to_thread(
                    _set_status, engine, payout_id, "failed", fence, reason=str(exc)
                )
                raise PayoutError(
                    f"payout {payout_id} refused by the wallet, nothing paid: {exc}"
                ) from None
            except BitcoindError as exc:
                raise PayoutError(
                    f"payout {payout_id}: no answer from the wallet ({exc}); it stays an intent "
                    "and the next run finds out whether it was sent"
                ) from None
            try:
                tx = await wallet.wallet_tx(txid)
            except BitcoindError as exc:
                raise PayoutError(
                    f"payout {payout_id} was sent as {txid} but not recorded yet ({exc}); "
                    "the next run records it"
                ) from None
            await asyncio.to_thread(_record_sent, engine, payout_id, tx, fence)
            report.sent.append((payout_id, txid, sum(p.amount_sat for p in batch)))
    except LedgerError as exc:
        raise PayoutError(str(exc)) from None
    finally:
        await asyncio.to_thread(release, engine, "payouts")
    return report
