"""The operator's one TOML file: loaded once, validated, frozen.

Every key is documented in `configs/example.toml`. `POOLD__SECTION__KEY=value` environment
variables override the file (values parsed as TOML when they parse, else taken as strings).
Unknown or obsolete keys are errors that name the key and suggest the closest valid one.
Must not import the rest of poold beyond the pure chain helpers (difficulty parsing,
addresses), and never reads a file other than the config itself.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from poold.chain.address import Network, address_to_script
from poold.chain.difficulty import share_difficulty, to_difficulty

ENV_PREFIX = "POOLD__"

#: Keys that existed once and are refused with a pointer to what replaced them.
OBSOLETE_KEYS: dict[tuple[str, str], str] = {
    ("stratum", "port"): 'use stratum.listen = "HOST:PORT"',
    ("pool", "address"): "renamed to pool.payout_address",
}
#: Sections that were renamed ("node" meant bitcoind; a node is now a Stratum daemon).
OBSOLETE_SECTIONS: dict[str, str] = {
    "node": "renamed to [bitcoind] (the same keys; POOLD__BITCOIND__KEY in the environment)",
}


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key and what is wrong."""


def _difficulty(value: object) -> Fraction:
    return to_difficulty(value, field="")


def _fraction_0_1(value: object) -> Fraction:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, float):
        raise ValueError('give fees as a string ("0.01") or a fraction ("1/100"), not a float')
    try:
        f = Fraction(str(value).strip()) if not isinstance(value, Fraction) else value
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read {value!r} as a fraction") from None
    if not 0 <= f < 1:
        raise ValueError("must be in [0, 1)")
    return f


Difficulty = Annotated[
    Fraction, BeforeValidator(_difficulty), PlainSerializer(lambda f: str(f), return_type=str)
]
#: A difficulty shares are credited at: refused unless exact in the share record (see
#: `shares.difficulty.share_difficulty`), so no config can make an accepted share unloggable.
ShareDifficulty = Annotated[
    Fraction,
    BeforeValidator(lambda v: share_difficulty(v, field="")),
    PlainSerializer(lambda f: str(f), return_type=str),
]


def _exact_non_negative(value: object) -> Fraction:
    if isinstance(value, (bool, float)):
        raise ValueError('give exact numbers as a string ("21.5") or a fraction, not a float')
    try:
        f = value if isinstance(value, Fraction) else Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected an exact number, got {value!r}") from None
    if f < 0:
        raise ValueError("must be >= 0")
    return f


