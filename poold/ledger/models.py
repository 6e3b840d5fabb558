"""Ledger tables. Summed difficulties are exact fractions stored as integer text (no floats,
no width limit); everything else is plain integers. Imports SQLAlchemy only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = "0017"


class ExactInt(TypeDecorator[int]):
    """An arbitrary-size integer, stored as decimal text on every backend."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else str(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(64))
    # From the share log's worker records (`format.WorkerInfo`): the agent its last session
    # gave, its best share ever as the header hash (hex; smaller is better), when last heard.
    user_agent: Mapped[str | None] = mapped_column(String(128), nullable=True)
    best_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seen_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ShareSlice(Base):
    """Accepted shares of one worker in one minute at one network difficulty (compact bits),
    from one ingest batch: rows grow with slices, not with shares."""

    __tablename__ = "share_slices"
    __table_args__ = (
        Index("ix_slices_account_start", "account_id", "slice_start"),
        Index("ix_slices_start", "slice_start"),
    )
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    node_id: Mapped[int] = mapped_column(Integer)
    # No foreign keys (migration 0005: their triggers cost more than COPY itself); ingest
    # writes workers with their slices and `ledger verify` checks every slice's ids.
    account_id: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[int] = mapped_column(Integer)
    slice_start: Mapped[int] = mapped_column(BigInteger)  # unix seconds, minute-aligned
    bits: Mapped[int] = mapped_column(BigInteger)  # network target of the shares' jobs
    diff_num: Mapped[int] = mapped_column(ExactInt)  # summed share difficulty = num / den
    diff_den: Mapped[int] = mapped_column(ExactInt)
    shares: Mapped[int] = mapped_column(Integer)
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger)
    # What FPPS credits: the shares' difficulties each capped at the network difficulty of
    # `bits`, summed; NULL where no share was over it (then it equals diff_num / diff_den).
    credit_num: Mapped[int | None] = mapped_column(ExactInt, nullable=True)
    credit_den: Mapped[int | None] = mapped_column(ExactInt, nullable=True)


class SliceSum(Base):
    """Slice difficulty summed per aligned block of time (span 60, 600, 3600 or 86400 s) per
    account (0 = the whole pool), network bits and denominator: what a PPLNS window reads
    instead of millions of slices. Maintained by `poold.ledger.slices.sums` from slices with ids up
    to `SliceRollup.folded_id` (slices are append-only)."""

    __tablename__ = "slice_sums"
    span: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bits: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    diff_den: Mapped[int] = mapped_column(ExactInt, primary_key=True)
    diff_num: Mapped[int] = mapped_column(ExactInt)
    shares: Mapped[int] = mapped_column(BigInteger)


class SliceRollup(Base):
    """One row: every slice with id <= folded_id is counted in `slice_sums`."""

    __tablename__ = "slice_rollup"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    folded_id: Mapped[int] = mapped_column(BigInteger)


class Block(Base):
    __tablename__ = "blocks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    node_id: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    worker_id: Mapped[int] = mapped_column(ForeignKey("workers.id"))
    reward_sat: Mapped[int] = mapped_column(BigInteger)
    bits: Mapped[int] = mapped_column(BigInteger)
    found_ms: Mapped[int] = mapped_column(BigInteger)
    accepted: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))  # pending|rejected|confirmed|orphaned
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    confirmations: Mapped[int] = mapped_column(Integer, server_default="0")  # -1: orphaned
    # The token-statement commitment its coinbase carries (hex), if any.
    commitment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The miners' credit commitment its coinbase carries (see `CreditRoot`).
    credit_commitment: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Round effort: the pool's work since the previous accepted block's minute through this
    # block's minute, in network difficulties (exact; written when the block settles).
    effort_num: Mapped[int | None] = mapped_column(ExactInt, nullable=True)
    effort_den: Mapped[int | None] = mapped_column(ExactInt, nullable=True)


class IngestCheckpoint(Base):
    """Where ingest of one node's share log stands; committed with the rows it covers."""

    __tablename__ = "ingest_checkpoints"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    # The newest heartbeat ingested: every share and block of this node before `through_ms`
    # is in the ledger; `beat_ms` is when it was written, `final` whether it was the last
    # before a clean stop.
    through_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    beat_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SettlementExclusion(Base):
    """A settlement made without a node whose lease had lapsed past `node_wait_s`: what of that
    node was in the ledger then (slices up to `slice_id`, its log up to `segment`/`offset`,
    its watermark). Its shares ingested later are not in that settlement, by design."""

    __tablename__ = "settlement_exclusions"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    through_ms: Mapped[int] = mapped_column(BigInteger)
    slice_id: Mapped[int] = mapped_column(BigInteger)
    segment: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)


