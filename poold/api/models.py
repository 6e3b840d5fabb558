"""The API's request and response bodies as pydantic models: the one description of each
response. The views (`poold.api.views`) build these objects, the handlers serialize them, the
OpenAPI document is generated from them (`poold.api.openapi`), and request bodies are parsed
with them (`base.body_of`): the JSON and its document cannot drift apart.

Numbers: satoshis are integers; other exact values are text (an exact decimal where the
value has one, else a fraction "n/d"); wherever the dashboard shows a number, a `display`
beside it holds it formatted for people (`poold.api.display`: exact, or starting with "≈ "
when rounded). Data only: imports pydantic and the statement fields of the ledger's models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

HEX64 = r"^[0-9a-f]{64}$"
EXACT = r"^-?\d+(\.\d+|/\d+)?$"


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


class RatesDisplay(Model):
    """The same hashrates for people ('≈ 1.16 MH/s')."""

    ten_minutes: str = Field(alias="10m")
    hour: str = Field(alias="1h")
    day: str = Field(alias="24h")


class Exact(Model):
    """exact: the value as an exact decimal when it has one ('97000.5'), else an exact
    fraction ('764/1220703125'); display: for people (starting with '≈ ' when rounded)."""

    exact: str = Field(pattern=EXACT)
    display: str


class ShareCounts(Model):
    accepted: int = Field(ge=0, description="shares in the ledger, every node, every restart")
    rejected: dict[str, int] = Field(description="by reason, every node, every restart")


class PoolDisplay(Model):
    shares_accepted: str
    shares_rejected: str
    fee: str


class Pool(Model):
    hashrate_hs: Rates
    hashrate_display: RatesDisplay
    workers_online: int = Field(ge=0)
    miners_online: int = Field(ge=0)
    blocks: dict[str, int] = Field(description="blocks by status")
    scheme: Literal["pplns", "fpps", "prop", "solo"]
    fee: str = Field(description="the pool fee as a fraction of the reward, exact")
    fee_percent: str = Field(description="the fee in percent, exact")
    round_effort: Exact = Field(
        description="the pool's work since the last block found (by share time) in network "
        "difficulties: 1 = an average round; starts again from 0 at each block"
    )
    pplns_window_fill: Exact = Field(description="how much of the PPLNS window work covers now")
    pplns_unallocated: Exact = Field(description="the part of a block an unfilled window leaves")
    shares: ShareCounts
    display: PoolDisplay


class BlockDisplay(Model):
    found: str
    reward: str
    confirmations: str


class Block(Model):
    height: int = Field(ge=0)
    hash: str = Field(pattern=HEX64)
    status: str = Field(description="pending, confirmed, orphaned, rejected or unknown")
    reward_sat: int = Sat("the coinbase value")
    found_ms: int
    finder: str = Field(description="account.worker")
    confirmations: int = Field(description="-1: orphaned; 100 makes the coinbase spendable")
    effort: Exact | None = Field(
        description="the block's own round in network difficulties (1 = an average round): "
        "the pool's work from the previous block found to this one, ordered by share time; "
        "known once the block is settled"
    )
    display: BlockDisplay


class Page(Model):
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


class BlockList(Page):
    items: list[Block]


class BalanceSat(Model):
    immature: int = Sat("owed once its blocks mature")
    spendable: int = Sat("owed now: a payout may pay it")


class MinerDisplay(Model):
    immature: str
    spendable: str
    shares_accepted: str
    shares_rejected: str


class Miner(Model):
    account: str
    hashrate_hs: Rates
    hashrate_display: RatesDisplay
    workers: dict[str, Rates] = Field(description="account.worker -> hashrate")
    shares_accepted: int = Field(ge=0)
    shares_rejected: dict[str, int] = Field(description="by reason, every node, every restart")
    balance_sat: BalanceSat
    display: MinerDisplay


class BestShare(Model):
    hash: str = Field(pattern=HEX64, description="the share's header hash: the exact fact")
    difficulty: str = Field(
        description="its difficulty, 0xFFFF x 2**208 / hash, rounded down to 6 significant "
        "digits (the exact quotient of a 256-bit division is a fraction of ~70 digits)"
    )
    display: str


class WorkerDisplay(Model):
    last_seen: str


class Worker(Model):
    worker: str
    hashrate_hs: Rates
    hashrate_display: RatesDisplay
    online: bool = Field(description="shares in the last 10 minutes")
    last_seen_ms: int | None = Field(description="its newest share (or connection) known")
    best_share: BestShare | None = Field(description="its best share ever")
    user_agent: str | None = Field(description="what its miner software said at subscribe")
    display: WorkerDisplay


class WorkerList(Model):
    items: list[Worker]


class LineDisplay(Model):
    time: str
    amount: str


class Credit(Model):
    """One line of the miner's account: a credit (positive) or a debit (negative)."""

    entry: int
    reason: str = Field(
        description="the journal entry's kind: pplns_block, prop_block, solo_block, "
        "fpps_period, token_period (the holders' share taken from a fleet account), payout, "
        "pplns_reversal, block_recredit"
    )
    reference: str = Field(description="a block hash, an FPPS period end, a token period "
                           "start or a txid")  # fmt: skip
    description: str = Field(description="the line in words")
    time_ms: int
    balance: Literal["immature", "spendable", "voided"]
    amount_sat: int = Sat("what the pool owes the miner more (negative: less)")
    proof: bool = Field(description="a settlement with a Merkle-sum proof of this line")
    display: LineDisplay