Exact = Annotated[
    Fraction,
    BeforeValidator(_exact_non_negative),
    PlainSerializer(lambda f: str(f), return_type=str),
]
Rate = Annotated[
    Fraction, BeforeValidator(_fraction_0_1), PlainSerializer(lambda f: str(f), return_type=str)
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def host_port(v: str, field: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{field} must be HOST:PORT, got {v!r}")
    return v


class StratumConfig(_Section):
    listen: str = Field("127.0.0.1:3333", description="HOST:PORT for miners (port 0 = any)")
    workers: int = Field(1, ge=1, le=64, description="processes sharing the port (SO_REUSEPORT)")
    start_difficulty: ShareDifficulty = Field(
        Fraction(1), description="difficulty of a new connection"
    )
    min_difficulty: ShareDifficulty = Field(Fraction(1, 2**32), description="vardiff floor")
    max_difficulty: ShareDifficulty = Field(Fraction(2**40), description="vardiff ceiling")
    vardiff_target_share_time_s: float = Field(10.0, gt=0, le=3600)
    vardiff_retarget_time_s: float = Field(60.0, gt=0, le=86400)
    vardiff_variance: float = Field(0.3, ge=0, lt=1)
    max_connections: int = Field(10_000, ge=1, le=1_000_000)
    max_connections_per_ip: int = Field(
        256, ge=1, le=1_000_000, description="per remote address (loopback, ban_allowlist exempt)"
    )
    max_workers_per_connection: int = Field(
        256, ge=1, le=100_000, description="distinct worker names one connection may authorize"
    )
    max_workers_per_ip: int = Field(
        20_000, ge=1, le=1_000_000, description="worker names authorized from one address at once"
    )
    max_line_bytes: int = Field(16 * 1024, ge=256, le=1 << 20)
    max_write_buffer_bytes: int = Field(
        1 << 20, ge=4096, le=1 << 30, description="unsent bytes before a miner is dropped"
    )
    idle_timeout_s: float = Field(600.0, gt=0)
    tls_listen: str = Field(
        "", description="HOST:PORT for miners over TLS (stratum+ssl://); empty: no TLS listener"
    )
    tls_cert: Path | None = Field(None, description="PEM certificate chain for tls_listen")
    tls_key: Path | None = Field(None, description="PEM private key for tls_listen")
    version_mask: str = Field("1fffe000", description="BIP310 pool mask, hex")
    extranonce2_size: int = Field(4, ge=2, le=16)
    node_id: int = Field(0, ge=0, le=255, description="first byte of every extranonce1")
    junk_limit: int = Field(10, ge=1)
    invalid_ratio: float = Field(0.9, gt=0, le=1)
    invalid_min_shares: int = Field(50, ge=1)
    ban_s: float = Field(600.0, ge=0)
    ban_allowlist: tuple[str, ...] = Field((), description="addresses never banned")
    stale_grace_s: float = Field(5.0, ge=0)
    job_retain_s: float = Field(120.0, ge=0)

    @field_validator("listen", "tls_listen")
    @classmethod
    def _listen(cls, v: str, info: ValidationInfo) -> str:
        if info.field_name == "tls_listen" and v == "":
            return v
        return host_port(v, info.field_name or "listen")

    @field_validator("version_mask")
    @classmethod
    def _mask(cls, v: str) -> str:
        try:
            mask = int(v, 16)
        except ValueError:
            raise ValueError(f"version_mask must be hex, got {v!r}") from None
        if not 0 <= mask <= 0xFFFFFFFF:
            raise ValueError("version_mask must fit in 32 bits")
        return f"{mask:08x}"

    @model_validator(mode="after")
    def _ordered(self) -> StratumConfig:
        if not self.min_difficulty <= self.start_difficulty <= self.max_difficulty:
            raise ValueError("need min_difficulty <= start_difficulty <= max_difficulty")
        return self

    @model_validator(mode="after")
    def _tls(self) -> StratumConfig:
        if not self.tls_listen:
            if self.tls_cert is not None or self.tls_key is not None:
                raise ValueError("tls_cert and tls_key need tls_listen (HOST:PORT) to be set")
            return self
        if self.tls_cert is None or self.tls_key is None:
            missing = " and ".join(
                k for k, v in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)) if v is None
            )
            raise ValueError(f"tls_listen is set: {missing} (a PEM file) must be set too")
        if self.tls_port != 0 and self.tls_port == self.port:
            raise ValueError(f"tls_listen and listen use the same port {self.port}")
        # The files themselves are read when the daemon is built (`stratum.tls`), and by
        # `poold config check`: validating a config never touches the disk.
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def tls_host(self) -> str:
        return self.tls_listen.rpartition(":")[0].strip("[]")

    @property
    def tls_port(self) -> int:
        return int(self.tls_listen.rpartition(":")[2])

    @property
    def version_mask_int(self) -> int:
        return int(self.version_mask, 16)


class BitcoindConfig(_Section):
    kind: Literal["simnet", "rpc"] = Field(
        "rpc", description="rpc: a real node; simnet: a fake chain (tests, demo; not mainnet)"
    )
    url: str = Field("http://127.0.0.1:8332")
    user: str = Field("")
    password: str = Field("")
    poll_interval_s: float = Field(0.5, gt=0, le=60, description="tip polling period")
    refresh_interval_s: float = Field(30.0, gt=0, lt=120, description="new job even if no block")
    timeout_s: float = Field(10.0, gt=0)
    simnet_difficulty: Difficulty = Field(Fraction(1, 256), description="simnet network difficulty")
    simnet_tx_count: int = Field(4, ge=0, le=5000)


class PoolConfig(_Section):
    network: Network = Field(Network.MAINNET)
    payout_address: str = Field(..., description="where the coinbase pays; checked at load")
    coinbase_tag: str = Field("/poold/", max_length=40)
    scheme: Literal["pplns", "fpps", "prop", "solo"] = Field("pplns")
    fee: Rate = Field(Fraction(0))
    fpps_period_s: int = Field(3600, ge=1, le=86400, description="FPPS booking period")
    fee_window_blocks: int = Field(144, ge=1, le=10_000, description="FPPS average-fee window")
    orphan_depth: int = Field(
        6,
        ge=1,
        le=100,
        description="best-chain blocks at or above a lost block's height "
        "before its credits are reversed",
    )

    @model_validator(mode="after")
    def _address(self) -> PoolConfig:
        address_to_script(self.payout_address, self.network)  # raises ValueError with the reason
        return self

    @property
    def payout_script(self) -> bytes:
        return address_to_script(self.payout_address, self.network)


