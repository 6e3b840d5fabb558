#!/usr/bin/env python3
"""Check a poold proof without trusting the pool: `python verify.py proof.json`.

Standard library only; it imports nothing of poold, so a holder or miner can read all of it.
A holder's proof (the API's /api/v1/holders/<holder>/proofs/<period start>) holds one
statement line, the holder's salt, the path of sibling hashes and sums to the period's
Merkle-sum root, the period's published inputs and commitment, the chain of commitments after
it, the anchors that put those commitments on the Bitcoin chain (each with its evidence: block
header, transaction, merkle branch), and where the proof was cut. A miner's proof ("kind":
"credit", /api/v1/miners/<account>/proofs/<block hash or FPPS period end>) holds the same for
the miner's line of one block's split or FPPS booking. The format is specified in
docs/reference/proof-format.md; one strict parser reads it (exact types, no duplicate keys,
bounded sizes) before any check runs.

Checked, in order:

1. the line, salted, hashes to a leaf that climbs the path to the period's root, every
   parent committing to both children's hashes and sums;
2. the period's commitment is H(root, sums, inputs digest, previous commitment); every later
   link hashes right and links to the one before; the chain ends at the head the proof names;
3. the line follows from the published inputs by the settlement rules. A holder: the holders'
   pot from earnings and delivery, and the lines' gross adding up to it; gross the holder's
   token-second share of the pot (at most 1 sat over the floor); electricity and service from
   the rates, the delivery ratio and the BTC/USD price, floored; net, paid and debt as the
   negative-amount policy says. A miner: the pool fee is floor(reward x fee); credits, fee and
   unallocated add up to the reward; the credit is the line's quota (reward - fee) x score /
   score total, floored or one satoshi over; for an FPPS booking, the score (each share capped
   at its network difficulty) is at most the line's number of shares, the credit is
   floor(score x (subsidy + average fees) x (1 - fee) + carried in), and what is left is
   carried out. The score is the miner's own work in network difficulties: compare it with
   what the miner's side counted;
4. every anchor: its header hashes to the block it names and meets its own target; its
   transaction (non-witness bytes) climbs its merkle branch to the header's merkle root (the
   coinbase at index 0 with a null prevout and the block's height; an anchor transaction
   elsewhere); it has exactly one "pold" output, carrying in this proof's slot (statement or
   credit) a commitment of this chain; it pays one of the pool's scripts (coinbase) or of its
   anchor scripts (anchor transaction); it lies at or below the block the proof was cut at.

What that establishes is said, never more. A header's proof of work is evidence only when it
is costly: under --min-work (default 2^75 hashes, far below a mainnet block and far above any
test chain) the verdict says the work is trivial and that only --node or --block establish
anything. --node URL (a bitcoind JSON-RPC URL, credentials in it) checks each anchor's block is
on that node's best chain, with its confirmations, and scans the pool's own anchors in its
recent blocks (--scan-blocks): from the first block anchoring this chain to the block the
proof was cut at, every one must carry a commitment of this proof's chain (or the one just
before it), or the pool has shown someone another history (equivocation); after the cut the
pool anchors what this proof cannot know, so a fresh proof judges those. --block HASH
(repeatable) takes a block hash the user got elsewhere as on the chain. Offline, dropping a
proof's anchors is the one forgery a verifier cannot see: --require-anchor makes "not
anchored yet" a failure, and so does a period that ended more than --anchor-grace ago
(default: twice the pool's anchor cadence the proof states, at most two days).

A work proof ("kind": "work", /api/v1/tokens/periods/<period start>/work-proof) shows the
delivered hashrate of a period: its k sampled shares are rebuilt into their headers and
checked against their weight's target, the pool's coinbase script and a recent link of the
statement chain, the tips of the period and the committed work tree (sorted: left max below
right min at every node), the draws against a beacon block after the anchor; the statement's
delivered TH·s must equal the root's work (docs/reference/proof-format.md, "Work proofs").

Exit 0 and "ok" when every check passes; exit 1 and one line "FAILED: <what and where>" for
the first that fails or any input that cannot be read; exit 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TypeVar

T = TypeVar("T")

COIN = 100_000_000
VERSION = 2
MAX_FILE_BYTES = 64 << 20
MAX_DIGITS = 40  # a whole number's digits (2^120 has 37)
MAX_INT = 2**120  # the magnitude of any whole number, and of any sum
MAX_PATH = 64  # steps from a leaf to the root
MAX_CHAIN = 10_000  # later links
MAX_ANCHORS = 1_000
MAX_BRANCH = 32  # merkle branch steps (2^32 transactions)
MAX_TX_BYTES = 1_000_000
MAX_SCRIPT_BYTES = 10_000
MAX_SCRIPTS = 100  # scripts of each kind the pool names (one per address it has used)
MAX_TEXT = 256  # characters of a name or a text input
MAX_EXACT_DIGITS = 60  # digits of an exact number's numerator or denominator
DEFAULT_MIN_WORK = 2**75
DEFAULT_SCAN_BLOCKS = 144
MAX_GRACE_S = 2 * 86400  # twice the longest anchor cadence a pool may declare
MAGIC = b"pold"
NULL_PREVOUT = bytes(32) + b"\xff\xff\xff\xff"

LINE_FIELDS = (
    "atom_seconds", "gross_sat", "electricity_sat", "service_sat", "net_sat",
    "debt_in_sat", "paid_sat", "debt_out_sat", "written_off_sat",
)  # fmt: skip
SUMMED = (
    "atom_seconds", "gross_sat", "electricity_sat", "service_sat",
    "debt_in_sat", "paid_sat", "debt_out_sat", "written_off_sat",
)  # fmt: skip
CREDIT_FIELDS = ("credit_sat", "score", "carry_in", "carry_out")
CREDIT_TEXT = ("score", "carry_in", "carry_out")
BLOCK_KINDS = ("pplns_block", "prop_block", "solo_block")

# Each input a kind of proof publishes: its type ("int", "exact", "text", "hex32", or a tuple
# of the texts allowed), its bounds, and whether it may be absent.
_NONNEG = (0, None)
STATEMENT_INPUTS: dict[str, tuple[object, tuple[int | None, int | None], bool]] = {
    "period_start": ("int", _NONNEG, False),
    "period_end": ("int", _NONNEG, False),
    "atoms_per_token": ("int", (1, None), False),
    "th_per_token": ("exact", _NONNEG, False),
    "w_per_th": ("exact", _NONNEG, False),
    "usd_per_kwh": ("exact", _NONNEG, False),
    "discount": ("exact", (0, 1), False),
    "service_usd_per_th_day": ("exact", _NONNEG, False),
    "btc_usd": ("exact", _NONNEG, False),
    "delivered_th_per_s": ("exact", _NONNEG, False),
    "earnings_sat": ("int", _NONNEG, False),
    "holders_pot_sat": ("int", _NONNEG, False),
    "negative_policy": (("carry", "clamp"), _NONNEG, False),
    # The work proof's commitment (periods settled since the proof of delivered hashrate).
    "work_root": ("hex32", _NONNEG, True),
    "work": ("int", _NONNEG, True),
    "work_leaves": ("int", _NONNEG, True),
    # A make-good: the period's shortfall under the threshold, valued at the network's
    # hashprice and split among holders by token-seconds (`[tokens] make_good`).
    "delivery_threshold": ("exact", (0, 1), True),
    "make_good_sat": ("int", _NONNEG, True),
    "network_hashprice": ("exact", _NONNEG, True),
}
BLOCK_INPUTS: dict[str, tuple[object, tuple[int | None, int | None], bool]] = {
    "block_hash": ("hex32", _NONNEG, False),
    "height": ("int", _NONNEG, False),
    "reward_sat": ("int", _NONNEG, False),
    "pool_fee": ("exact", (0, 1), False),
    "fee_sat": ("int", _NONNEG, False),
    "unallocated_sat": ("int", _NONNEG, False),
    "score_total": ("exact", _NONNEG, False),
    "key": ("text", _NONNEG, False),
    "kind": (BLOCK_KINDS, _NONNEG, False),
    "found_s": ("int", _NONNEG, True),
}
FPPS_INPUTS: dict[str, tuple[object, tuple[int | None, int | None], bool]] = {
    "period_end": ("int", _NONNEG, False),
    "subsidy_sat": ("int", _NONNEG, False),
    "avg_fees_sat": ("exact", _NONNEG, False),
    "pool_fee": ("exact", (0, 1), False),
    "booked_sat": ("int", _NONNEG, False),
    "key": ("text", _NONNEG, False),
    "kind": (("fpps_period",), _NONNEG, False),
}


class Failed(Exception):
    """A check failed, or the input cannot be read: the message says what and where."""


# -- reading JSON strictly -----------------------------------------------------------------------


class _NotWhole(str):
    """A JSON number with a fraction or an exponent (or NaN, Infinity), kept as its text."""


class _Huge(str):
    """A JSON integer with more digits than any amount may have, kept as its text."""


class _Obj(dict):  # type: ignore[type-arg]
    """A JSON object that remembers the keys it was given twice."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, object]]) -> _Obj:
    out = _Obj()
    out.dups = []
    for k, v in pairs:
        if k in out:
            out.dups.append(k)
        out[k] = v
    return out


def _int_text(text: str) -> object:
    return _Huge(text) if len(text.lstrip("-")) > MAX_DIGITS else int(text)


