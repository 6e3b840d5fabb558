"""The API's request and response bodies as pydantic models: the OpenAPI document is generated
from them (`poold.api.openapi`), request bodies are parsed with them (`base.body_of`), and the
tests validate every response against the generated document. Data only: imports pydantic
and the statement fields of the ledger's models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model, field_validator

from poold.ledger.models import STATEMENT_AMOUNTS

HEX64 = r"^[0-9a-f]{64}$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def Sat(description: str = "satoshis") -> Any:
    return Field(description=description)


class Error(Model):
    error: str = Field(description="what was wrong, naming the field or resource")


class Rates(Model):
    """Hashrate in H/s over the last 10 minutes, hour and day (complete minutes)."""

    ten_minutes: int = Field(alias="10m", ge=0)
    hour: int = Field(alias="1h", ge=0)
    day: int = Field(alias="24h", ge=0)


class Exact(Model):
    """exact: the value as an exact decimal when it has one ('97000.5'), else an exact
    fraction ('764/1220703125'); display: rounded, for people."""

    exact: str = Field(pattern=r"^-?\d+(\.\d+|/\d+)?$")
    display: str


class ShareCounts(Model):
    accepted: int = Field(ge=0, description="shares in the ledger, every node, every restart")
    rejected: dict[str, int] = Field(description="by reason, every node, every restart")


class Pool(Model):
    hashrate_hs: Rates
    workers_online: int = Field(ge=0)
    miners_online: int = Field(ge=0)
    blocks: dict[str, int] = Field(description="blocks by status")
    scheme: Literal["pplns", "fpps", "prop", "solo"]
    fee: str = Field(description="the pool fee as a fraction of the reward, exact")
    fee_percent: str = Field(description="the fee in percent, exact")
    round_effort: str = Field(
        description="the work since the last block's minute in network difficulties (1 = an "
        "average round); resets at each block"
    )
    pplns_window_fill: str
    pplns_unallocated: str
    shares: ShareCounts


class Block(Model):
    height: int = Field(ge=0)
    hash: str = Field(pattern=HEX64)
    status: str = Field(description="pending, confirmed, orphaned, rejected or unknown")
    reward_sat: int = Sat("the coinbase value")
    found_ms: int
    finder: str = Field(description="account.worker")
    confirmations: int = Field(description="-1: orphaned; 100 makes the coinbase spendable")
    effort: Exact | None = Field(
        description="the block's round in network difficulties (1 = an average round), "
        "known once the block is settled"
    )


class Page(Model):
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


def listing(item: type[BaseModel], name: str) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        name,
        __base__=Model,
        items=(list[item], ...),  # type: ignore[valid-type]
        limit=(int, ...),
        offset=(int, ...),
    )
    return model


class BalanceSat(Model):
    immature: int = Sat("owed once its blocks mature")
    spendable: int = Sat("owed now: a payout may pay it")


class Miner(Model):
    account: str
    hashrate_hs: Rates
    workers: dict[str, Rates] = Field(description="account.worker -> hashrate")
    shares_accepted: int = Field(ge=0)
    shares_rejected: dict[str, int] = Field(description="by reason, every node, every restart")
    balance_sat: BalanceSat


class Worker(Model):
    worker: str
    hashrate_hs: Rates
    online: bool = Field(description="shares in the last 10 minutes")
    last_seen_ms: int | None = Field(description="its newest share (or connection) known")
    best_difficulty: Exact | None = Field(description="its best share ever, as a difficulty")
    user_agent: str | None = Field(description="what its miner software said at subscribe")


class WorkerList(Model):
    items: list[Worker]


class Credit(Model):
    entry: int
    reason: str = Field(description="the journal entry's kind (pplns_block, fpps_period, ...)")
    reference: str = Field(description="a block hash or an FPPS period end: the proof's key")
    time_ms: int
    balance: Literal["immature", "spendable", "voided"]
    amount_sat: int = Sat("what the pool owes the miner more (negative: less)")


class MinerPayout(Model):
    """A payout line, for a miner account or a token holder."""

    payout: int
    status: str
    txid: str | None
    time_ms: int
    amount_sat: int
    address: str


StatementTotals: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "StatementTotals", __base__=Model, **{f: (int, ...) for f in STATEMENT_AMOUNTS}
)


class Holder(Model):
    holder: str
    tokens: str = Field(description="tokens held now, exact")
    balance_sat: int
    totals: StatementTotals


class PeriodTimes(Model):
    start: str
    end: str


class DeliveredHashrate(Model):
    nominal_th_per_s: Exact
    delivered_th_per_s: Exact
    delivery_ratio: Exact


class _StatementBase(Model):
    period_start: int
    period_end: int
    period: PeriodTimes
    token_seconds: str
    ths_nominal: str
    ths_delivered: str
    hashrate: DeliveredHashrate
    btc: dict[str, str] = Field(description="each amount in BTC, exact (8 decimals)")
    btc_usd: str
    btc_usd_decimal: Exact
    hashprice_sat_per_th_day: str | None
    rates: dict[str, Exact] = Field(
        description="the period's w_per_th, usd_per_kwh, discount and service_usd_per_th_day "
        "(empty for periods settled before they were published)"
    )
    electricity_kwh: Exact | None = Field(description="the energy behind the electricity cost")
    period_pot_sat: int
    operator_retained_sat: int
    blocks: list[str] = Field(description="the blocks whose rewards the period shared")
    fpps_periods: list[int] = Field(description="the FPPS bookings the period shared")


Statement: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Statement", __base__=_StatementBase, **{f: (int, ...) for f in STATEMENT_AMOUNTS}
)


class Transfer(Model):
    id: str
    ts: int
    from_: str | None = Field(alias="from")
    to: str | None
    amount: str
    balance_after: str


class ImportResult(Model):
    added: int
    unchanged: int


class Point(Model):
    t: int
    hs: int


class Series(Model):
    window: Literal["1h", "24h", "7d", "30d"]
    points: list[Point]


class Price(Model):
    period_start: int
    btc_usd: str


class RootNode(Model):
    hash: str = Field(pattern=HEX64)
    sums: list[int]


class Anchor(Model):
    hash: str = Field(pattern=HEX64)
    height: int


class Root(Model):
    period_start: int
    root: RootNode
    inputs_digest: str = Field(pattern=HEX64)
    previous: str = Field(pattern=HEX64)
    commitment: str = Field(pattern=HEX64)
    inputs: dict[str, Any] = Field(description="everything a holder needs to recompute a line")
    blocks: list[Anchor] = Field(description="accepted blocks whose coinbase carries it")


class CreditRoot(Model):
    key: str = Field(description="the settlement: pplns:<block>, prop:…, solo:…, fpps:<end>")
    root: RootNode
    inputs_digest: str = Field(pattern=HEX64)
    previous: str = Field(pattern=HEX64)
    commitment: str = Field(pattern=HEX64)
    inputs: dict[str, Any] = Field(description="reward, fee, score total or FPPS values")
    blocks: list[Anchor] = Field(description="accepted blocks whose coinbase carries it")


class ProofAnchor(Model):
    """A transaction that carries a commitment of the proof's chain, with what proves it."""

    type: Literal["coinbase", "transaction"] = Field(
        description="a found block's coinbase, or an anchor transaction of the pool's wallet"
    )
    block: str = Field(pattern=HEX64, description="the block holding it (display order)")
    height: int
    header: str = Field(pattern=r"^[0-9a-f]{160}$", description="the block's 80-byte header")
    tx: str = Field(pattern=r"^([0-9a-f]{2})+$", description="non-witness serialisation")
    index: int = Field(description="its position in the block (0: the coinbase)")
    branch: list[str] = Field(description="merkle branch to the header's merkle root, leaves up")
    commitment: str = Field(pattern=HEX64, description="what it carries in the proof's slot")