class LedgerConfig(_Section):
    url: str = Field("sqlite:///var/ledger.db")
    ingest_interval_s: float = Field(
        0.0, ge=0, description="the daemon ingests the share log this often (0 = never)"
    )
    auto_migrate: bool = Field(False, description="create/upgrade the schema at start")
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600, description="open a connection; notice a vanished server"
    )
    statement_timeout_s: float = Field(
        300.0, gt=0, le=86400, description="longest one statement may run (PostgreSQL)"
    )
    shutdown_wait_s: float = Field(
        10.0, ge=0, le=3600, description="on stop, wait this long for a ledger pass, then leave it"
    )
    ingest_open_minutes: bool = Field(
        False,
        description="also write the current minute's shares at every pass (the dashboard "
        "sees them sooner; each minute becomes several slice rows); settlement waits for "
        "every node's heartbeats either way",
    )
    node_lease_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="a daemon's registration, and the leader's lease, last this long unless "
        "renewed; another daemon takes over within twice this after the leader is cut off",
    )
    node_wait_s: float = Field(
        600.0,
        ge=0,
        le=7 * 86400,
        description="settlement waits this long for a node whose lease lapsed, then settles "
        "without its shares (and says so)",
    )


class PayoutsConfig(_Section):
    min_payout_sat: int = Field(
        100_000, ge=1, description="pay an account once it is owed this much (account override)"
    )
    max_outputs: int = Field(250, ge=1, le=5000, description="addresses per wallet transaction")
    confirmations: int = Field(1, ge=1, le=1000, description="a payout is confirmed at this depth")


class TokensConfig(_Section):
    enabled: bool = Field(False, description="settle hashrate tokens daily")
    th_per_token: Exact = Field(Fraction(1), description="TH/s one token represents")
    w_per_th: Exact = Field(Fraction(0), description="fleet efficiency, W per TH/s")
    usd_per_kwh: Exact = Field(Fraction(0), description="electricity price")
    service_usd_per_th_day: Exact = Field(Fraction(0), description="service fee")
    discount: Rate = Field(Fraction(0), description="discount on electricity, 0..1")
    negative_policy: Literal["carry", "clamp"] = Field("carry")
    fleet_accounts: tuple[str, ...] = Field((), description="accounts whose hashrate backs tokens")
    period_s: int = Field(86400, ge=60, le=7 * 86400, description="settlement period")
    cutoff_s: int = Field(0, ge=0, lt=86400, description="period boundary, seconds after 00:00 UTC")
    settle_delay_s: int = Field(
        300, ge=0, le=86400, description="wait this long after a period ends (late shares)"
    )
    work_proof: bool = Field(
        True,
        description="commit each period's shares (a work-proof tree whose root rides the "
        "statement chain) and publish a sample of them drawn by a block after the anchor",
    )
    work_proof_k: int = Field(
        100, ge=1, le=10_000, description="shares sampled per period (95 catch a 5 % inflation)"
    )
    beacon_depth: int = Field(
        6, ge=1, le=1000, description="the beacon block: this many blocks after the anchor"
    )
    delivery_threshold: Rate = Field(
        Fraction(95, 100), description="a statement delivered under this ratio is flagged"
    )
    make_good: bool = Field(
        False,
        description="post the shortfall under delivery_threshold to holders from the operator's "
        "account (valued at the period's network hashprice)",
    )

    @model_validator(mode="after")
    def _fleet(self) -> TokensConfig:
        if self.enabled and not self.fleet_accounts:
            raise ValueError("fleet_accounts: name the accounts whose hashrate backs the tokens")
        return self


class AnchorsConfig(_Section):
    enabled: bool = Field(
        False,
        description="send anchor transactions: the chains' heads on chain even when the pool "
        "finds no block (the wallet pays their fees)",
    )
    address: str = Field(
        "",
        description="a bitcoind wallet address holding the coins anchor transactions spend; "
        'their change returns to it ("" = pool.payout_address)',
    )
    interval_s: int = Field(
        21600,
        ge=60,
        le=86400,
        description="at most this long between a new head and the anchor transaction that "
        "carries it (none is sent while a found block carries the head)",
    )
    fee_rate_sat_vb: int = Field(2, ge=1, le=10_000, description="fee of an anchor transaction")