class CreditList(Page):
    items: list[Credit]


class MinerPayout(Model):
    """A payout line, for a miner account or a token holder."""

    payout: int
    status: str = Field(description="intent, sent, confirmed or failed")
    txid: str | None
    confirmations: int
    time_ms: int
    amount_sat: int
    address: str
    display: LineDisplay


class MinerPayoutList(Page):
    items: list[MinerPayout]


class StatementAmounts(Model):
    gross_sat: int = Sat("the holder's share of the period's pot")
    electricity_sat: int = Sat("electricity for the hashrate delivered to the holder")
    service_sat: int = Sat("the operator's service fee")
    net_sat: int = Sat("gross - electricity - service")
    debt_in_sat: int = Sat("debt carried in from the previous period")
    paid_sat: int = Sat("credited to the holder (what a payout pays)")
    debt_out_sat: int = Sat("debt carried into the next period")
    written_off_sat: int = Sat("debt the operator wrote off (policy clamp)")


class HolderDisplay(Model):
    tokens: str
    balance: str
    credited: str
    sent: str
    costs: str


class Holder(Model):
    holder: str
    tokens: str = Field(description="tokens held now, exact")
    balance_sat: int = Sat("owed to the holder now (credited - sent)")
    sent_sat: int = Sat("paid out on chain to date (payouts sent or confirmed)")
    totals: StatementAmounts
    display: HolderDisplay


class PeriodTimes(Model):
    start: str
    end: str
    display: str = Field(description="the period in UTC: '2027-01-15' or '… 00:01-00:02 UTC'")


class DeliveredHashrate(Model):
    nominal_th_per_s: Exact
    delivered_th_per_s: Exact
    delivery_ratio: Exact


class StatementBtc(Model):
    """Each amount in BTC, exact (8 decimals)."""

    gross_btc: str
    electricity_btc: str
    service_btc: str
    net_btc: str
    debt_in_btc: str
    paid_btc: str
    debt_out_btc: str
    written_off_btc: str


class StatementRates(Model):
    """What the holder pays for: the period's published rates (absent for periods settled
    before they were published)."""

    w_per_th: Exact
    usd_per_kwh: Exact
    discount: Exact
    service_usd_per_th_day: Exact