class ProofCut(Model):
    head: str = Field(pattern=HEX64, description="the last commitment of the proof's chain")
    best_block: str | None = Field(description="the best block the pool's ledger last saw")
    best_height: int | None
    time: int | None = Field(description="when it saw it, unix seconds")


class ProofPool(Model):
    coinbase_scripts: list[str] = Field(description="every script the pool's coinbases paid")
    anchor_scripts: list[str] = Field(description="every script its anchor transactions paid")
    anchor_interval_s: int | None = Field(description="its anchor-transaction cadence")


class ProofPeriod(Model):
    inputs: dict[str, Any]
    root: RootNode
    previous: str = Field(pattern=HEX64)
    commitment: str = Field(pattern=HEX64)


class ProofStep(Model):
    side: Literal["L", "R"]
    hash: str = Field(pattern=HEX64)
    sums: list[int]


class Proof(Model):
    """One holder's statement line of one period (or, with kind "credit", one miner's line of
    one settlement), its salt, the Merkle-sum path to the root, the inputs and commitment, and
    the chain after it: what verify.py checks."""

    version: Literal[2]
    kind: Literal["statement", "credit"]
    holder: str | None = None
    account: str | None = None
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    line: dict[str, int | str]
    path: list[ProofStep]
    period: ProofPeriod
    chain: list[dict[str, Any]]
    anchors: list[ProofAnchor] = Field(
        description="transactions on the best chain that carry this commitment or a later one "
        "(OP_RETURN 'pold' + commitments), each with its header, bytes and merkle branch"
    )
    cut: ProofCut
    pool: ProofPool | None = Field(description="the pool's anchoring identity")