class StratumNode(Base):
    """A stratum daemon (or one worker of it) feeding this ledger: registered at start with
    its share log's identity, holding a lease it renews every ledger pass."""

    __tablename__ = "nodes"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    log_id: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(200))
    started_ms: Mapped[int] = mapped_column(BigInteger)
    lease_until_ms: Mapped[int] = mapped_column(BigInteger)


class JournalEntry(Base):
    """One balanced posting: its lines' amounts add up to zero (checked by `ledger verify`).

    `phase` (two-phase transfers, as TigerBeetle's): `posted` counts at once; `pending` (a found
    block's credits) counts as pending until a `post` entry (maturity) or a `void` entry
    (orphan) with `pending_id` = its id resolves it; those two carry no lines."""

    __tablename__ = "journal_entries"
    __table_args__ = (Index("uq_entries_pending_id", "pending_id", unique=True),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # e.g. pplns_block
    reference: Mapped[str] = mapped_column(String(128))  # e.g. the block hash
    created_ms: Mapped[int] = mapped_column(BigInteger)
    phase: Mapped[str] = mapped_column(String(8), server_default="posted")
    pending_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class JournalLine(Base):
    """A signed amount on one ledger account: debits positive, credits negative (satoshis)."""

    __tablename__ = "journal_lines"
    __table_args__ = (Index("ix_lines_account", "account"),)
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    account: Mapped[str] = mapped_column(String(128))  # e.g. miner:alice:immature, pool:fee
    amount_sat: Mapped[int] = mapped_column(BigInteger)


class Settlement(Base):
    """The idempotency guard: one row per settled thing (`pplns:<block hash>`, ...)."""

    __tablename__ = "settlements"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))


class PayoutSetting(Base):
    """An account's own payout address and threshold (overriding the config minimum)."""

    __tablename__ = "payout_settings"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str | None] = mapped_column(String(100), nullable=True)
    min_payout_sat: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Payout(Base):
    """One wallet send. `intent` is committed before the wallet is called; the txid (found by
    the comment `poold-payout:<id>` after a crash) turns it into `sent`, with its journal entry."""

    __tablename__ = "payouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # intent | sent | confirmed | failed
    created_ms: Mapped[int] = mapped_column(BigInteger)
    total_sat: Mapped[int] = mapped_column(BigInteger)
    txid: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    fee_sat: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    # The leadership epoch that wrote the intent (None: `poold payout`, outside leadership).
    epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(300), nullable=True)


class PayoutItem(Base):
    __tablename__ = "payout_items"
    __table_args__ = (Index("ix_payout_items_account", "account"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"))
    account: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(100))
    amount_sat: Mapped[int] = mapped_column(BigInteger)


class LeaderLease(Base):
    """The ledger's one leader (`ledger.leader`): who holds the lease, until when, and the
    epoch, raised by one at every change of holder. Every leader write checks the epoch in its
    own transaction (`db.fenced`)."""

    __tablename__ = "leader_lease"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(200))  # node id, host, pid and a random tag
    lease_until_ms: Mapped[int] = mapped_column(BigInteger)
    since_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerLock(Base):
    """A named lease (e.g. `payouts`) so two processes never run the same job at once."""

    __tablename__ = "ledger_locks"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))  # host:pid
    since_ms: Mapped[int] = mapped_column(BigInteger)


class FppsCursor(Base):
    """The last share slice of one node already booked by FPPS (slices of a node are written
    by its ingest alone, in id order, so nothing ingested late is skipped)."""

    __tablename__ = "fpps_cursors"
    node_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    slice_id: Mapped[int] = mapped_column(BigInteger)


class FppsCarry(Base):
    """An account's sub-satoshi FPPS remainder carried into the next period, in [0, 1):
    an exact fraction as text ("num/den"; denominators grow with network difficulty)."""

    __tablename__ = "fpps_carry"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ChainFees(Base):
    """Total fees of a chain block (coinbase value - subsidy), for FPPS's average."""

    __tablename__ = "chain_fees"
    height: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_hash: Mapped[str] = mapped_column(String(64))
    fees_sat: Mapped[int] = mapped_column(BigInteger)