class Benchmark(Model):
    """The statement against plain hashprice: what the holder's nominal TH/s would have
    earned at the network's hashprice over the period, and where the difference went.
    hashprice_value + delivery_gap + pool_fee + luck_and_rounding = gross;
    gross + costs = net (costs negative). Amounts in satoshis, exact."""

    hashprice_sat_per_th_day: Exact = Field(
        description="the network's hashprice, time-weighted over the period: subsidy + "
        "average fees of the last blocks, over the difficulty (1e12 x 86400 / (D x 2**32) x "
        "block value)"
    )
    covered_s: int = Field(description="seconds of the period with a record of the network")
    hashprice_value_sat: Exact = Field(description="nominal TH·days x hashprice")
    delivery_gap_sat: Exact = Field(
        description="(delivered - nominal) TH·days x hashprice: what under-delivery cost"
    )
    pool_fee_sat: Exact = Field(description="- pool fee x the delivered work's value")
    luck_and_rounding_sat: Exact = Field(
        description="gross - the three above: block luck (PPLNS), the fees FPPS booked with "
        "versus the network's average, and the pot's rounding to satoshis"
    )
    costs_sat: Exact = Field(description="- (electricity + service)")
    costs_share_of_gross: Exact | None = Field(description="(electricity + service) / gross")
    net_vs_hashprice_sat: Exact = Field(description="net - hashprice_value")
    gross_vs_hashprice: Exact | None = Field(description="gross / hashprice_value")


class StatementDisplay(Model):
    gross: str
    electricity: str
    service: str
    net: str
    debt_in: str
    paid: str
    debt_out: str
    written_off: str
    btc_usd: str
    period_pot: str
    rates: str = Field(description="the rates in one line")


class Statement(StatementAmounts):
    period_start: int
    period_end: int
    period: PeriodTimes
    token_seconds: str
    ths_nominal: str
    ths_delivered: str
    hashrate: DeliveredHashrate
    btc: StatementBtc
    btc_usd: str
    btc_usd_decimal: Exact
    hashprice_sat_per_th_day: str | None = Field(
        description="what the fleet earned per delivered TH·day in the period (its own "
        "hashprice; the network's is in `benchmark`)"
    )
    rates: StatementRates | None
    electricity_kwh: Exact | None = Field(description="the energy behind the electricity cost")
    period_pot_sat: int
    operator_retained_sat: int
    blocks: list[str] = Field(description="the blocks whose rewards the period shared")
    fpps_periods: list[int] = Field(description="the FPPS bookings the period shared")
    benchmark: Benchmark | None = Field(
        description="null when the ledger has no record of the network for the period"
    )
    make_good_sat: int = Field(
        description="the holder's part of the period's make-good: the shortfall under the "
        "delivery threshold at the network's hashprice, paid by the operator ([tokens] make_good)"
    )
    delivery_flagged: bool = Field(
        description="the delivery ratio is under the pool's threshold ([tokens] "
        "delivery_threshold, 95 % by default)"
    )
    work_proof: str | None = Field(
        description="where the period's proof of delivered hashrate is published (null: the "
        "period committed no work root)"
    )
    display: StatementDisplay


class StatementList(Page):
    items: list[Statement]


class TransferDisplay(Model):
    time: str


class Transfer(Model):
    id: str
    ts: int
    from_: str | None = Field(alias="from")
    to: str | None
    amount: str
    balance_after: str
    display: TransferDisplay


class TransferList(Page):
    items: list[Transfer]


class ImportResult(Model):
    added: int
    unchanged: int


class Point(Model):
    t: int = Field(description="the point's start, unix seconds")
    hs: int


class HashScale(Model):
    """The unit a chart of these points reads best in: value / divisor, in unit."""

    unit: str
    divisor: int


class Series(Model):
    window: Literal["1h", "24h", "7d", "30d"]
    step_s: int = Field(description="seconds per point")
    end: int = Field(description="the end of the newest point (it holds the minute so far)")
    scale: HashScale
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


class RootList(Page):
    items: list[Root]


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