def load_json(raw: bytes) -> object:
    """JSON as the parser below reads it: numbers other than whole ones, and integers too
    long to be an amount, stay as marked text so the check that meets them can name them."""
    if len(raw) > MAX_FILE_BYTES:
        raise Failed(f"the proof is {len(raw)} bytes, over the {MAX_FILE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Failed(f"the proof is not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_float=_NotWhole,
            parse_int=_int_text,
            parse_constant=_NotWhole,
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise Failed(f"the proof is not JSON: {exc.msg} ({where})") from None
    except RecursionError:
        raise Failed("the proof nests arrays or objects too deeply") from None


def _what(v: object) -> str:
    if isinstance(v, _NotWhole):
        return f"the number {v[:40]}"
    if isinstance(v, _Huge):
        return f"a number of {len(v.lstrip('-'))} digits"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the text {v[:40]!r}"
    return "an array" if isinstance(v, list) else "an object"


def _maybe(v: object, read: Callable[[object], T]) -> T | None:
    return None if v is None else read(v)


def _short(value: bytes | None) -> str:
    return "nothing" if value is None else value.hex()[:16] + "…"


def _obj(v: object, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> _Obj:
    if not isinstance(v, _Obj):
        raise Failed(f"{where} must be an object, not {_what(v)}")
    if v.dups:
        raise Failed(f"{where} gives the key {v.dups[0]!r} twice")
    for k in required:
        if k not in v:
            raise Failed(f"{where} lacks {k!r}")
    for k in v:
        if k not in required and k not in optional:
            raise Failed(f"{where} has an unknown key {k[:40]!r}")
    return v


def _list(v: object, where: str, most: int) -> list[object]:
    if not isinstance(v, list):
        raise Failed(f"{where} must be an array, not {_what(v)}")
    if len(v) > most:
        raise Failed(f"{where} has {len(v)} entries, over the limit of {most}")
    return v


def _whole(v: object, where: str, lo: int | None = -MAX_INT, hi: int | None = MAX_INT) -> int:
    if type(v) is not int:
        raise Failed(f"{where} must be a whole number, not {_what(v)}")
    lo = -MAX_INT if lo is None else lo
    hi = MAX_INT if hi is None else hi
    if not lo <= v <= hi:
        raise Failed(f"{where} is {v}, outside {lo}..{hi}")
    return v


def _text(v: object, where: str, most: int = MAX_TEXT) -> str:
    if type(v) is not str:
        raise Failed(f"{where} must be text, not {_what(v)}")
    if not v or len(v) > most:
        raise Failed(f"{where} must be 1 to {most} characters")
    return v


_PLAIN = re.compile(r"[ !#-\[\]-~]+")  # printable ASCII without '"' and '\'


def _plain(v: object, where: str) -> str:
    """Text whose canonical JSON is itself in quotes: printable ASCII, no quote or backslash."""
    s = _text(v, where)
    if not _PLAIN.fullmatch(s):
        raise Failed(f"{where} must be printable ASCII without quotes or backslashes")
    return s


_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def _hex(v: object, where: str, size: int | None = None, most: int = MAX_TX_BYTES) -> bytes:
    if type(v) is not str:
        raise Failed(f"{where} must be lowercase hex text, not {_what(v)}")
    if size is not None and len(v) != 2 * size:
        raise Failed(f"{where} must be {2 * size} hex digits, got {len(v)}")
    if len(v) > 2 * most:
        raise Failed(f"{where} is over {most} bytes")
    if not _HEX.fullmatch(v):
        raise Failed(f"{where} must be lowercase hex of whole bytes")
    return bytes.fromhex(v)


_EXACT = re.compile(r"(-?)([0-9]+)(?:/([0-9]+))?")


def _exact(v: object, where: str, lo: int | None = None, hi: int | None = None) -> Fraction:
    """An exact number written "n" or "n/d" (as Python's str(Fraction) writes it)."""
    if type(v) is not str:
        raise Failed(f'{where} must be an exact number as text ("n" or "n/d"), not {_what(v)}')
    m = _EXACT.fullmatch(v)
    if m is None:
        raise Failed(f'{where} must be an exact number as text ("n" or "n/d"), got {v[:40]!r}')
    num, den = m.group(2), m.group(3) or "1"
    if len(num) > MAX_EXACT_DIGITS or len(den) > MAX_EXACT_DIGITS:
        raise Failed(f"{where} has over {MAX_EXACT_DIGITS} digits")
    if int(den) == 0:
        raise Failed(f"{where} is {v}: a zero denominator")
    value = Fraction(int(num), int(den)) * (-1 if m.group(1) else 1)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        raise Failed(f"{where} is {v}, outside {bounds}")
    return value


# -- the typed proof -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    hash: bytes
    sums: tuple[int, ...]


@dataclass(frozen=True)
class Link:
    label: str
    root: Node
    inputs_digest: bytes
    previous: bytes
    commitment: bytes


@dataclass(frozen=True)
class Anchor:
    where: str
    type: str
    block: str
    height: int
    header: bytes
    tx: bytes
    index: int
    branch: tuple[bytes, ...]
    commitment: bytes


@dataclass(frozen=True)
class Pool:
    coinbase_scripts: frozenset[bytes]  # every script its coinbases have paid
    anchor_scripts: frozenset[bytes]  # every script its anchor transactions have paid
    anchor_interval_s: int | None


@dataclass(frozen=True)
class Proof:
    kind: str  # statement | credit
    name: str
    salt: bytes
    line: dict[str, object]  # whole numbers, or Fractions for a credit's exact fields
    line_text: dict[str, str]  # a credit's exact fields as written (what the leaf hashes)
    path: tuple[tuple[bool, Node], ...]  # (the sibling is on the left, the sibling)
    inputs: dict[str, object]  # typed
    inputs_json: _Obj  # as given: its canonical JSON is what is hashed
    root: Node
    previous: bytes
    commitment: bytes
    chain: tuple[Link, ...]
    anchors: tuple[Anchor, ...]
    head: bytes
    best_block: str | None
    best_height: int | None
    cut_time: int | None
    pool: Pool | None

    @property
    def width(self) -> int:
        return len(SUMMED) if self.kind == "statement" else 1

    @property
    def slot(self) -> str:
        return "statement" if self.kind == "statement" else "credit"

    @property
    def ended(self) -> int | None:
        """When the period or settlement ended (unix seconds), as its inputs commit it."""
        end = self.inputs.get("period_end", self.inputs.get("found_s"))
        return end if isinstance(end, int) else None


def _scripts(v: object, where: str) -> frozenset[bytes]:
    items = _list(v, where, MAX_SCRIPTS)
    return frozenset(_hex(s, f"{where}[{i}]", most=MAX_SCRIPT_BYTES) for i, s in enumerate(items))


def _node(v: object, where: str, width: int, also: tuple[str, ...] = ()) -> Node:
    o = _obj(v, where, ("hash", "sums", *also))
    sums = _list(o["sums"], f"{where}.sums", width)
    if len(sums) != width:
        raise Failed(f"{where}.sums must hold {width} amounts, got {len(sums)}")
    return Node(
        _hex(o["hash"], f"{where}.hash", 32),
        tuple(_whole(s, f"{where}.sums[{i}]", 0) for i, s in enumerate(sums)),
    )


def _inputs(v: object, kind: str) -> tuple[_Obj, dict[str, object]]:
    if kind == "statement":
        schema = STATEMENT_INPUTS
    else:
        if not isinstance(v, _Obj):
            raise Failed(f"period.inputs must be an object, not {_what(v)}")
        schema = FPPS_INPUTS if v.get("kind") == "fpps_period" else BLOCK_INPUTS
    required = tuple(k for k, (_t, _b, opt) in schema.items() if not opt)
    optional = tuple(k for k, (_t, _b, opt) in schema.items() if opt)
    o = _obj(v, "period.inputs", required, optional)
    typed: dict[str, object] = {}
    for k, value in o.items():
        kind_of, (lo, hi), _opt = schema[k]
        where = f"period.inputs.{k}"
        if kind_of == "int":
            typed[k] = _whole(value, where, lo, hi)
        elif kind_of == "exact":
            typed[k] = _exact(value, where, lo, hi)
        elif kind_of == "hex32":
            _hex(value, where, 32)
            typed[k] = value
        elif kind_of == "text":
            typed[k] = _plain(value, where)
        else:
            if value not in kind_of:  # type: ignore[operator]
                raise Failed(f"{where} must be one of {', '.join(kind_of)}, not {_what(value)}")  # type: ignore[arg-type]
            typed[k] = value
    if kind == "statement":
        if typed["period_end"] <= typed["period_start"]:  # type: ignore[operator]
            raise Failed("period.inputs.period_end must come after period_start")
        if typed["btc_usd"] == 0:
            raise Failed("period.inputs.btc_usd is 0: a price must be positive")
    return o, typed


def _line(v: object, kind: str, fpps: bool) -> tuple[dict[str, object], dict[str, str]]:
    if kind == "statement":
        o = _obj(v, "line", LINE_FIELDS)
        return {
            f: _whole(o[f], f"line.{f}", None if f == "net_sat" else 0) for f in LINE_FIELDS
        }, {}
    fields = (*CREDIT_FIELDS, "shares") if fpps else CREDIT_FIELDS
    o = _obj(v, "line", fields)
    line: dict[str, object] = {"credit_sat": _whole(o["credit_sat"], "line.credit_sat", 0)}
    text = {}
    for f in CREDIT_TEXT:
        line[f] = _exact(o[f], f"line.{f}")
        text[f] = str(o[f])
    if fpps:
        line["shares"] = _whole(o["shares"], "line.shares", 0)
    return line, text


def _anchor(v: object, where: str) -> Anchor:
    o = _obj(v, where, ("type", "block", "height", "header", "tx", "index", "branch", "commitment"))
    kind = o["type"]
    if kind not in ("coinbase", "transaction"):
        raise Failed(f'{where}.type must be "coinbase" or "transaction", not {_what(kind)}')
    branch = _list(o["branch"], f"{where}.branch", MAX_BRANCH)
    return Anchor(
        where=where,
        type=str(kind),
        block=_hex(o["block"], f"{where}.block", 32).hex(),
        height=_whole(o["height"], f"{where}.height", 0, 2**31),
        header=_hex(o["header"], f"{where}.header", 80),
        tx=_hex(o["tx"], f"{where}.tx"),
        index=_whole(o["index"], f"{where}.index", 0, 2**32 - 1),
        branch=tuple(_hex(b, f"{where}.branch[{i}]", 32) for i, b in enumerate(branch)),
        commitment=_hex(o["commitment"], f"{where}.commitment", 32),
    )


def parse(raw: bytes) -> Proof:
    """The one reader of a proof: every field to its exact type, or Failed naming it."""
    return parse_doc(load_json(raw))


def parse_doc(doc: object) -> Proof:
    """A statement or credit proof from its JSON (`load_json`)."""
    if isinstance(doc, _Obj) and doc.get("version") == 1 and type(doc.get("version")) is int:
        raise Failed(
            "this is a version 1 proof: its anchors carry no evidence; fetch the proof again "
            "(the pool serves version 2)"
        )
    if not isinstance(doc, _Obj):
        raise Failed(f"the proof must be a JSON object, not {_what(doc)}")
    if doc.dups:
        raise Failed(f"the proof gives the key {doc.dups[0]!r} twice")
    for key in ("version", "kind"):
        if key not in doc:
            raise Failed(f"the proof lacks {key!r}")
    if doc["version"] != VERSION or type(doc["version"]) is not int:
        raise Failed(f"version must be {VERSION}, not {_what(doc['version'])}")
    kind = doc["kind"]
    if kind not in ("statement", "credit"):
        raise Failed(f'kind must be "statement", "credit" or "work", not {_what(kind)}')
    name_key = "holder" if kind == "statement" else "account"
    fields = ("version", "kind", name_key, "salt", "line", "path", "period", "chain", "anchors",
              "cut", "pool")  # fmt: skip
    doc = _obj(doc, "the proof", fields)
    period = _obj(doc["period"], "period", ("inputs", "root", "previous", "commitment"))
    inputs_json, inputs = _inputs(period["inputs"], str(kind))
    line, line_text = _line(doc["line"], str(kind), inputs.get("kind") == "fpps_period")
    width = len(SUMMED) if kind == "statement" else 1
    path = []
    for i, step in enumerate(_list(doc["path"], "path", MAX_PATH)):
        where = f"path[{i}]"
        sibling = _node(step, where, width, also=("side",))
        side = step["side"]  # type: ignore[index]
        if side not in ("L", "R"):
            raise Failed(f'{where}.side must be "L" or "R", not {_what(side)}')
        path.append((side == "L", sibling))
    label_key = "period_start" if kind == "statement" else "key"
    chain = []
    for i, item in enumerate(_list(doc["chain"], "chain", MAX_CHAIN)):
        where = f"chain[{i}]"
        o = _obj(item, where, (label_key, "root", "inputs_digest", "previous", "commitment"))
        label = (
            str(_whole(o[label_key], f"{where}.{label_key}", 0))
            if kind == "statement"
            else _plain(o[label_key], f"{where}.{label_key}")
        )
        chain.append(
            Link(
                label,
                _node(o["root"], f"{where}.root", width),
                _hex(o["inputs_digest"], f"{where}.inputs_digest", 32),
                _hex(o["previous"], f"{where}.previous", 32),
                _hex(o["commitment"], f"{where}.commitment", 32),
            )
        )
    anchors = tuple(
        _anchor(a, f"anchors[{i}]")
        for i, a in enumerate(_list(doc["anchors"], "anchors", MAX_ANCHORS))
    )
    cut = _obj(doc["cut"], "cut", ("head", "best_block", "best_height", "time"))
    pool = None
    if doc["pool"] is not None:
        p = _obj(doc["pool"], "pool", ("coinbase_scripts", "anchor_scripts", "anchor_interval_s"))
        pool = Pool(
            _scripts(p["coinbase_scripts"], "pool.coinbase_scripts"),
            _scripts(p["anchor_scripts"], "pool.anchor_scripts"),
            None
            if p["anchor_interval_s"] is None
            else _whole(p["anchor_interval_s"], "pool.anchor_interval_s", 60, 86400),
        )
    if anchors and pool is None:
        raise Failed("the proof has anchors but names no pool scripts (pool is null)")
    return Proof(
        kind=str(kind),
        name=_text(doc[name_key], name_key),
        salt=_hex(doc["salt"], "salt", 16),
        line=line,
        line_text=line_text,
        path=tuple(path),
        inputs=inputs,
        inputs_json=inputs_json,
        root=_node(period["root"], "period.root", width),
        previous=_hex(period["previous"], "period.previous", 32),
        commitment=_hex(period["commitment"], "period.commitment", 32),
        chain=tuple(chain),
        anchors=anchors,
        head=_hex(cut["head"], "cut.head", 32),
        best_block=_maybe(cut["best_block"], lambda v: _hex(v, "cut.best_block", 32).hex()),
        best_height=_maybe(cut["best_height"], lambda v: _whole(v, "cut.best_height", 0, 2**31)),
        cut_time=_maybe(cut["time"], lambda v: _whole(v, "cut.time", 0, 2**40)),
        pool=pool,
    )  # fmt: skip


# -- hashing -------------------------------------------------------------------------------------


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def i16(v: int) -> bytes:
    return v.to_bytes(16, "big", signed=True)


def s4(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(4, "big") + raw


def sums_bytes(sums: tuple[int, ...]) -> bytes:
    return b"".join(i16(v) for v in sums)


def inputs_digest(inputs: dict[str, object]) -> bytes:
    """H(canonical JSON): keys sorted, no spaces (the parser allows only whole numbers and
    plain ASCII text in inputs, so this text is unique)."""
    return sha(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())


def link_commitment(root: Node, digest: bytes, previous: bytes) -> bytes:
    return sha(b"\x02", root.hash, sums_bytes(root.sums), digest, previous)


def leaf_of(p: Proof) -> Node:
    """The leaf hash and sums of the proof's line."""
    if p.kind == "credit":
        fields = (*CREDIT_FIELDS, "shares") if "shares" in p.line else CREDIT_FIELDS
        body = b"".join(
            s4(p.line_text[f]) if f in CREDIT_TEXT else i16(int(p.line[f]))  # type: ignore[call-overload]
            for f in fields
        )
        sums: tuple[int, ...] = (int(p.line["credit_sat"]),)  # type: ignore[call-overload]
    else:
        body = b"".join(i16(int(p.line[f])) for f in LINE_FIELDS)  # type: ignore[call-overload]
        sums = tuple(int(p.line[f]) for f in SUMMED)  # type: ignore[call-overload]
    name = p.name.encode()
    salted = sha(p.salt, len(name).to_bytes(4, "big"), name)
    return Node(sha(b"\x00", salted, body), sums)


# -- the checks ----------------------------------------------------------------------------------


def check_tree(p: Proof) -> None:
    node = leaf_of(p)
    for left, sib in p.path:
        if left:
            h = sha(b"\x01", sib.hash, sums_bytes(sib.sums), node.hash, sums_bytes(node.sums))
        else:
            h = sha(b"\x01", node.hash, sums_bytes(node.sums), sib.hash, sums_bytes(sib.sums))
        node = Node(h, tuple(a + b for a, b in zip(node.sums, sib.sums, strict=True)))
    if node != p.root:
        raise Failed("the line does not climb to the period's root (hash or sums differ)")


def check_chain(p: Proof) -> dict[bytes, int]:
    """The period's commitment and every later link; returns each commitment of this chain
    with its place (0: the period's own, k: the k-th later link)."""
    if link_commitment(p.root, inputs_digest(p.inputs_json), p.previous) != p.commitment:
        raise Failed("the period's commitment is not H(root, sums, inputs, previous)")
    known = {p.commitment: 0}
    prev = p.commitment
    for k, link in enumerate(p.chain, 1):
        if link.previous != prev:
            raise Failed(f"the chain breaks at {link.label}: wrong previous")
        if link_commitment(link.root, link.inputs_digest, link.previous) != link.commitment:
            raise Failed(f"the commitment of {link.label} does not hash right")
        if link.commitment in known:
            raise Failed(f"the chain repeats a commitment at {link.label}")
        known[link.commitment] = k
        prev = link.commitment
    if p.head != prev:
        raise Failed(
            f"the proof names head {p.head.hex()[:16]}… but its chain ends at "
            f"{prev.hex()[:16]}…: links are missing"
        )
    return known


def floor(x: Fraction) -> int:
    return x.numerator // x.denominator


def check_rules(p: Proof) -> None:
    x, line = p.inputs, p.line
    F = Fraction
    seconds = int(x["period_end"]) - int(x["period_start"])  # type: ignore[call-overload]
    q = int(x["atoms_per_token"])  # type: ignore[call-overload]
    th = F(x["th_per_token"])  # type: ignore[arg-type]
    total = p.root.sums[0]
    nominal = F(total, q) * th
    delivered = F(x["delivered_th_per_s"]) * seconds  # type: ignore[arg-type]
    ratio = F(1) if nominal == 0 else min(F(1), delivered / nominal)
    pot_share = F(1) if delivered == 0 else min(F(1), nominal / delivered)
    earnings = int(x["earnings_sat"])  # type: ignore[call-overload]
    pot = floor(earnings * pot_share)
    if pot != x["holders_pot_sat"]:
        raise Failed(f"the holders' pot is {x['holders_pot_sat']}, the rules give {pot}")
    if p.root.sums[1] != pot:
        raise Failed(f"the lines' gross adds up to {p.root.sums[1]}, not the pot {pot}")
    ts, gross = int(line["atom_seconds"]), int(line["gross_sat"])  # type: ignore[call-overload]
    low = pot * ts // total if total else 0
    if not low <= gross <= low + (1 if total else 0):
        raise Failed(f"gross {gross} is not this holder's share of the pot ({low} or {low + 1})")
    price = F(x["btc_usd"])  # type: ignore[arg-type]
    eff_th_h = th / q * ratio / 3600
    k_elec = F(x["w_per_th"]) * eff_th_h / 1000 * F(x["usd_per_kwh"]) * (1 - F(x["discount"]))  # type: ignore[arg-type]
    k_elec = k_elec * COIN / price
    k_serv = F(x["service_usd_per_th_day"]) * eff_th_h / 24 * COIN / price  # type: ignore[arg-type]
    elec, serv = floor(ts * k_elec), floor(ts * k_serv)
    net = gross - elec - serv
    after = net - int(line["debt_in_sat"])  # type: ignore[call-overload]
    short = max(-after, 0)
    carry = x["negative_policy"] == "carry"
    want = {
        "electricity_sat": elec,
        "service_sat": serv,
        "net_sat": net,
        "paid_sat": max(after, 0),
        "debt_out_sat": short if carry else 0,
        "written_off_sat": 0 if carry else short,
    }
    for name, value in want.items():
        if line[name] != value:
            raise Failed(f"{name} is {line[name]}, the rules give {value}")
    if "make_good_sat" in x:
        threshold = F(x.get("delivery_threshold", "0"))  # type: ignore[arg-type]
        if ratio >= threshold:
            raise Failed(f"a make-good is posted, but delivery {float(ratio):.2%} is not under "
                         f"the threshold {float(threshold):.2%}")  # fmt: skip
        value = (nominal - delivered) * F(x.get("network_hashprice", "0")) / 86400  # type: ignore[arg-type]
        if floor(value) != x["make_good_sat"]:
            raise Failed(f"the make-good is {x['make_good_sat']} sat; the shortfall's value at "
                         f"the network's hashprice is {floor(value)}")  # fmt: skip


def make_good_share(p: Proof) -> tuple[int, int] | None:
    """The make-good total and this holder's share of it by token-seconds (floor; the
    largest remainder may give one satoshi more), or None when the period has none."""
    x = p.inputs
    if "make_good_sat" not in x or not p.root.sums[0]:
        return None
    total = int(x["make_good_sat"])  # type: ignore[call-overload]
    return total, total * int(p.line["atom_seconds"]) // p.root.sums[0]  # type: ignore[call-overload]


def check_credit(p: Proof) -> None:
    x, line = p.inputs, p.line
    F = Fraction
    fee = F(x["pool_fee"])  # type: ignore[arg-type]
    score, credit = F(line["score"]), int(line["credit_sat"])  # type: ignore[arg-type, call-overload]
    carry_in, carry_out = F(line["carry_in"]), F(line["carry_out"])  # type: ignore[arg-type]
    if score < 0 or not 0 <= carry_in < 1 or not 0 <= carry_out < 1:
        raise Failed("a score or carried remainder is out of range")
    if x["kind"] == "fpps_period":
        shares = int(line["shares"])  # type: ignore[call-overload]
        if score > shares:
            raise Failed(
                f"the score {score} is more than the line's {shares} shares: no share may be "
                "credited more than one block (its network difficulty)"
            )
        if p.root.sums[0] != x["booked_sat"]:
            raise Failed(
                f"the lines add up to {p.root.sums[0]}, the booking says {x['booked_sat']}"
            )
        value = score * (int(x["subsidy_sat"]) + F(x["avg_fees_sat"])) * (1 - fee)  # type: ignore[arg-type, call-overload]
        want = floor(value + carry_in)
        if credit != want:
            raise Failed(f"credit_sat is {credit}, the rules give {want}")
        if carry_out != value + carry_in - want:
            raise Failed(f"carry_out is {carry_out}, the rules give {value + carry_in - want}")
        return
    reward, fee_sat = int(x["reward_sat"]), int(x["fee_sat"])  # type: ignore[call-overload]
    if fee_sat != floor(reward * fee):
        raise Failed(f"the pool fee is {fee_sat}, floor(reward x fee) is not")
    if p.root.sums[0] + fee_sat + int(x["unallocated_sat"]) != reward:  # type: ignore[call-overload]
        raise Failed("credits + fee + unallocated do not add up to the block reward")
    if carry_in or carry_out:
        raise Failed("a block's line carries no remainder")
    total = F(x["score_total"])  # type: ignore[arg-type]
    quota = (reward - fee_sat) * score / total if total else F(0)
    low = floor(quota)
    if not low <= credit <= low + (0 if quota == low else 1):
        raise Failed(f"credit_sat is {credit}, the quota {quota} allows {low} or {low + 1}")


# -- Bitcoin: transactions, merkle branches, headers ---------------------------------------------


@dataclass(frozen=True)
class Tx:
    txid: bytes  # internal byte order
    inputs: tuple[tuple[bytes, bytes], ...]  # (prevout, scriptSig)
    outputs: tuple[tuple[int, bytes], ...]

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0][0] == NULL_PREVOUT

    @property
    def height(self) -> int | None:
        """A coinbase's BIP34 height push (None: none)."""
        sig = self.inputs[0][1]
        if not sig:
            return None
        if sig[0] == 0:
            return 0
        if 0x51 <= sig[0] <= 0x60:
            return sig[0] - 0x50
        if 1 <= sig[0] <= 8 and len(sig) > sig[0]:
            return int.from_bytes(sig[1 : 1 + sig[0]], "little")
        return None


class _Bytes:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"it ends at byte {len(self.data)}, inside a field")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def count(self) -> int:
        first = self.take(1)[0]
        n = (
            first
            if first < 0xFD
            else int.from_bytes(self.take({0xFD: 2, 0xFE: 4}.get(first, 8)), "little")
        )
        if n > len(self.data):
            raise ValueError(f"a count of {n} at byte {self.pos} is longer than the data")
        return n  # fmt: skip


def read_tx(r: _Bytes, *, witness: bool) -> Tx:
    """One transaction at the reader's position; `witness` allows the segwit serialisation
    (a block's), and the txid is always of the non-witness bytes."""
    start = r.pos
    version = r.take(4)
    segwit = r.data[r.pos : r.pos + 2] == b"\x00\x01"
    if segwit:
        if not witness:
            raise ValueError("it carries witness data: the non-witness serialisation is hashed")
        r.take(2)
    body = r.pos
    inputs = []
    for _ in range(r.count()):
        prevout = r.take(36)
        inputs.append((prevout, r.take(r.count())))
        r.take(4)
    if not inputs:
        raise ValueError("it has no input")
    outputs = []
    for _ in range(r.count()):
        value = int.from_bytes(r.take(8), "little", signed=True)
        outputs.append((value, r.take(r.count())))
    end = r.pos
    if segwit:
        for _ in inputs:
            for _ in range(r.count()):
                r.take(r.count())
    locktime = r.take(4)
    plain = version + r.data[body:end] + locktime if segwit else r.data[start : r.pos]
    return Tx(sha256d(plain), tuple(inputs), tuple(outputs))


def parse_tx(data: bytes) -> Tx:
    if len(data) == 64:  # 64 bytes could be two hashes: a merkle node posing as a transaction
        raise ValueError("it is 64 bytes long, the size of an inner merkle node")
    r = _Bytes(data)
    tx = read_tx(r, witness=False)
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} bytes follow it")
    return tx


