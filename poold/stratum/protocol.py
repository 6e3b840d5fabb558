"""Sans-I/O Stratum V1: bytes in -> typed events out; replies and notifications -> bytes out.

`StratumConnection.receive_data` raises only `RemoteProtocolError`, and only for abuse that
must close the connection (a line over the cap). A malformed but bounded line becomes an
`InvalidRequest` event so the session can answer it and count it. Hex is decoded here, once.
Must not import asyncio, read clocks, or know about shares, jobs or storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import orjson

from poold.chain.difficulty import to_difficulty

MAX_LINE_BYTES = 16 * 1024
RequestId = int | str | None


class RemoteProtocolError(Exception):
    """The peer broke the framing rules; the connection must be closed."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    req_id: RequestId
    agent: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class Authorize:
    req_id: RequestId
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class Configure:
    req_id: RequestId
    extensions: tuple[str, ...]
    params: dict[str, object]


@dataclass(frozen=True, slots=True)
class SuggestDifficulty:
    req_id: RequestId
    difficulty: Fraction


@dataclass(frozen=True, slots=True)
class ExtranonceSubscribe:
    req_id: RequestId


@dataclass(slots=True)  # not frozen: built once per share, frozen __init__ costs ~1 us
class Submit:
    req_id: RequestId
    worker: str
    job_id: str
    extranonce2: bytes
    ntime: int
    nonce: int
    version_bits: int | None


@dataclass(frozen=True, slots=True)
class UnknownMethod:
    req_id: RequestId
    method: str


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A line that is not a usable request; `req_id` is None when none could be read."""

    req_id: RequestId
    reason: str
    junk: bool  # True when the line is not even a JSON-RPC object (counts toward a ban)


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """A reply from the miner to something we sent (e.g. client.get_version); ignored."""

    req_id: RequestId


Event = (
    Subscribe
    | Authorize
    | Configure
    | SuggestDifficulty
    | ExtranonceSubscribe
    | Submit
    | UnknownMethod
    | InvalidRequest
    | PeerResponse
)


class _BadParams(ValueError):
    pass


def _str(value: object, name: str, max_len: int = 256) -> str:
    if type(value) is not str:
        raise _BadParams(f"{name} must be a string")
    if len(value) > max_len:
        raise _BadParams(f"{name} is longer than {max_len} characters")
    return value


def _hex_bytes(value: object, name: str, max_len: int = 64) -> bytes:
    s = _str(value, name, max_len * 2)
    if len(s) % 2:
        raise _BadParams(f"{name} must be an even number of hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise _BadParams(f"{name} is not hex") from None


_HEX_U32 = re.compile(r"[0-9a-fA-F]{1,8}").fullmatch


def _hex_u32(value: object, name: str) -> int:
    if type(value) is not str or _HEX_U32(value) is None:
        if type(value) is str and len(value) > 8:
            raise _BadParams(f"{name} is longer than 8 characters")
        raise _BadParams(f"{name} must be up to 8 hex digits")
    return int(value, 16)


def _parse_submit(req_id: RequestId, params: list[object]) -> Submit:
    n = len(params)
    if n != 5 and n != 6:
        raise _BadParams(f"mining.submit takes 5 or 6 params, got {n}")
    return Submit(
        req_id,
        _str(params[0], "worker"),
        _str(params[1], "job_id", 64),
        _hex_bytes(params[2], "extranonce2", 32),
        _hex_u32(params[3], "ntime"),
        _hex_u32(params[4], "nonce"),
        _hex_u32(params[5], "version_bits") if n == 6 else None,
    )


def _parse_params(method: str, req_id: RequestId, params: list[object]) -> Event:
    if method == "mining.submit":
        return _parse_submit(req_id, params)
    if method == "mining.subscribe":
        agent = _str(params[0], "user agent") if params and params[0] is not None else ""
        sid = params[1] if len(params) > 1 else None
        return Subscribe(req_id, agent, _str(sid, "session id", 64) if sid is not None else None)
    if method == "mining.authorize":
        if not params:
            raise _BadParams("mining.authorize needs a user")
        password = params[1] if len(params) > 1 and params[1] is not None else ""
        return Authorize(req_id, _str(params[0], "user"), _str(password, "password"))
    if method == "mining.configure":
        if len(params) < 1 or not isinstance(params[0], list):
            raise _BadParams("mining.configure needs a list of extensions")
        exts = tuple(_str(e, "extension", 64) for e in params[0])
        opts = params[1] if len(params) > 1 else {}
        if not isinstance(opts, dict):
            raise _BadParams("mining.configure parameters must be an object")
        return Configure(req_id, exts, opts)
    if method == "mining.suggest_difficulty":
        if len(params) != 1:
            raise _BadParams("mining.suggest_difficulty takes one number")
        value = params[0]
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _BadParams("difficulty must be a number")
        try:
            return SuggestDifficulty(req_id, to_difficulty(value))
        except (ValueError, TypeError) as exc:
            raise _BadParams(str(exc)) from None
    if method == "mining.extranonce.subscribe":
        return ExtranonceSubscribe(req_id)
    return UnknownMethod(req_id, method)


def _submit_fast(req_id: int, params: list[object]) -> Submit | None:
    """The canonical 5-param submit, checked inline; None = take the slow path (which names
    the problem, or parses the rarer valid shapes)."""
    if len(params) != 5:
        return None
    worker, job_id, en2, ntime, nonce = params
    if not (
        type(worker) is str
        and type(job_id) is str
        and type(en2) is str
        and type(ntime) is str
        and type(nonce) is str
        and len(worker) <= 256
        and len(job_id) <= 64
        and len(en2) <= 64
        and _HEX_U32(ntime)
        and _HEX_U32(nonce)
    ):
        return None
    try:
        raw = bytes.fromhex(en2)
    except ValueError:
        return None
    if len(raw) * 2 != len(en2):  # fromhex skips spaces; Stratum hex has none
        return None
    return Submit(req_id, worker, job_id, raw, int(ntime, 16), int(nonce, 16), None)


def parse_line(line: bytes) -> Event:
    """Parse one JSON-RPC line into an event (never raises)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return InvalidRequest(None, "malformed JSON", junk=True)
    if type(obj) is dict and obj.get("method") == "mining.submit":
        # Hot path (nearly every line a pool reads); same checks, fewer steps.
        req_id, params = obj.get("id"), obj.get("params")
        if type(req_id) is int and type(params) is list:
            fast = _submit_fast(req_id, params)
            if fast is not None:
                return fast
            try:
                return _parse_submit(req_id, params)
            except _BadParams as exc:
                return InvalidRequest(req_id, f"mining.submit: {exc}", junk=False)
    if not isinstance(obj, dict):
        return InvalidRequest(None, "request must be a JSON object", junk=True)
    req_id = obj.get("id")
    if isinstance(req_id, bool) or not isinstance(req_id, int | str | None):
        return InvalidRequest(None, "id must be a number, a string or null", junk=True)
    if isinstance(req_id, str) and len(req_id) > 64:
        return InvalidRequest(None, "id is longer than 64 characters", junk=True)
    method = obj.get("method")
    if method is None:
        if "result" in obj or "error" in obj:
            return PeerResponse(req_id)
        return InvalidRequest(req_id, "missing method", junk=True)
    if not isinstance(method, str) or len(method) > 64:
        return InvalidRequest(req_id, "method must be a short string", junk=True)
    params = obj.get("params", [])
    if params is None:
        params = []
    if not isinstance(params, list):
        return InvalidRequest(req_id, f"{method}: params must be a list", junk=False)
    try:
        return _parse_params(method, req_id, params)
    except _BadParams as exc:
        return InvalidRequest(req_id, f"{method}: {exc}", junk=False)