class ApiConfig(_Section):
    listen: str = Field("", description='HOST:PORT of the HTTP API and dashboard ("" = off)')
    admin_listen: str = Field(
        "", description='a separate HOST:PORT for admin endpoints ("" = same)'
    )
    public_miners: bool = Field(True, description="miner pages readable without a token")
    max_page: int = Field(500, ge=1, le=10_000, description="largest page a list returns")

    @field_validator("listen", "admin_listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        return host_port(v, "listen") if v else v


class ShareLogConfig(_Section):
    path: Path = Field(Path("var/sharelog"))
    segment_bytes: int = Field(64 << 20, ge=4096)
    fsync_interval_ms: float = Field(5.0, gt=0, le=1000)
    retention_hours: float = Field(168.0, gt=0)
    reply_after: Literal["write", "fsync"] = Field(
        "fsync",
        description='when a share is answered true: "write" (in the kernel: survives kill -9) '
        'or "fsync" (after the group commit\'s fdatasync covered it: survives a power cut)',
    )


class StreamSection(_Section):
    url: str = Field(
        "",
        description='NATS URL of a JetStream server the share log is shipped to ("" = off: '
        "the single-host default)",
    )
    stream: str = Field("POOLD_SHARES", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    subject: str = Field("poold.shares", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    replicas: int = Field(1, ge=1, le=5, description="copies JetStream keeps of each message")
    timeout_s: float = Field(5.0, gt=0, le=300, description="wait this long for an ack")
    min_replicas: int = Field(
        1,
        ge=1,
        le=5,
        description="ship only to a file-backed stream keeping at least this many replicas "
        "(read at start and at every check; a stream keeping fewer counts as unreachable)",
    )
    verify_interval_s: float = Field(
        10.0, gt=0, le=3600, description="check the stream's tail against SHIPPED this often"
    )
    max_lag_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="the most a share may wait unshipped: past it shares get error 20 "
        '(on_lag = "refuse") or the host-loss promise is suspended ("warn")',
    )
    on_lag: Literal["refuse", "warn"] = Field(
        "refuse",
        description='past max_lag_s: "refuse" shares (neither credited nor lost) or "warn" '
        "(keep answering true; a lost host then loses what was not shipped)",
    )
    mirror_path: Path = Field(
        Path("var/stream-mirror"),
        description="where the leader rebuilds the logs of nodes whose host is gone",
    )

    @field_validator("url")
    @classmethod
    def _nats_url(cls, v: str) -> str:
        if v and not v.startswith(("nats://", "tls://")):
            raise ValueError(f"{v!r}: expected nats://HOST:PORT")
        return v


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info")
    format: Literal["auto", "json", "console"] = Field("auto")
    stats_interval_s: float = Field(30.0, gt=0)


class Config(_Section):
    stratum: StratumConfig = StratumConfig()
    bitcoind: BitcoindConfig = BitcoindConfig()
    pool: PoolConfig
    ledger: LedgerConfig = LedgerConfig()
    payouts: PayoutsConfig = PayoutsConfig()
    tokens: TokensConfig = TokensConfig()
    anchors: AnchorsConfig = AnchorsConfig()
    api: ApiConfig = ApiConfig()
    sharelog: ShareLogConfig = ShareLogConfig()
    stream: StreamSection = StreamSection()
    log: LogConfig = LogConfig()

    @model_validator(mode="after")
    def _anchor_address(self) -> Config:
        if self.anchors.address:
            try:
                address_to_script(self.anchors.address, self.pool.network)
            except ValueError as exc:
                raise ValueError(f"anchors.address: {exc}") from None
        return self

    @property
    def anchor_script(self) -> bytes:
        """What anchor transactions pay their change to: the pool's anchoring identity."""
        return address_to_script(
            self.anchors.address or self.pool.payout_address, self.pool.network
        )

    @model_validator(mode="after")
    def _real_node_on_mainnet(self) -> Config:
        if self.pool.network == Network.MAINNET and self.bitcoind.kind == "simnet":
            raise ValueError(
                'bitcoind: kind = "simnet" is a fake chain and cannot mine mainnet: set '
                '[bitcoind] kind = "rpc" with a real node (or [pool] network = "regtest" to test)'
            )
        return self


def _known_keys(section: str) -> list[str]:
    field = Config.model_fields.get(section)
    model = field.annotation if field else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _hint(section: str | None, key: str) -> str:
    options = list(Config.model_fields) if section is None else _known_keys(section)
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(options)})"