class Network(Model):
    height: int
    prev_hash: str = Field(pattern=HEX64)
    bits: str
    difficulty: Exact
    coinbase_value_sat: int
    fees_sat: int
    transactions: int
    hashprice_sat_per_th_day: Exact
    template_time: int


class PoolPayment(Model):
    payout: int
    status: str
    txid: str | None
    time_ms: int
    total_sat: int
    outputs: int


class DailyEarning(Model):
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    day_start: int
    credited_sat: int
    spendable_sat: int


class PayoutSettings(Model):
    account: str
    address: str | None
    min_payout_sat: int | None
    effective_min_payout_sat: int


class Node(Model):
    node_id: int
    status: Literal["live", "stopped", "lapsed", "excluded"]
    host: str
    lease_until_ms: int
    ingested_through_ms: int
    lag_ms: int


class NodeList(Model):
    settle_through_ms: int
    waiting: list[str]
    excluded: list[str]
    nodes: list[Node]


class TokenInfo(Model):
    id: int
    scope: str
    created_ms: int


class TokenList(Model):
    tokens: list[TokenInfo]


class Revoked(Model):
    revoked: int
    scope: str


# Request bodies.

MAX_SAT = 21 * 10**14


class PayoutSettingsIn(Model):
    """Change the payout address and/or threshold (at least one)."""

    address: str | None = Field(None, max_length=128, description="checked for the network")
    min_payout_sat: int | None = Field(None, ge=1, le=MAX_SAT, strict=True)


class PriceIn(Model):
    period_start: int = Field(strict=True, ge=0, description="unix seconds, a period's start")
    btc_usd: str = Field(max_length=40, description='exact text such as "65000.00"')

    @field_validator("btc_usd", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError('exact text such as "65000.00", not a float')
        return value


class TransferIn(Model):
    id: str = Field(min_length=1, max_length=128, description="idempotency key")
    ts: int = Field(description="unix seconds")
    from_: str | None = Field(None, alias="from", description="null: minted")
    to: str | None = Field(None, description="null: burned")
    amount: str | int = Field(description="tokens, exact")


class TransfersIn(RootModel[list[TransferIn]]):
    pass


Listings = {
    name: listing(item, name)
    for name, item in (
        ("BlockList", Block),
        ("CreditList", Credit),
        ("MinerPayoutList", MinerPayout),
        ("StatementList", Statement),
        ("TransferList", Transfer),
        ("RootList", Root),
        ("CreditRootList", CreditRoot),
        ("PoolPaymentList", PoolPayment),
        ("DailyEarningList", DailyEarning),
    )
}