def parse_block(data: bytes) -> tuple[bytes, list[Tx]]:
    r = _Bytes(data, 80)
    txs = [read_tx(r, witness=True) for _ in range(r.count())]
    if len(data) < 81 or not txs or r.pos != len(data):
        raise ValueError("not a serialised block")
    return data[:80], txs


def fold(leaf: bytes, index: int, branch: tuple[bytes, ...]) -> bytes:
    h = leaf
    for sibling in branch:
        h = sha256d(sibling + h) if index & 1 else sha256d(h + sibling)
        index >>= 1
    return h


def target_of(bits: int) -> int:
    """Compact nBits to a target, refusing the encodings no chain accepts."""
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    if bits & 0x00800000:
        raise ValueError(f"nBits {bits:08x} encodes a negative target")
    target = mantissa << (8 * (exponent - 3)) if exponent >= 3 else mantissa >> (8 * (3 - exponent))
    if target == 0 or target >= 2**256:
        raise ValueError(f"nBits {bits:08x} encodes no valid target")
    return target


def pold_commitments(script: bytes) -> tuple[bytes, bytes | None] | None:
    """(statement slot, credit slot) of a poold output: OP_RETURN PUSH36 "pold" + 32 bytes,
    or PUSH68 "pold" + 64 bytes; None when the script is no poold output at all."""
    if script[:1] != b"\x6a" or MAGIC not in script[:8]:
        return None
    if len(script) == 38 and script[1] == 36 and script[2:6] == MAGIC:
        return script[6:38], None
    if len(script) == 70 and script[1] == 68 and script[2:6] == MAGIC:
        return script[6:38], script[38:70]
    raise ValueError('has a malformed "pold" output')