class NetworkSample(Base):
    """The chain as the pool saw it from `t_s` (unix seconds) until the next sample: the
    height and target bits of the block being mined and the mean fees of the last
    `fee_blocks` blocks. Written by the ledger's leader when any of them changes; the
    network's hashprice over any period follows from these (`ledger.network`)."""

    __tablename__ = "network_samples"
    t_s: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    height: Mapped[int] = mapped_column(Integer)
    bits: Mapped[int] = mapped_column(BigInteger)
    subsidy_sat: Mapped[int] = mapped_column(BigInteger)
    avg_fees_sat: Mapped[str] = mapped_column(Text)  # exact decimal or fraction text
    fee_blocks: Mapped[int] = mapped_column(Integer)


class TokenTransfer(Base):
    """One token movement: mint (no sender), burn (no receiver) or transfer; `ext_id` is the
    source's id (e.g. chain txid:log index), `digest` its content, so a re-import is a no-op
    and a changed one is refused."""

    __tablename__ = "token_transfers"
    __table_args__ = (
        Index("ix_token_transfers_ts", "ts"),
        Index("ix_token_transfers_sender", "sender"),
        Index("ix_token_transfers_receiver", "receiver"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ext_id: Mapped[str] = mapped_column(String(160), unique=True)
    ts: Mapped[int] = mapped_column(BigInteger)  # unix seconds
    sender: Mapped[str | None] = mapped_column(String(128), nullable=True)
    receiver: Mapped[str | None] = mapped_column(String(128), nullable=True)
    amount: Mapped[str] = mapped_column(String(80))  # exact decimal or fraction text
    digest: Mapped[str] = mapped_column(String(64))


class TokenPrice(Base):
    """The BTC/USD rate the operator set for one settlement period."""

    __tablename__ = "token_prices"
    period_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    btc_usd: Mapped[str] = mapped_column(String(80))


class TokenPeriod(Base):
    """A settled token period: the inputs and totals behind its statements."""

    __tablename__ = "token_periods"
    period_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    period_end: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"))
    btc_usd: Mapped[str] = mapped_column(String(80))
    # exact TH/s the fleet measured (column named before units were spelled out)
    delivered_th_per_s: Mapped[str] = mapped_column("delivered_ths", Text)
    nominal_th_seconds: Mapped[str] = mapped_column("nominal_th_s", Text)  # TH*s the tokens held
    delivery_ratio: Mapped[str] = mapped_column(Text)
    earnings_sat: Mapped[int] = mapped_column(BigInteger)
    holders_pot_sat: Mapped[int] = mapped_column(BigInteger)
    operator_retained_sat: Mapped[int] = mapped_column(BigInteger)


#: A statement line's satoshi columns, in statement order.
STATEMENT_AMOUNTS = (
    "gross_sat",
    "electricity_sat",
    "service_sat",
    "net_sat",
    "debt_in_sat",
    "paid_sat",
    "debt_out_sat",
    "written_off_sat",
)


class TokenStatement(Base):
    """One holder's statement for one period (all amounts satoshis)."""

    __tablename__ = "token_statements"
    __table_args__ = (UniqueConstraint("holder", "period_start"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    period_start: Mapped[int] = mapped_column(ForeignKey("token_periods.period_start"))
    token_seconds: Mapped[str] = mapped_column(Text)
    gross_sat: Mapped[int] = mapped_column(BigInteger)
    electricity_sat: Mapped[int] = mapped_column(BigInteger)
    service_sat: Mapped[int] = mapped_column(BigInteger)
    net_sat: Mapped[int] = mapped_column(BigInteger)
    debt_in_sat: Mapped[int] = mapped_column(BigInteger)
    paid_sat: Mapped[int] = mapped_column(BigInteger)
    debt_out_sat: Mapped[int] = mapped_column(BigInteger)
    written_off_sat: Mapped[int] = mapped_column(BigInteger)
    # The holder's part of the period's make-good (`[tokens] make_good`): the shortfall under
    # the delivery threshold valued at the network's hashprice, posted from the operator.
    make_good_sat: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class HolderSalt(Base):
    """A holder's secret salt: a statement tree shows H(salt || name), never the name."""

    __tablename__ = "holder_salts"
    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    salt: Mapped[str] = mapped_column(String(64))  # hex


class StatementRoot(Base):
    """A settled token period's Merkle-sum root (hash and sums as JSON), its published inputs
    (canonical JSON), and its commitment H(root, sums, inputs, previous): a chain."""

    __tablename__ = "statement_roots"
    period_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    sums: Mapped[str] = mapped_column(Text)
    inputs: Mapped[str] = mapped_column(Text)
    previous: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(64), unique=True)


class WorkRoot(Base):
    """A token period's work-proof commitment: the root of the Merkle-sum tree over the fleet's
    shares of the period (hash, exact work in hashes, leaves), the salt of its account tags,
    and, once the beacon block is mined, the published sample (`proof`, JSON) and its beacon."""

    __tablename__ = "work_roots"
    period_start: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(Text)  # the packed root node, base64
    work: Mapped[str] = mapped_column(Text)  # whole hashes, as text (beyond 64 bits)
    leaves: Mapped[int] = mapped_column(BigInteger)
    salt: Mapped[str] = mapped_column(String(32))
    beacon_block: Mapped[str | None] = mapped_column(String(64), nullable=True)
    proof: Mapped[str | None] = mapped_column(Text, nullable=True)


class ApiToken(Base):
    """A read or admin token for the HTTP API, stored as its SHA-256 digest only."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(160))  # "admin" or "holder:<name>"
    created_ms: Mapped[int] = mapped_column(BigInteger)


class SchemaVersion(Base):
    __tablename__ = "poold_schema"
    version: Mapped[str] = mapped_column(String(16), primary_key=True)


class CreditRoot(Base):
    """The Merkle-sum root of one settlement's miner lines (a PPLNS/PROP/SOLO block or an
    FPPS booking; `key` is the settlement's key), the lines themselves (JSON, by account),
    the published inputs and the commitment chain (`previous` is unique: a chain, no fork)."""

    __tablename__ = "credit_roots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str] = mapped_column(String(128), unique=True)  # block hash | FPPS end
    root_hash: Mapped[str] = mapped_column(String(64))
    sums: Mapped[str] = mapped_column(Text)
    inputs: Mapped[str] = mapped_column(Text)
    lines: Mapped[str] = mapped_column(Text)
    previous: Mapped[str] = mapped_column(String(64), unique=True)
    commitment: Mapped[str] = mapped_column(String(64), unique=True)


class RejectCount(Base):
    """Shares rejected per account and reason, over every node and restart (from the share
    logs' rejects records, ingested exactly once like the shares)."""

    __tablename__ = "reject_counts"
    account: Mapped[str] = mapped_column(String(128), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class ChainAnchor(Base):
    """A Bitcoin transaction that carries the commitment chains' heads (OP_RETURN "pold" +
    statement + credit commitment) with what proves it offline: the coinbase of a block the
    pool found, or an anchor transaction the pool's wallet sent. `status`: `sent` (an anchor
    transaction not mined yet), `mined` (the evidence is filled in: block header, the
    transaction's non-witness bytes, its index and merkle branch), `orphaned` (its block left
    the best chain: never shown in a proof)."""

    __tablename__ = "chain_anchors"
    __table_args__ = (Index("ix_chain_anchors_statement", "statement"),
                      Index("ix_chain_anchors_credit", "credit"))  # fmt: skip
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # coinbase | transaction
    txid: Mapped[str] = mapped_column(String(64), unique=True)  # display order
    statement: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[str] = mapped_column(String(12))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    confirmations: Mapped[int] = mapped_column(Integer, default=0)
    header: Mapped[str | None] = mapped_column(String(160), nullable=True)
    tx: Mapped[str | None] = mapped_column(Text, nullable=True)
    tx_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    branch: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list of hex


class ChainView(Base):
    """What the ledger's leader last saw of the chain and of its own anchoring (one row,
    `id` 1): the best block, when, the anchor-transaction cadence, and every script the
    pool's coinbases and anchor transactions have paid (JSON lists of hex: an address change
    must not orphan older anchors). A proof names them."""

    __tablename__ = "chain_view"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    best_hash: Mapped[str] = mapped_column(String(64))
    best_height: Mapped[int] = mapped_column(Integer)
    seen_ms: Mapped[int] = mapped_column(BigInteger)
    interval_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    coinbase_scripts: Mapped[str] = mapped_column(Text)
    anchor_scripts: Mapped[str] = mapped_column(Text)