class StratumConnection:
    """Framing state of one connection: buffer bytes in, return the events they complete."""

    __slots__ = ("_buf", "_max_line_bytes")

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = b""
        self._max_line_bytes = max_line_bytes

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; returns the events of the lines they complete, in order.

        Raises RemoteProtocolError for a line over the cap (nothing after it is parsed).
        """
        if self._buf:
            data = self._buf + data
        limit = self._max_line_bytes
        if data[-1:] == b"\n" and data.count(b"\n") == 1:  # one whole line: the common case
            self._buf = b""
            if len(data) > limit + 1:
                raise RemoteProtocolError(f"line exceeds {limit} bytes")
            line = data.strip()
            return [parse_line(line)] if line else []
        *lines, rest = data.split(b"\n")
        events = []
        for line in lines:
            if len(line) > limit:
                self._buf = b""
                raise RemoteProtocolError(f"line exceeds {limit} bytes")
            line = line.strip()
            if line:
                events.append(parse_line(line))
        if len(rest) > limit:
            self._buf = b""
            raise RemoteProtocolError(f"line exceeds {limit} bytes")
        self._buf = rest
        return events

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)


def encode_result(req_id: RequestId, result: object) -> bytes:
    return orjson.dumps({"id": req_id, "result": result, "error": None}) + b"\n"


def encode_true(req_id: RequestId) -> bytes:
    """The hot-path reply to an accepted share."""
    if isinstance(req_id, int):
        return b'{"id":%d,"result":true,"error":null}\n' % req_id
    return encode_result(req_id, True)


def encode_error(req_id: RequestId, code: int, message: str) -> bytes:
    return orjson.dumps({"id": req_id, "result": None, "error": [code, message, None]}) + b"\n"


def encode_notification(method: str, params: list[object]) -> bytes:
    return orjson.dumps({"id": None, "method": method, "params": params}) + b"\n"