def carried(tx: Tx, slot: str) -> list[bytes | None]:
    """What each poold output of `tx` carries in `slot` (None: the slot is empty)."""
    out = []
    for _value, script in tx.outputs:
        c = pold_commitments(script)
        if c is not None:
            value = c[0] if slot == "statement" else c[1]
            out.append(None if value is None or value == bytes(32) else value)
    return out


@dataclass
class AnchorFact:
    anchor: Anchor
    place: int  # 0: this period's commitment; k: the k-th later link
    work: int
    txid: str
    node: str | None = None  # what --node said of its block
    given: bool = False  # its block hash was given with --block


def check_anchor(a: Anchor, p: Proof, known: dict[bytes, int]) -> AnchorFact:
    where = a.where
    assert p.pool is not None  # the parser refuses anchors without the pool's scripts
    block_hash = sha256d(a.header)[::-1].hex()
    if block_hash != a.block:
        raise Failed(f"{where}: its header hashes to {block_hash}, not to the block it names")
    try:
        target = target_of(int.from_bytes(a.header[72:76], "little"))
    except ValueError as exc:
        raise Failed(f"{where}: block {a.block}'s header: {exc}") from None
    if int.from_bytes(sha256d(a.header), "little") > target:
        raise Failed(
            f"{where}: block {a.block}'s header hash misses its own target (no proof of work)"
        )
    try:
        tx = parse_tx(a.tx)
    except ValueError as exc:
        raise Failed(f"{where}.tx is not a transaction: {exc}") from None
    if a.index >> len(a.branch):
        raise Failed(f"{where}: index {a.index} lies beyond its {len(a.branch)}-step branch")
    if fold(tx.txid, a.index, a.branch) != a.header[36:68]:
        raise Failed(
            f"{where}: the transaction is not in block {a.block} (its merkle branch does not "
            "reach the header's merkle root)"
        )
    if (a.index == 0) != tx.is_coinbase:
        raise Failed(
            f"{where}: a block's coinbase (a null prevout) is its first transaction, and only it"
        )
    if a.type != ("coinbase" if a.index == 0 else "transaction"):
        raise Failed(f"{where}: type {a.type} does not fit a transaction at index {a.index}")
    if tx.is_coinbase and tx.height != a.height:
        raise Failed(f"{where}: the coinbase says height {tx.height}, the anchor says {a.height}")
    try:
        slots = carried(tx, p.slot)
    except ValueError as exc:
        raise Failed(f"{where}: the transaction {exc}") from None
    if len(slots) != 1:
        raise Failed(f'{where}: the transaction has {len(slots)} "pold" outputs, not exactly one')
    if slots[0] != a.commitment:
        raise Failed(
            f"{where}: the transaction carries {_short(slots[0])} in the {p.slot} slot, not the "
            f"commitment {_short(a.commitment)} it names"
        )
    if a.commitment not in known:
        raise Failed(
            f"{where}: block {a.block} carries commitment {_short(a.commitment)}, which is not on "
            "this proof's chain"
        )
    scripts = {s for _v, s in tx.outputs}
    if tx.is_coinbase and not scripts & p.pool.coinbase_scripts:
        raise Failed(f"{where}: the coinbase of block {a.block} pays none of the pool's scripts")
    if not tx.is_coinbase and not scripts & p.pool.anchor_scripts:
        raise Failed(f"{where}: the transaction pays none of the pool's anchor scripts")
    work = 2**256 // (target + 1)
    return AnchorFact(a, known[a.commitment], work, tx.txid[::-1].hex())


