"""getblocktemplate results -> a typed `BlockTemplate`.

Accepts both shapes: Bitcoin Core's (rules incl. segwit, `default_witness_commitment`,
`weightlimit`) and the legacy one (no segwit fields). Hex is decoded once, here. Raises
`TemplateError` naming the field on malformed input. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WITNESS_COMMITMENT_PREFIX = bytes.fromhex("6a24aa21a9ed")


class TemplateError(ValueError):
    """A block template bitcoind returned is malformed."""


@dataclass(frozen=True, slots=True)
class TemplateTx:
    data: bytes
    txid: bytes  # internal byte order
    wtxid: bytes  # internal byte order (== txid for non-witness transactions)
    fee_sat: int


@dataclass(frozen=True, slots=True)
class BlockTemplate:
    version: int
    prev_hash: bytes  # internal byte order, as in the header
    height: int
    bits: int
    curtime: int
    mintime: int
    coinbase_value_sat: int
    transactions: tuple[TemplateTx, ...]
    witness_commitment: bytes | None  # the full output script, when the template is segwit
    coinbase_flags: bytes
    longpollid: str | None
    rules: tuple[str, ...]

    @property
    def prev_hash_hex(self) -> str:
        """Previous block hash in display (RPC) order."""
        return self.prev_hash[::-1].hex()

    @property
    def fees_sat(self) -> int:
        return sum(tx.fee_sat for tx in self.transactions)


def _field(raw: Mapping[str, object], name: str) -> object:
    if name not in raw:
        raise TemplateError(f"block template has no {name!r}")
    return raw[name]


def _int(raw: Mapping[str, object], name: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
    value = _field(raw, name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise TemplateError(f"block template {name!r} must be an integer in [{lo}, {hi}]")
    return value


def _hex(value: object, name: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise TemplateError(f"block template {name!r} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise TemplateError(f"block template {name!r} is not valid hex") from None
    if size is not None and len(data) != size:
        raise TemplateError(f"block template {name!r} must be {size} bytes, got {len(data)}")
    return data


def parse_template(raw: Mapping[str, object]) -> BlockTemplate:
    """Validate and decode one getblocktemplate result."""
    if not isinstance(raw, Mapping):
        raise TemplateError("block template must be a JSON object")
    bits = int.from_bytes(_hex(_field(raw, "bits"), "bits", 4), "big")
    txs_raw = _field(raw, "transactions")
    if not isinstance(txs_raw, list):
        raise TemplateError("block template 'transactions' must be a list")
    txs = []
    for i, tx in enumerate(txs_raw):
        if not isinstance(tx, Mapping):
            raise TemplateError(f"transactions[{i}] must be an object")
        data = _hex(_field(tx, "data"), f"transactions[{i}].data")
        txid = _hex(_field(tx, "txid" if "txid" in tx else "hash"), f"transactions[{i}].txid", 32)
        wtxid = _hex(tx.get("hash", tx.get("txid")), f"transactions[{i}].hash", 32)
        fee = tx.get("fee", 0)
        if isinstance(fee, bool) or not isinstance(fee, int):
            raise TemplateError(f"transactions[{i}].fee must be an integer")
        txs.append(TemplateTx(data, txid[::-1], wtxid[::-1], fee))
    commitment: bytes | None = None
    if raw.get("default_witness_commitment") is not None:
        commitment = _hex(raw["default_witness_commitment"], "default_witness_commitment")
        if not commitment.startswith(WITNESS_COMMITMENT_PREFIX) or len(commitment) < 38:
            raise TemplateError(
                "default_witness_commitment is not an OP_RETURN aa21a9ed commitment"
            )
    aux = raw.get("coinbaseaux") or {}
    flags = b""
    if isinstance(aux, Mapping) and aux.get("flags"):
        flags = _hex(aux["flags"], "coinbaseaux.flags")
    rules = raw.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise TemplateError("block template 'rules' must be a list of strings")
    curtime = _int(raw, "curtime", hi=2**32 - 1)
    longpoll = raw.get("longpollid")
    return BlockTemplate(
        version=_int(raw, "version", hi=2**32 - 1),
        prev_hash=_hex(_field(raw, "previousblockhash"), "previousblockhash", 32)[::-1],
        height=_int(raw, "height", hi=2**31 - 1),
        bits=bits,
        curtime=curtime,
        mintime=_int(raw, "mintime", hi=2**32 - 1) if "mintime" in raw else curtime,
        coinbase_value_sat=_int(raw, "coinbasevalue", hi=21_000_000 * 100_000_000),
        transactions=tuple(txs),
        witness_commitment=commitment,
        coinbase_flags=flags,
        longpollid=longpoll if isinstance(longpoll, str) else None,
        rules=tuple(r.lstrip("!") for r in rules),
    )
