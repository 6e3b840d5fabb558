"""The share log's record format, in one place: framing, the binary share record, the block
record, and where each field lies (offsets derived from the struct, for the Numba reader).

Framing per record: u32 length, u32 crc32(payload), payload (at most `MAX_RECORD` bytes).
A payload starting with 0x01 is a binary share record: the fixed part `SHARE` (fields in
`SHARE_FIELDS` order), then four u8 lengths and the variable fields en2, job, account, worker,
then (flag bit 1, `FLAG_HASH`) the share's 32-byte header hash; records written before
header hashes lack it and still read. A payload starting with `{` is a JSON object: a job
record (`"t": "job"`: what rebuilds a share's header, `JobRecord`), a block record (`"t":
"block"`), a worker record (`"t": "worker"`: user agent and best share), rejected-share
counts (`"t": "rejects"`), a heartbeat (`"t": "beat"`: every share and block before
`through` is written before it), or a rare event.
Imports only the standard library and orjson.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import asdict, dataclass
from typing import Any

import orjson

FRAME = struct.Struct("<II")  # length, crc32 of the payload
MAX_RECORD = 1 << 20
SHARE_TAG = 0x01
FLAG_BLOCK = 0x01  # the share found a block
FLAG_HASH = 0x02  # the record ends with the share's 32-byte header hash
HASH_SIZE = 32
#: The fixed part of a binary share record, field by field (name, struct code).
SHARE_LAYOUT: tuple[tuple[str, str], ...] = (
    ("tag", "B"),
    ("flags", "B"),  # bit 0: the share found a block; bit 1: its header hash follows
    ("node", "B"),
    ("ts_ms", "Q"),
    ("height", "I"),
    ("bits", "I"),
    ("diff_num", "Q"),
    ("diff_den", "Q"),
    ("ntime", "I"),
    ("nonce", "I"),
    ("version", "I"),
    ("en1", "4s"),
)
SHARE_FIELDS = tuple(name for name, _code in SHARE_LAYOUT)
SHARE = struct.Struct("<" + "".join(code for _name, code in SHARE_LAYOUT))
SHARE_HEAD = struct.Struct(SHARE.format + "BBBB")  # + lengths of en2, job, account, worker
#: Byte offset and width of each fixed field inside a share payload.
FIELD_AT = {
    name: struct.calcsize("<" + "".join(c for _n, c in SHARE_LAYOUT[:i]))
    for i, (name, _code) in enumerate(SHARE_LAYOUT)
}
FIELD_SIZE = {name: struct.calcsize("<" + code) for name, code in SHARE_LAYOUT}


class RecordError(ValueError):
    """A CRC-valid payload that does not decode: a writer bug, never skipped silently."""


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One accepted share as the log holds it. `ts_ms`: unix milliseconds of the submit."""

    ts_ms: int
    node: int
    account: str
    worker: str
    job: str
    height: int
    bits: int
    diff_num: int
    diff_den: int
    en1: bytes
    en2: bytes
    ntime: int
    nonce: int
    version: int
    block: bool
    #: The header's sha256d as computed (internal byte order); None in records written
    #: before share records carried it.
    hash: bytes | None = None

    def encode(self) -> bytes:
        return encode_share(
            self.ts_ms,
            self.node,
            self.account,
            self.worker,
            self.job,
            self.height,
            self.bits,
            self.diff_num,
            self.diff_den,
            self.en1,
            self.en2,
            self.ntime,
            self.nonce,
            self.version,
            self.block,
            self.hash or b"",
        )

    def as_dict(self) -> dict[str, object]:
        """The JSON-shaped view readers and tools use (`"t": "share"`, hex for bytes)."""
        out: dict[str, object] = {
            "t": "share",
            "ts": self.ts_ms,
            "node": self.node,
            "account": self.account,
            "worker": self.worker,
            "job": self.job,
            "height": self.height,
            "bits": self.bits,
            "diff_num": self.diff_num,
            "diff_den": self.diff_den,
            "en1": self.en1.hex(),
            "en2": self.en2.hex(),
            "ntime": self.ntime,
            "nonce": self.nonce,
            "version": self.version,
            "block": self.block,
        }
        if self.hash is not None:
            out["hash"] = self.hash[::-1].hex()  # as block hashes are shown: big-endian
        return out


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _hex_field(rec: dict[str, Any], key: str, size: int | None = None) -> bytes:
    v = rec.get(key)
    try:
        out = bytes.fromhex(v) if isinstance(v, str) else None
    except ValueError:
        out = None
    if out is None or (size is not None and len(out) != size):
        want = f"{size} bytes of hex" if size is not None else "hex"
        raise RecordError(f"job record: {key!r} is {v!r}, not {want}")
    return out


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One job as the shares of it need it to be rebuilt into their 80-byte headers: written
    once by a node before the first share of the job it logs. `key` is the job's id: its
    8-byte key in hex (node id, the share log's start number, a counter: `jobs.manager`),
    unique across restarts and nodes, which the shares of the job name. `prev_hash` is in
    header byte order; `branch` the coinbase's merkle branch (internal byte order)."""

    ts_ms: int
    node: int
    key: str
    height: int
    prev_hash: bytes
    version: int
    bits: int
    ntime: int
    coinb1: bytes
    coinb2: bytes
    branch: tuple[bytes, ...]

    def merkle_root(self, en1: bytes, en2: bytes) -> bytes:
        h = _sha256d(self.coinb1 + en1 + en2 + self.coinb2)
        for step in self.branch:
            h = _sha256d(h + step)
        return h

    def header(self, en1: bytes, en2: bytes, ntime: int, nonce: int, version: int) -> bytes:
        """The 80-byte header of a share of this job (`version` with its rolled bits)."""
        return (
            struct.pack("<I", version)
            + self.prev_hash
            + self.merkle_root(en1, en2)
            + struct.pack("<III", ntime, self.bits, nonce)
        )

    def share_header(self, share: ShareRecord) -> bytes:
        """The header `share` (a share of this job) was hashed from."""
        if share.job != self.key:
            raise ValueError(f"share of job {share.job!r} is not of job {self.key!r}")
        return self.header(share.en1, share.en2, share.ntime, share.nonce, share.version)

    def to_json(self) -> dict[str, object]:
        return {
            "t": "job",
            "ts": self.ts_ms,
            "node": self.node,
            "key": self.key,
            "height": self.height,
            "prev_hash": self.prev_hash.hex(),
            "version": self.version,
            "bits": self.bits,
            "ntime": self.ntime,
            "coinb1": self.coinb1.hex(),
            "coinb2": self.coinb2.hex(),
            "branch": [h.hex() for h in self.branch],
        }

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> JobRecord:
        """Read a job record, naming the first field that is missing or of the wrong type."""
        ints = []
        for name, top in (
            ("ts", 1 << 64),
            ("node", 256),
            ("height", 1 << 32),
            ("version", 1 << 32),
            ("bits", 1 << 32),
            ("ntime", 1 << 32),
        ):
            v = rec.get(name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < top:
                raise RecordError(f"job record: {name!r} is {v!r}, not a whole number < {top}")
            ints.append(v)
        key = rec.get("key")
        if not isinstance(key, str) or not key:
            raise RecordError(f"job record: 'key' is {key!r}")
        branch = rec.get("branch")
        if not isinstance(branch, list):
            raise RecordError(f"job record: 'branch' is {branch!r}, not a list")
        steps = tuple(_hex_field({"branch": h}, "branch", 32) for h in branch)
        ts, node, height, version, bits, ntime = ints
        return cls(
            ts,
            node,
            key,
            height,
            _hex_field(rec, "prev_hash", 32),
            version,
            bits,
            ntime,
            _hex_field(rec, "coinb1"),
            _hex_field(rec, "coinb2"),
            steps,
        )


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A block a share found, with the node's answer: `accepted` True, False (refused for
    `reason`) or None (no answer: block following finds out). `ts_ms` is the finding share's
    time (unix milliseconds); `reward_sat` the template's coinbase value."""

    ts_ms: int
    node: int
    height: int
    hash: str
    accepted: bool | None
    reason: str | None
    account: str
    worker: str
    reward_sat: int
    bits: int
    commitment: str | None = None  # the statement commitment its coinbase carries (hex)
    credit_commitment: str | None = None  # the miners' credit commitment it carries (hex)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"t": "block", **asdict(self)}
        out["ts"] = out.pop("ts_ms")
        for key in ("commitment", "credit_commitment"):
            if out[key] is None:
                del out[key]  # records as they were before commitments
        return out

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> BlockRecord:
        """Read a block record, naming the first field that is missing or of the wrong type."""

        def get(key: str, kind: type | tuple[type, ...]) -> Any:
            v = rec.get(key)
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                raise RecordError(f"block record: {key!r} is {v!r}, not {kind}")
            return v

        accepted = rec.get("accepted")
        if accepted not in (True, False, None):
            raise RecordError(f"block record: 'accepted' is {accepted!r}")
        reason = rec.get("reason")
        hashes = {}
        for key in ("commitment", "credit_commitment"):
            v = hashes[key] = rec.get(key)
            if v is not None and not (isinstance(v, str) and len(v) == 64):
                raise RecordError(f"block record: {key!r} is {v!r}")
        return cls(
            ts_ms=get("ts", int),
            node=get("node", int),
            height=get("height", int),
            hash=get("hash", str),
            accepted=accepted,
            reason=None if reason is None else str(reason),
            account=get("account", str),
            worker=get("worker", str),
            reward_sat=get("reward_sat", int),
            bits=get("bits", int),
            commitment=hashes["commitment"],
            credit_commitment=hashes["credit_commitment"],
        )


@dataclass(frozen=True, slots=True)
class Rejects:
    """Shares this node rejected since its previous rejects record, per account and reason
    (written about once a minute when there are any): the ledger adds them up, so reject
    counters survive restarts and cover every node."""

    ts_ms: int
    node: int
    counts: dict[str, dict[str, int]]

    def to_json(self) -> dict[str, object]:
        return {"t": "rejects", "ts": self.ts_ms, "node": self.node, "counts": self.counts}

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> Rejects:
        for key in ("ts", "node"):
            v = rec.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise RecordError(f"rejects record: {key!r} is {v!r}, not a whole number >= 0")
        counts = rec.get("counts")
        ok = isinstance(counts, dict) and all(
            isinstance(a, str)
            and isinstance(by, dict)
            and all(
                isinstance(r, str) and isinstance(n, int) and not isinstance(n, bool) and n > 0
                for r, n in by.items()
            )
            for a, by in counts.items()
        )
        if not ok:
            raise RecordError(f"rejects record: 'counts' is {counts!r}")
        return cls(rec["ts"], rec["node"], counts)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a node knows of a worker beyond its shares, written when a worker's first share
    reaches this process and whenever its best share or user agent changes: `best` is the
    header hash (64 hex digits, big-endian) of its best share here so far; smaller is better."""

    ts_ms: int
    node: int
    account: str
    worker: str
    agent: str
    best: str

    def to_json(self) -> dict[str, object]:
        return {
            "t": "worker",
            "ts": self.ts_ms,
            "node": self.node,
            "account": self.account,
            "worker": self.worker,
            "agent": self.agent,
            "best": self.best,
        }

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> WorkerInfo:
        """Read a worker record, naming the first field that is missing or of the wrong type."""
        for key in ("ts", "node"):
            v = rec.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise RecordError(f"worker record: {key!r} is {v!r}, not a whole number >= 0")
        for key in ("account", "worker", "agent", "best"):
            if not isinstance(rec.get(key), str):
                raise RecordError(f"worker record: {key!r} is {rec.get(key)!r}, not a string")
        best = rec["best"]
        if len(best) != 64 or any(c not in "0123456789abcdef" for c in best):
            raise RecordError(f"worker record: 'best' is {best!r}, not 64 hex digits")
        return cls(rec["ts"], rec["node"], rec["account"], rec["worker"], rec["agent"], best)


@dataclass(frozen=True, slots=True)
class Beat:
    """A heartbeat: written at `ts_ms` by node `node`, it promises that every share and every
    block record of this log with a time before `through_ms` lies before it (a block whose
    record is not written yet holds `through_ms` at its finding time). `final`: the daemon
    stopped cleanly after it; nothing follows until it starts again."""

    ts_ms: int
    node: int
    through_ms: int
    final: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "t": "beat",
            "ts": self.ts_ms,
            "node": self.node,
            "through": self.through_ms,
            "final": self.final,
        }

    @classmethod
    def from_json(cls, rec: dict[str, Any]) -> Beat:
        """Read a heartbeat, naming the first field that is missing or of the wrong type."""
        out = []
        for key in ("ts", "node", "through"):
            v = rec.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise RecordError(f"beat record: {key!r} is {v!r}, not a whole number >= 0")
            out.append(v)
        final = rec.get("final", False)
        if not isinstance(final, bool):
            raise RecordError(f"beat record: 'final' is {final!r}, not true or false")
        return cls(out[0], out[1], out[2], final)


def encode_share(
    ts_ms: int,
    node: int,
    account: str,
    worker: str,
    job: str,
    height: int,
    bits: int,
    diff_num: int,
    diff_den: int,
    en1: bytes,
    en2: bytes,
    ntime: int,
    nonce: int,
    version: int,
    block: bool,
    header_hash: bytes = b"",
) -> bytes:
    """The binary payload of one accepted share, positional (the daemon's hot path); the
    fields are `ShareRecord`'s, in its order. `header_hash`: the header's sha256d (32 bytes,
    as computed), or empty for a record without it."""
    if header_hash and len(header_hash) != HASH_SIZE:
        raise ValueError(f"a header hash is {HASH_SIZE} bytes, got {len(header_hash)}")
    a, w, j = account.encode(), worker.encode(), job.encode()
    return (
        SHARE_HEAD.pack(
            SHARE_TAG,
            (FLAG_BLOCK if block else 0) | (FLAG_HASH if header_hash else 0),
            node,
            ts_ms,
            height,
            bits,
            diff_num,
            diff_den,
            ntime,
            nonce,
            version,
            en1,
            len(en2),
            len(j),
            len(a),
            len(w),
        )
        + en2
        + j
        + a
        + w
        + header_hash
    )


def decode_share(payload: bytes) -> ShareRecord:
    """A binary share payload back into its record; RecordError when the lengths disagree."""
    if len(payload) < SHARE_HEAD.size:
        raise RecordError("share record shorter than its fixed part")
    (_tag, flags, node, ts, height, bits, num, den, ntime, nonce, version, en1) = SHARE.unpack_from(
        payload
    )
    pos = SHARE.size
    lengths = payload[pos : pos + 4]
    pos += 4
    fields = []
    for n in lengths:
        fields.append(payload[pos : pos + n])
        pos += n
    header_hash = None
    if flags & FLAG_HASH:
        header_hash = payload[pos : pos + HASH_SIZE]
        pos += HASH_SIZE
    if pos != len(payload):
        raise RecordError("share record length mismatch")
    en2, job, acct, worker = fields
    try:
        return ShareRecord(
            ts,
            node,
            acct.decode(),
            worker.decode(),
            job.decode(),
            height,
            bits,
            num,
            den,
            en1,
            en2,
            ntime,
            nonce,
            version,
            bool(flags & FLAG_BLOCK),
            header_hash,
        )
    except UnicodeDecodeError as exc:
        raise RecordError(f"share record name is not UTF-8: {exc}") from None


def decode_payload(payload: bytes) -> dict[str, object] | None:
    """Any payload as the dict view readers use; None for an unknown kind (skipped)."""
    if payload[:1] == b"{":
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"JSON record does not parse: {exc}") from None
        return record if isinstance(record, dict) else None
    if payload[:1] == bytes((SHARE_TAG,)):
        return decode_share(payload).as_dict()
    return None


def share_header_hash(payload: bytes) -> bytes | None:
    """The header hash a binary share payload ends with, or None (a record without one)."""
    if payload[FIELD_AT["flags"]] & FLAG_HASH:
        return payload[-HASH_SIZE:]
    return None


#: One binary share record as ingest needs it: (ts_ms, bits, diff_num, diff_den, account, worker).
ShareTuple = tuple[int, int, int, int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class ShareFields:
    """What ingest and replay need of a binary share record, without building a dict."""

    ts_ms: int
    bits: int
    diff_num: int
    diff_den: int
    account: bytes
    worker: bytes


_I = {name: SHARE_FIELDS.index(name) for name in ("ts_ms", "bits", "diff_num", "diff_den")}
TS, BITS, NUM, DEN = _I["ts_ms"], _I["bits"], _I["diff_num"], _I["diff_den"]


def share_tuple(payload: bytes) -> ShareTuple:
    """(ts_ms, bits, diff_num, diff_den, account, worker) of a binary share payload."""
    f = SHARE.unpack_from(payload)
    head = SHARE.size
    a = head + 4 + payload[head] + payload[head + 1]
    b = a + payload[head + 2]
    return (f[TS], f[BITS], f[NUM], f[DEN], payload[a:b], payload[b : b + payload[head + 3]])