# -- a work proof ("kind": "work"): the delivered hashrate -----------------------------------------
#
# A Merkle-sum tree over the period's accepted shares sorted by header hash; each node is
# (hash, work, lo, hi) packed in 112 bytes (base64 in the proof), a leaf H(0x10 || hash ||
# weight || tag) with lo = hi = its hash, a parent H(0x11 || left || right). The sample: draw
# i is H(0x12 || beacon || root || i) mod the root's work, the beacon the hash of the block
# `depth` blocks after the block anchoring the period's commitment (which commits to the work
# root through the published inputs).

MAX_SAMPLES = 10_000
MAX_HEADERS = 100_000
MAX_WORK_NODES = 64 * MAX_SAMPLES
MAX_FLEET_TAGS = 100_000
#: How many periods before P a share's coinbase may carry the head of: a job carries the
#: chain's head when it is made, which during P is P-1's commitment (or P-2's, before P-1
#: is settled); three leaves a margin for a late settlement.
MAX_LINKS_BACK = 3
MAX_JOB_BYTES = 10_000
MTP_SLACK_S = 7200  # a block's time may run this far ahead of the clock
DIFF1 = 0xFFFF * 2**208
TH = 10**12
WORK_NODE_BYTES = 112
VERSION_ROLLING_MASK = 0x1FFFE000  # BIP310: the bits a miner may roll (poold's default mask)
GENESIS_LINK = bytes(32)  # the "previous commitment" of a chain's first period
_B64 = re.compile(r"[A-Za-z0-9+/]{149}[AQgw]==")  # 112 bytes, canonical (the padding bits 0)


@dataclass(frozen=True)
class WorkNode:
    hash: bytes
    work: int
    lo: bytes
    hi: bytes

    def pack(self) -> bytes:
        return self.hash + self.work.to_bytes(16, "big") + self.lo + self.hi


@dataclass(frozen=True)
class WorkSample:
    where: str
    index: int
    hash: bytes  # big-endian
    weight: int
    tag: bytes
    job_key: str
    prev_hash: bytes
    version: int
    bits: int
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]
    en1: bytes
    en2: bytes
    ntime: int
    nonce: int
    share_version: int


@dataclass(frozen=True)
class WorkProof:
    pool: Pool
    inputs: dict[str, object]
    inputs_json: _Obj
    root: Node  # the statements' root
    previous: bytes
    commitment: bytes
    links: tuple[Link, ...]
    work_root: WorkNode
    leaves: int
    k: int
    depth: int
    headers: tuple[bytes, ...]
    tips: tuple[int, int]
    anchor: Anchor
    anchor_at: int
    fleet_tags: frozenset[bytes]
    nodes: dict[tuple[int, int], WorkNode]
    samples: tuple[WorkSample, ...]

    slot = "statement"


def _packed_node(v: object, where: str) -> WorkNode:
    if type(v) is not str or not _B64.fullmatch(v):
        raise Failed(f"{where} must be a packed node: {WORK_NODE_BYTES} bytes in base64")
    raw = base64.b64decode(v, validate=True)
    if len(raw) != WORK_NODE_BYTES:
        raise Failed(f"{where} must be a packed node: {WORK_NODE_BYTES} bytes in base64")
    node = WorkNode(raw[:32], int.from_bytes(raw[32:48], "big"), raw[48:80], raw[80:])
    if node.lo > node.hi:
        raise Failed(f"{where}: its smallest hash is above its largest")
    return node


def _link(item: object, where: str) -> Link:
    o = _obj(item, where, ("period_start", "root", "inputs_digest", "previous", "commitment"))
    return Link(
        str(_whole(o["period_start"], f"{where}.period_start", 0)),
        _node(o["root"], f"{where}.root", len(SUMMED)),
        _hex(o["inputs_digest"], f"{where}.inputs_digest", 32),
        _hex(o["previous"], f"{where}.previous", 32),
        _hex(o["commitment"], f"{where}.commitment", 32),
    )


def _sample(v: object, where: str) -> WorkSample:
    o = _obj(v, where, ("index", "leaf", "job", "share"))
    leaf = _obj(o["leaf"], f"{where}.leaf", ("hash", "weight", "tag"))
    job = _obj(o["job"], f"{where}.job", ("key", "prev_hash", "version", "bits", "coinb1",
                                           "coinb2", "branch"))  # fmt: skip
    share = _obj(o["share"], f"{where}.share", ("en1", "en2", "ntime", "nonce", "version"))
    branch = _list(job["branch"], f"{where}.job.branch", MAX_BRANCH)
    u32 = (0, 2**32 - 1)
    return WorkSample(
        where=where,
        index=_whole(o["index"], f"{where}.index", 0, 2**64),
        hash=_hex(leaf["hash"], f"{where}.leaf.hash", 32),
        weight=_whole(leaf["weight"], f"{where}.leaf.weight", 1, 2**128 - 1),
        tag=_hex(leaf["tag"], f"{where}.leaf.tag", 32),
        job_key=_plain(job["key"], f"{where}.job.key"),
        prev_hash=_hex(job["prev_hash"], f"{where}.job.prev_hash", 32),
        version=_whole(job["version"], f"{where}.job.version", *u32),
        bits=_whole(job["bits"], f"{where}.job.bits", *u32),
        coinb1=_hex(job["coinb1"], f"{where}.job.coinb1", most=MAX_JOB_BYTES),
        coinb2=_hex(job["coinb2"], f"{where}.job.coinb2", most=MAX_JOB_BYTES),
        branch=tuple(_hex(b, f"{where}.job.branch[{i}]", 32) for i, b in enumerate(branch)),
        en1=_hex(share["en1"], f"{where}.share.en1", most=32),
        en2=_hex(share["en2"], f"{where}.share.en2", most=32),
        ntime=_whole(share["ntime"], f"{where}.share.ntime", *u32),
        nonce=_whole(share["nonce"], f"{where}.share.nonce", *u32),
        share_version=_whole(share["version"], f"{where}.share.version", *u32),
    )