class CreditRootList(Page):
    items: list[CreditRoot]


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


class WorkProof(Model):
    """A token period's proof of delivered hashrate: the k shares drawn by the beacon block
    after the anchor, each with its path in the work tree, its job and share fields (no worker
    names: accounts are salted tags), the headers from the period's tips to the beacon, the
    anchor's evidence and the links before the period: what verify.py checks."""

    version: Literal[2]
    kind: Literal["work"]
    pool: ProofPool | None
    period: ProofPeriod
    links: list[dict[str, Any]]
    work: dict[str, Any] = Field(description="root (packed, base64), leaves, k, depth")
    headers: list[str]
    tips: list[int]
    anchor: dict[str, Any]
    fleet_tags: list[str]
    nodes: list[list[Any]]
    samples: list[dict[str, Any]]


class NetworkDisplay(Model):
    height: str
    block_value: str
    fees: str


class Network(Model):
    height: int
    prev_hash: str = Field(pattern=HEX64)
    bits: str
    difficulty: Exact
    coinbase_value_sat: int
    fees_sat: int
    transactions: int
    hashprice_sat_per_th_day: Exact = Field(
        description="satoshis a TH/s earns a day at this template's value and difficulty"
    )
    template_time: int
    display: NetworkDisplay


class PoolPayment(Model):
    payout: int
    status: str
    txid: str | None
    time_ms: int
    total_sat: int
    outputs: int
    display: LineDisplay


class PoolPaymentList(Page):
    items: list[PoolPayment]


class DailyDisplay(Model):
    credited: str
    spendable: str
    debited: str
    paid_out: str


class DailyEarning(Model):
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    day_start: int
    credited_sat: int = Sat("credits made that day (voided ones left out)")
    spendable_sat: int = Sat("of those, what counts as spendable now")
    debited_sat: int = Sat("debits other than payouts (e.g. holders' token periods), positive")
    paid_out_sat: int = Sat("what payouts took from the account that day, positive")
    display: DailyDisplay


class DailyEarningList(Page):
    items: list[DailyEarning]


class FleetDayDisplay(Model):
    period: str
    delivered: str
    hashprice: str
    fpps_value: str
    earned: str
    earned_vs_value: str


class FleetDay(Model):
    """One UTC day (or hour) of the token fleet against the network's hashprice."""

    start: int
    end: int = Field(description="the period's end; for the period under way, now")
    complete: bool = Field(description="false for the period under way (figures so far)")
    delivered_th_per_s: Exact = Field(description="the fleet's measured hashrate")
    hashprice_sat_per_th_day: Exact | None = Field(
        description="the network's, time-weighted: subsidy + average fees over difficulty"
    )
    covered_s: int = Field(description="seconds of the period with a record of the network")
    fpps_value_sat: Exact | None = Field(
        description="delivered TH·days x hashprice: what the work was worth at the network's "
        "hashprice (no pool fee), what a hashrate forward settles against"
    )
    earned_sat: int = Sat(
        "what the fleet accounts were credited: FPPS bookings ending in the period and the "
        "credits of blocks found in it (not voided)"
    )
    immature_sat: int = Sat("of earned, credits of blocks not yet matured")
    earned_vs_value: Exact | None = Field(description="earned / fpps_value")
    display: FleetDayDisplay


class FleetDayList(Page):
    step: Literal["1d", "1h"]
    fleet: list[str] = Field(description="the fleet accounts ([tokens] fleet_accounts)")
    items: list[FleetDay] = Field(description="newest first, from the period under way")


class SettingsDisplay(Model):
    effective_min_payout: str


class PayoutSettings(Model):
    account: str
    address: str | None
    min_payout_sat: int | None
    effective_min_payout_sat: int
    display: SettingsDisplay


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


class Health(Model):
    status: Literal["ok"]


class Ready(Model):
    ready: bool
    problems: dict[str, str] = Field(description="component -> what keeps it from serving")


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