def _describe(exc: ValidationError) -> str:
    msgs = []
    for err in exc.errors():
        loc = [str(x) for x in err["loc"]]
        where = ".".join(loc) or "config"
        if err["type"] == "extra_forbidden":
            section = loc[0] if len(loc) > 1 else None
            msgs.append(f"unknown key {where!r}{_hint(section, loc[-1])}")
        elif err["type"] == "missing":
            msgs.append(f"missing required key {where!r}")
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
            msgs.append(f"{where}: {text}")
    return "; ".join(msgs)


def _env_value(raw: str) -> object:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay POOLD__SECTION__KEY variables onto the parsed TOML."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {name}: expected POOLD__SECTION__KEY")
        section, key = parts
        out.setdefault(section, {})
        if not isinstance(out[section], dict):
            raise ConfigError(f"environment variable {name}: [{section}] is not a section")
        out[section][key] = _env_value(raw)
    return out


def parse_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    merged = apply_env(dict(data), os.environ if environ is None else environ)
    for section, advice in OBSOLETE_SECTIONS.items():
        if section in merged:
            raise ConfigError(f"obsolete section [{section}]: {advice}")
    for (section, key), advice in OBSOLETE_KEYS.items():
        sec = merged.get(section)
        if isinstance(sec, dict) and key in sec:
            raise ConfigError(f"obsolete key '{section}.{key}': {advice}")
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


#: Shown instead of a secret by `redacted`.
REDACTED = "***"


#: Query parameters whose value is a secret (`?password=`, `?sslpassword=`, `?token=`...).
_SECRET_PARAM = re.compile(r"pass|pwd|token|secret|credential|auth|key$", re.IGNORECASE)
#: Schemes whose bare userinfo (`scheme://name@host`) is a role name, not a credential.
_ROLE_SCHEMES = ("postgresql", "postgres", "sqlite", "mysql")
#: Config keys whose whole value is a secret.
_SECRET_KEY = re.compile(r"password|passwd|token|secret", re.IGNORECASE)


def _redact_one(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    head, q, query = rest.partition("?")
    query, hash_, fragment = query.partition("#")
    authority, slash, path = head.partition("/")
    creds, at, host = authority.rpartition("@")
    if at:
        if ":" in creds:
            creds = creds.split(":", 1)[0] + ":" + REDACTED
        elif not scheme.lower().startswith(_ROLE_SCHEMES):
            creds = REDACTED  # nats://token@host: the name is the credential
        authority = f"{creds}@{host}"
    if q:
        params = []
        for part in query.split("&"):
            name, eq, _value = part.partition("=")
            params.append(f"{name}={REDACTED}" if eq and _SECRET_PARAM.search(name) else part)
        query = "&".join(params)
    return f"{scheme}://{authority}{slash}{path}{q}{query}{hash_}{fragment}"


def redact_url(url: str) -> str:
    """A URL with every credential replaced by `***`: the password of `user:password@`, a
    bare token (`nats://token@host`; a database's role name stays), and every query parameter
    that names a secret (`?password=`, `?sslpassword=`, `?token=`). A list of URLs
    (`nats://a,nats://b`) is redacted part by part."""
    return ",".join(_redact_one(part) for part in url.split(","))


def _redact_tree(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact_tree(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_tree(v, key) for v in value]
    if isinstance(value, str) and value:
        if _SECRET_KEY.search(key):
            return REDACTED
        if "://" in value:
            return redact_url(value)
    return value


def redacted(cfg: Config) -> dict[str, Any]:
    """The configuration as JSON-ready data with every secret hidden, whether from the file or
    a POOLD__ variable: every key that names a secret (the bitcoind password), and every
    credential in every URL-shaped value (`redact_url`: the ledger, bitcoind, the stream)."""
    result: dict[str, Any] = _redact_tree(cfg.model_dump(mode="json"))
    return result


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(data, environ)