def parse_work(doc: _Obj) -> WorkProof:
    """The work proof, every field to its exact type, or Failed naming it."""
    keys = ("version", "kind", "pool", "period", "links", "work", "headers", "tips", "anchor",
            "fleet_tags", "nodes", "samples")  # fmt: skip
    doc = _obj(doc, "the proof", keys)
    p = _obj(doc["pool"], "pool", ("coinbase_scripts", "anchor_scripts", "anchor_interval_s"))
    pool = Pool(
        _scripts(p["coinbase_scripts"], "pool.coinbase_scripts"),
        _scripts(p["anchor_scripts"], "pool.anchor_scripts"),
        _maybe(p["anchor_interval_s"], lambda v: _whole(v, "pool.anchor_interval_s", 60, 86400)),
    )
    period = _obj(doc["period"], "period", ("inputs", "root", "previous", "commitment"))
    inputs_json, inputs = _inputs(period["inputs"], "statement")
    for key in ("work_root", "work", "work_leaves"):
        if key not in inputs:
            raise Failed(f"period.inputs lacks {key!r}: the period committed to no work root")
    links = tuple(
        _link(item, f"links[{i}]")
        for i, item in enumerate(_list(doc["links"], "links", MAX_LINKS_BACK))
    )
    w = _obj(doc["work"], "work", ("root", "leaves", "k", "depth"))
    headers = tuple(
        _hex(h, f"headers[{i}]", 80)
        for i, h in enumerate(_list(doc["headers"], "headers", MAX_HEADERS))
    )
    tips = _list(doc["tips"], "tips", 2)
    if len(tips) != 2:
        raise Failed("tips must be [first, last]: the headers the period's shares build on")
    a = _obj(doc["anchor"], "anchor", ("at", "evidence"))
    tags = _list(doc["fleet_tags"], "fleet_tags", MAX_FLEET_TAGS)
    nodes: dict[tuple[int, int], WorkNode] = {}
    for i, item in enumerate(_list(doc["nodes"], "nodes", MAX_WORK_NODES)):
        where = f"nodes[{i}]"
        entry = _list(item, where, 3)
        if len(entry) != 3:
            raise Failed(f"{where} must be [level, index, packed node]")
        at = (_whole(entry[0], f"{where}[0]", 0, 63), _whole(entry[1], f"{where}[1]", 0, 2**64))
        if at in nodes:
            raise Failed(f"{where} repeats the node at level {at[0]}, index {at[1]}")
        nodes[at] = _packed_node(entry[2], f"{where}[2]")
    samples = tuple(
        _sample(s, f"samples[{i}]")
        for i, s in enumerate(_list(doc["samples"], "samples", MAX_SAMPLES))
    )
    return WorkProof(
        pool=pool,
        inputs=inputs,
        inputs_json=inputs_json,
        root=_node(period["root"], "period.root", len(SUMMED)),
        previous=_hex(period["previous"], "period.previous", 32),
        commitment=_hex(period["commitment"], "period.commitment", 32),
        links=links,
        work_root=_packed_node(w["root"], "work.root"),
        leaves=_whole(w["leaves"], "work.leaves", 0, 2**64),
        k=_whole(w["k"], "work.k", 1, MAX_SAMPLES),
        depth=_whole(w["depth"], "work.depth", 1, 1000),
        headers=headers,
        tips=(
            _whole(tips[0], "tips[0]", 0, MAX_HEADERS),
            _whole(tips[1], "tips[1]", 0, MAX_HEADERS),
        ),
        anchor=_anchor(a["evidence"], "anchor.evidence"),
        anchor_at=_whole(a["at"], "anchor.at", 0, MAX_HEADERS),
        fleet_tags=frozenset(_hex(t, f"fleet_tags[{i}]", 32) for i, t in enumerate(tags)),
        nodes=nodes,
        samples=samples,
    )


def work_parent(left: WorkNode, right: WorkNode) -> WorkNode:
    return WorkNode(
        sha(b"\x11", left.pack(), right.pack()), left.work + right.work, left.lo, right.hi
    )


def work_leaf(s: WorkSample) -> WorkNode:
    return WorkNode(
        sha(b"\x10", s.hash, s.weight.to_bytes(16, "big"), s.tag), s.weight, s.hash, s.hash
    )


def level_widths(n: int) -> list[int]:
    widths = [max(n, 1)]
    while widths[-1] > 1:
        widths.append((widths[-1] + 1) // 2)
    return widths


def work_draw(beacon: bytes, root: bytes, i: int, total: int) -> int:
    return int.from_bytes(sha(b"\x12", beacon, root, i.to_bytes(8, "big")), "big") % total


def climb_work(p: WorkProof, s: WorkSample, r: int) -> None:
    """The sample's path: every sibling there, `left.max < right.min` at each node, the climb
    reaching the root, and the draw inside the leaf's cumulative range."""
    node, index, before = work_leaf(s), s.index, 0
    where = f"{s.where} (share {s.hash.hex()[:16]}…)"
    if index >= p.leaves:
        raise Failed(f"{where}: leaf {index} lies beyond the tree's {p.leaves} leaves")
    for level, width in enumerate(level_widths(p.leaves)[:-1]):
        sib_at = index ^ 1
        if sib_at < width:
            sib = p.nodes.get((level, sib_at))
            if sib is None:
                raise Failed(f"{where}: the proof lacks its sibling at level {level}")
            left, right = (sib, node) if sib_at < index else (node, sib)
            if not left.hi < right.lo:
                raise Failed(
                    f"{where}: the tree's order breaks at level {level + 1} (left max not below "
                    "right min): a share counted twice or out of place"
                )
            if sib_at < index:
                before += sib.work
            if left.work + right.work >= 2**128:
                raise Failed(
                    f"{where}: the work above level {level} does not fit a node (over 2^128 hashes)"
                )
            node = work_parent(left, right)
        index //= 2
    if node != p.work_root:
        raise Failed(f"{where}: its path does not climb to the committed work root")
    if not before <= r < before + s.weight:
        raise Failed(f"{where}: the draw {r} does not fall in this leaf's range")


def check_share(p: WorkProof, s: WorkSample, allowed: set[bytes], tips: dict[bytes, int]) -> None:
    """Rebuild the sampled share's header and bind it to this pool, this time and its weight."""
    where = f"{s.where} (share {s.hash.hex()[:16]}…, job {s.job_key})"
    coinbase = s.coinb1 + s.en1 + s.en2 + s.coinb2
    try:
        tx = parse_tx(coinbase)
    except ValueError as exc:
        raise Failed(f"{where}: its coinbase is not a transaction: {exc}") from None
    if not tx.is_coinbase:
        raise Failed(f"{where}: its coinbase has no null prevout")
    if (s.share_version ^ s.version) & ~VERSION_ROLLING_MASK:
        raise Failed(f"{where}: its version differs from its job's outside the rolling bits")
    key = bytes.fromhex(s.job_key) if re.fullmatch(r"(?:[0-9a-f]{2})+", s.job_key) else b""
    if not key or key not in tx.inputs[0][1]:
        raise Failed(f"{where}: its coinbase does not carry its job's key")
    header = (
        s.share_version.to_bytes(4, "little") + s.prev_hash + fold(tx.txid, 0, s.branch)
        + s.ntime.to_bytes(4, "little") + s.bits.to_bytes(4, "little")
        + s.nonce.to_bytes(4, "little")
    )  # fmt: skip
    if sha256d(header)[::-1] != s.hash:
        raise Failed(f"{where}: its rebuilt header does not hash to the leaf's hash")
    target = min(DIFF1 * 2**32 // s.weight, 2**256 - 1)
    if int.from_bytes(s.hash, "big") > target:
        raise Failed(f"{where}: its hash misses the target of its weight {s.weight} (forged work)")
    if s.tag not in p.fleet_tags:
        raise Failed(f"{where}: its account tag is not one of the fleet's")
    if not {script for _v, script in tx.outputs} & p.pool.coinbase_scripts:
        raise Failed(f"{where}: its coinbase pays none of the pool's scripts (another pool's work)")
    try:
        slots = carried(tx, "statement")
    except ValueError as exc:
        raise Failed(f"{where}: its coinbase {exc}") from None
    if allowed:
        if len(slots) != 1 or slots[0] not in allowed:
            raise Failed(
                f"{where}: its coinbase carries no commitment of the {len(allowed)} period(s) "
                "just before this one (work done before the period, or for another chain)"
            )
    elif slots and slots[0] is not None:
        raise Failed(f"{where}: its coinbase carries a commitment, but this chain has none yet")
    if s.prev_hash not in tips:
        raise Failed(
            f"{where}: it builds on {s.prev_hash[::-1].hex()[:16]}…, not on a block of the "
            "period's chain (work from another time)"
        )


def header_time(h: bytes) -> int:
    return int.from_bytes(h[68:72], "little")


def check_headers(p: WorkProof) -> tuple[int, bytes]:
    """The header chain: linked, each meeting its own target; the tips inside the period, the
    anchor after them and the beacon `depth` blocks after the anchor. Returns (work, beacon)."""
    hs = p.headers
    first, last = p.tips
    if not first <= last < p.anchor_at or p.anchor_at + p.depth >= len(hs):
        raise Failed(
            f"the headers must run tips {first}..{last}, then the anchor at {p.anchor_at}, "
            f"then {p.depth} more to the beacon; the proof has {len(hs)} headers"
        )
    work = 0
    for i, h in enumerate(hs):
        digest = sha256d(h)
        try:
            target = target_of(int.from_bytes(h[72:76], "little"))
        except ValueError as exc:
            raise Failed(f"headers[{i}]: {exc}") from None
        if int.from_bytes(digest, "little") > target:
            raise Failed(f"headers[{i}] misses its own target (no proof of work)")
        if i and h[4:36] != sha256d(hs[i - 1]):
            raise Failed(f"headers[{i}] does not build on headers[{i - 1}]")
        work += 2**256 // (target + 1)
    start, end = p.inputs["period_start"], p.inputs["period_end"]
    assert isinstance(start, int) and isinstance(end, int)
    for i in range(first + 1, last + 1):
        if not start - MTP_SLACK_S <= header_time(hs[i]) <= end + MTP_SLACK_S:
            raise Failed(f"headers[{i}], a tip of the period's shares, is not from the period")
    if header_time(hs[p.anchor_at]) < start:
        raise Failed("the anchoring block is older than the period")
    if p.anchor.header != hs[p.anchor_at]:
        raise Failed(f"the anchor's header is not headers[{p.anchor_at}]")
    return work, sha256d(hs[p.anchor_at + p.depth])


@dataclass
class WorkVerdict:
    proof: WorkProof
    lines: list[str]


def verify_work(p: WorkProof, opts: Options | None = None) -> WorkVerdict:
    """Every check of a work proof; Failed (naming the share) at the first that fails."""
    opts = opts or Options()
    if link_commitment(p.root, inputs_digest(p.inputs_json), p.previous) != p.commitment:
        raise Failed("the period's commitment is not H(root, sums, inputs, previous)")
    if p.inputs["work_root"] != p.work_root.hash.hex():
        raise Failed("the work root is not the one the period's inputs commit to")
    if p.inputs["work"] != p.work_root.work or p.inputs["work_leaves"] != p.leaves:
        raise Failed("the work root's work or leaf count is not what the period's inputs say")
    prev = GENESIS_LINK
    for link in p.links:
        if link_commitment(link.root, link.inputs_digest, link.previous) != link.commitment:
            raise Failed(f"the commitment of the period starting {link.label} does not hash right")
        if prev != GENESIS_LINK and link.previous != prev:
            raise Failed(f"the links break at the period starting {link.label}")
        prev = link.commitment
    if p.links and p.links[-1].commitment != p.previous:
        raise Failed("the links do not lead to this period's previous commitment")
    if not p.links and p.previous != GENESIS_LINK:
        raise Failed("the proof gives none of the links before this period")
    allowed = {link.commitment for link in p.links}
    fact = check_anchor(p.anchor, p, {p.commitment: 0})  # type: ignore[arg-type]
    chain_work, beacon = check_headers(p)
    tips = {sha256d(p.headers[i]): i for i in range(p.tips[0], p.tips[1] + 1)}
    total = p.work_root.work
    if total == 0:
        raise Failed("the work root commits to no work: nothing was delivered")
    if len(p.samples) != p.k:
        raise Failed(f"the proof has {len(p.samples)} samples for k = {p.k} draws")
    for i, s in enumerate(p.samples):
        r = work_draw(beacon, p.work_root.hash, i, total)
        climb_work(p, s, r)
        check_share(p, s, allowed, tips)
    start, end = p.inputs["period_start"], p.inputs["period_end"]
    delivered = p.inputs["delivered_th_per_s"]
    assert isinstance(start, int) and isinstance(end, int) and isinstance(delivered, Fraction)
    th_s = Fraction(total, TH)
    claimed = delivered * (end - start)
    if claimed != th_s:
        ratio = f" ({float(claimed / th_s):.2%} of it)" if th_s else ""
        raise Failed(
            f"the statement's delivered TH·s, {float(claimed):.6g}, is not the work the root "
            f"commits, {float(th_s):.6g} TH·s{ratio}: delivery is misstated"
        )
    real = 0.01 ** (1 / p.k)
    lines = [
        f"ok: {p.k}/{p.k} valid: with 99 % confidence at least {100 * real:.1f} % of the "
        f"committed work is real ({total} hashes, {float(th_s):.6g} TH·s in {p.leaves} shares)",
        "delivered: the statement's delivered TH·s equals the root's work exactly",
    ]
    where = f"block {p.anchor.block} (height {p.anchor.height})"
    after = {sha256d(h)[::-1].hex() for h in p.headers[p.anchor_at + p.depth :]}
    if opts.blocks & after:
        lines.append(
            f"beacon: {p.depth} block(s) after the anchor in {where}; the block you gave "
            "(--block) is at or after the beacon, so the beacon is on your chain"
        )
    elif fact.work >= opts.min_work:
        lines.append(
            f"beacon: {p.depth} block(s) after the anchor in {where}; its header's proof of "
            f"work is 2^{math.log2(fact.work):.1f} hashes (--block or --node tie it to a chain)"
        )
    else:
        lines.append(
            "proof of work trivial (test chain): the beacon can be re-rolled for free, so the "
            f"sample shows nothing until --block names a block on the chain: anchor {where}"
        )
    lines.append(
        f"note: the anchor is taken as the first to carry this commitment; the headers carry "
        f"2^{math.log2(chain_work):.1f} hashes of work"
    )
    return WorkVerdict(p, lines)


# -- a bitcoind the user trusts (--node) -----------------------------------------------------------


class Rpc:
    """bitcoind JSON-RPC over HTTP: the URL's user and password, if any, as Basic auth."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Failed(f"--node {url!r} is not an http(s) URL")
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        self.shown = self.url  # never the password
        user = urllib.parse.unquote(parts.username or "")
        password = urllib.parse.unquote(parts.password or "")
        self.headers = {"Content-Type": "application/json"}
        if user or password:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.timeout_s = timeout_s

    def call(self, method: str, *params: object) -> object:
        body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)})
        req = urllib.request.Request(self.url, body.encode(), self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read(MAX_FILE_BYTES + 1)
        except urllib.error.HTTPError as exc:  # bitcoind answers errors with HTTP 404/500
            raw = exc.read(MAX_FILE_BYTES + 1)
            if exc.code == 401:
                raise Failed(f"--node {self.shown} refused the user/password (401)") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise Failed(f"--node {self.shown} could not be reached for {method}: {exc}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise Failed(f"--node {self.shown} answered {method} with no JSON") from None
        if not isinstance(reply, dict):
            raise Failed(f"--node {self.shown} answered {method} with no JSON-RPC reply")
        err = reply.get("error")
        if err:
            raise NodeRefused(method, err.get("message") if isinstance(err, dict) else str(err))
        return reply.get("result")


class NodeRefused(Failed):
    def __init__(self, method: str, message: object) -> None:
        super().__init__(f"your node refused {method}: {message}")


def _node_int(v: object, what: str) -> int:
    if type(v) is not int:
        raise Failed(f"your node answered {what} with {_what(v)}")
    return v


def node_check(rpc: Rpc, facts: list[AnchorFact]) -> None:
    """Each anchor's block on the node's best chain, at its height; its confirmations."""
    for f in facts:
        a = f.anchor
        try:
            header = rpc.call("getblockheader", a.block, True)
        except NodeRefused:
            raise Failed(
                f"{a.where}: your node does not know block {a.block}: it is not on its chain "
                "(or your node has not synced that far)"
            ) from None
        if not isinstance(header, dict):
            raise Failed("your node answered getblockheader with no object")
        height = _node_int(header.get("height"), "getblockheader")
        if height != a.height:
            raise Failed(
                f"{a.where}: block {a.block} is at height {height} on your node, not {a.height}"
            )
        if rpc.call("getblockhash", height) != a.block:
            raise Failed(f"{a.where}: block {a.block} is not on your node's best chain (orphaned)")
        confirmations = _node_int(header.get("confirmations"), "getblockheader")
        f.node = f"on your node's best chain, {confirmations} confirmations"


@dataclass
class Scan:
    first: int
    last: int
    pool_anchors: int = 0
    # (height, block, txid, place in the chain) of this chain's anchors the node holds
    found: list[tuple[int, str, str, int]] = field(default_factory=list)
    unattributed: list[str] = field(default_factory=list)
    after_cut: int = 0  # the pool's anchors above the proof's cut: not judged


def _spends(rpc: Rpc, tx: Tx, scripts: frozenset[bytes]) -> bool | None:
    """Whether an input of `tx` spends a coin of one of `scripts` (None: the node cannot
    say)."""
    for prevout, _sig in tx.inputs:
        try:
            raw = rpc.call("getrawtransaction", prevout[:32][::-1].hex(), 0)
        except NodeRefused:
            return None  # no transaction index, most likely
        try:
            prev = parse_tx(bytes.fromhex(str(raw))) if isinstance(raw, str) else None
        except ValueError:
            prev = None
        if prev is None:
            return None
        n = int.from_bytes(prevout[32:], "little")
        if n < len(prev.outputs) and prev.outputs[n][1] in scripts:
            return True
    return False


def node_scan(
    rpc: Rpc, p: Proof, known: dict[bytes, int], facts: list[AnchorFact], blocks: int
) -> Scan:
    """The pool's anchors in the node's last `blocks` blocks (its coinbases with a poold output
    paying one of its scripts; transactions with one paying one of its anchor scripts from a
    coin of one): from the first block that anchors this proof's chain to the block the proof
    was cut at, each must carry a commitment of this chain or the one just before it. After
    the cut the pool anchors commitments this proof cannot know (a newer proof checks them)."""
    assert p.pool is not None or not facts
    tip = _node_int(rpc.call("getblockcount"), "getblockcount")
    first = max(0, tip - blocks + 1)
    scan = Scan(first, tip)
    allowed = {*known, p.previous}
    earliest = min((f.anchor.height for f in facts), default=None)
    seen: list[tuple[int, str, str, bytes | None]] = []  # every pool anchor, in height order
    for height in range(first, tip + 1):
        block_hash = rpc.call("getblockhash", height)
        raw = rpc.call("getblock", block_hash, 0)
        try:
            _header, txs = parse_block(bytes.fromhex(str(raw)))
        except ValueError as exc:
            raise Failed(f"your node's block {block_hash} does not parse: {exc}") from None
        for i, tx in enumerate(txs):
            try:
                slots = carried(tx, p.slot)
            except ValueError:
                continue  # somebody's malformed "pold" output: not the pool's
            if len(slots) != 1 or p.pool is None:
                continue
            scripts = {s for _v, s in tx.outputs}
            if i == 0:
                ours = bool(scripts & p.pool.coinbase_scripts)
            elif scripts & p.pool.anchor_scripts:
                spent = _spends(rpc, tx, p.pool.anchor_scripts)
                if spent is None:
                    scan.unattributed.append(tx.txid[::-1].hex())
                ours = bool(spent)
            else:
                ours = False
            if ours:
                seen.append((height, str(block_hash), tx.txid[::-1].hex(), slots[0]))
    scan.pool_anchors = len(seen)
    for height, block_hash, txid, value in seen:
        if value is not None and value in known:
            scan.found.append((height, block_hash, txid, known[value]))
            earliest = height if earliest is None else min(earliest, height)
    if earliest is None:
        return scan
    last = tip if p.best_height is None else p.best_height
    scan.after_cut = sum(height > last for height, *_rest in seen)
    for height, block_hash, txid, value in seen:
        if earliest <= height <= last and value is not None and value not in allowed:
            raise Failed(
                f"equivocation: the pool anchored commitment {value.hex()[:16]}… in block "
                f"{block_hash} (height {height}, transaction {txid}), which is not on this "
                "proof's chain: it has shown someone another history"
            )
    return scan


# -- the verdict ---------------------------------------------------------------------------------


@dataclass
class Options:
    node: str | None = None
    blocks: frozenset[str] = frozenset()
    min_work: int = DEFAULT_MIN_WORK
    require_anchor: bool = False
    grace_s: int | None = None
    scan_blocks: int = DEFAULT_SCAN_BLOCKS
    now: float | None = None


@dataclass
class Verdict:
    proof: Proof
    facts: list[AnchorFact]
    lines: list[str]


def _age(seconds: float) -> str:
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _where(f: AnchorFact) -> str:
    a = f.anchor
    what = "its coinbase" if a.type == "coinbase" else f"transaction {f.txid}"
    place = (
        "this period's commitment" if f.place == 0 else f"the commitment of later link {f.place}"
    )
    return f"block {a.block} (height {a.height}) carries {place} in {what}"


def verify(p: Proof, opts: Options | None = None) -> Verdict:
    """Every check on a parsed proof; the lines of the verdict (Failed at the first failure)."""
    opts = opts or Options()
    check_tree(p)
    known = check_chain(p)
    if p.kind == "credit":
        check_credit(p)
    else:
        check_rules(p)
    facts = [check_anchor(a, p, known) for a in p.anchors]
    for f in facts:
        if p.best_height is not None and f.anchor.height > p.best_height:
            raise Failed(
                f"{f.anchor.where}: at height {f.anchor.height}, above the best block "
                f"{p.best_height} the proof says it was cut at"
            )
    if p.kind == "credit":
        what = f"{p.name}'s credit of {p.inputs['key']}"
    else:
        what = f"{p.name}'s line of the period starting {p.inputs['period_start']}"
    lines = [
        f"ok: {what} is in the committed root {p.commitment.hex()[:16]}… and follows from its "
        f"inputs; the chain runs {len(p.chain)} link(s) on to head {p.head.hex()[:16]}…"
    ]
    shared = make_good_share(p) if p.kind == "statement" else None
    if shared is not None:
        lines.append(
            f"make-good: delivery was under the threshold; the shortfall is worth {shared[0]} "
            f"sat at the network's hashprice, and this holder's part is {shared[1]} sat (or "
            "1 more by the largest remainder), posted from the operator's account"
        )
    rpc = Rpc(opts.node) if opts.node else None
    scan = None
    if rpc is not None:
        node_check(rpc, facts)
        scan = node_scan(rpc, p, known, facts, opts.scan_blocks)
    for f in facts:
        f.given = f.anchor.block in opts.blocks
        if f.node:
            lines.append(f"anchored: {_where(f)}; {f.node}")
        elif f.given:
            lines.append(f"anchored: {_where(f)}; the block hash you gave (--block)")
        elif f.work >= opts.min_work:
            lines.append(
                f"anchored: {_where(f)}; its header's proof of work is 2^{math.log2(f.work):.1f} "
                "hashes (costly; --node checks it is on the best chain)"
            )
        else:
            lines.append(
                "proof of work trivial (test chain): only --node or --block establishes "
                f"anything: {_where(f)}, a header of 2^{math.log2(f.work):.1f} hashes"
            )
    for given in sorted(opts.blocks - {f.anchor.block for f in facts}):
        lines.append(f"note: block {given} (--block) is not among this proof's anchors")
    if scan is not None:
        for height, block_hash, txid, place in scan.found:
            if not any(f.txid == txid for f in facts):
                which = (
                    "this period's commitment"
                    if place == 0
                    else f"the commitment of later link {place}"
                )
                lines.append(
                    f"anchored: block {block_hash} (height {height}) carries {which} in "
                    f"transaction {txid}; found on your node's best chain (not in the proof)"
                )
        lines.append(
            f"node: blocks {scan.first}..{scan.last} hold {scan.pool_anchors} anchor(s) of the "
            "pool, every one up to the cut on this proof's chain or before it"
            + (
                f"; {scan.after_cut} after the cut (a newer proof checks those)"
                if scan.after_cut
                else ""
            )
        )
        if p.best_height is not None and p.best_block is not None:
            gap = scan.last - p.best_height
            lines.append(
                f"node: this proof was cut at height {p.best_height}, {gap} block(s) below your "
                "node's tip"
                + ("; the pool's anchors after it are not judged (a fresh proof judges them)"
                   if gap > 0 else "")
            )  # fmt: skip
            cut_hash = rpc.call("getblockhash", p.best_height) if gap >= 0 else None
            if cut_hash != p.best_block:
                lines.append(
                    f"note: the block the proof says it was cut at, {p.best_block}, is not "
                    "on your node's best chain (a reorg since, or a made-up cut)"
                )
        for txid in scan.unattributed:
            lines.append(
                f"note: transaction {txid} pays the pool's anchor script but your node cannot "
                "show what it spends (start it with -txindex=1): not counted as the pool's"
            )
    now = time.time() if opts.now is None else opts.now
    if p.best_height is not None and p.best_block is not None:
        at = "" if p.cut_time is None else f", {_age(max(0.0, now - p.cut_time))} ago"
        lines.append(f"cut: at the pool's best block {p.best_height} ({p.best_block[:16]}…){at}")
    anchored = bool(facts) or bool(scan and scan.found)
    if not anchored:
        grace = opts.grace_s
        if grace is None:
            interval = p.pool.anchor_interval_s if p.pool is not None else None
            grace = MAX_GRACE_S if interval is None else min(2 * interval, MAX_GRACE_S)
        ended = p.ended
        if opts.require_anchor:
            raise Failed("not anchored: the proof carries no anchor and --require-anchor was given")
        if ended is not None and now - ended > grace:
            raise Failed(
                f"not anchored: the period ended {_age(now - ended)} ago, past the "
                f"{_age(grace)} grace, and the proof carries no anchor (a stale proof, or its "
                "anchors were dropped)"
            )
        lines.append("not anchored on chain yet: no anchor carries these commitments")
    return Verdict(p, facts, lines)


def check(raw: bytes, opts: Options | None = None) -> Verdict | WorkVerdict:
    doc = load_json(raw)
    if isinstance(doc, _Obj) and doc.get("kind") == "work" and doc.get("version") == VERSION:
        if type(doc.get("version")) is not int:
            raise Failed(f"version must be {VERSION}, not {_what(doc['version'])}")
        return verify_work(parse_work(doc), opts)
    return verify(parse_doc(doc), opts)


def _work(text: str) -> int:
    m = re.fullmatch(r"\s*(?:2\s*(?:\^|\*\*)\s*([0-9]{1,3})|([0-9]{1,80}))\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of hashes, e.g. 2^75")
    return 2 ** int(m.group(1)) if m.group(1) else int(m.group(2))


def _hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: a block hash is 64 hex digits")
    return text.lower()


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="verify.py", description="Check a poold proof without trusting the pool."
    )
    ap.add_argument("proof", help="the proof file (JSON), or - for standard input")
    ap.add_argument(
        "--node", help="bitcoind JSON-RPC URL you trust, e.g. http://user:pass@127.0.0.1:8332"
    )
    ap.add_argument(
        "--block",
        action="append",
        type=_hash,
        default=[],
        help="a block hash you got elsewhere (repeatable)",
    )
    ap.add_argument(
        "--min-work",
        type=_work,
        default=DEFAULT_MIN_WORK,
        help="hashes a header's proof of work must reach to count (default 2^75)",
    )
    ap.add_argument(
        "--require-anchor", action="store_true", help="fail when the proof carries no anchor"
    )
    ap.add_argument(
        "--anchor-grace",
        type=int,
        metavar="SECONDS",
        help="fail without an anchor once the period ended this long ago (default: twice "
        "the pool's anchor cadence, at most 2 days)",
    )
    ap.add_argument(
        "--scan-blocks",
        type=int,
        default=DEFAULT_SCAN_BLOCKS,
        help="with --node: how many recent blocks to scan for the pool's anchors (default 144)",
    )
    return ap.parse_args(argv)  # fmt: skip


def run(argv: list[str]) -> tuple[int, list[str]]:
    """What `main` prints and returns; a failed check or unreadable input is one FAILED line."""
    args = _args(argv)
    opts = Options(
        node=args.node,
        blocks=frozenset(args.block),
        min_work=args.min_work,
        require_anchor=args.require_anchor,
        grace_s=args.anchor_grace,
        scan_blocks=max(1, args.scan_blocks),
    )
    try:
        if args.proof == "-":
            raw = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with open(args.proof, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return 1, [f"FAILED: the proof file cannot be read: {exc.strerror or exc}"]
    try:
        return 0, check(raw, opts).lines
    except Failed as exc:
        return 1, [f"FAILED: {exc}"]


def main(argv: list[str]) -> int:
    try:
        code, lines = run(argv)
    except Exception as exc:  # reported: a bug of this verifier is still one verdict line
        code, lines = 1, [f"FAILED: the verifier could not check this proof ({exc!r})"]
    for line in lines:
        print(line)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
