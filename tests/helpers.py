"""Test helpers: a line-level Stratum client over a real socket, config builders, vectors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bech32m
import orjson

from poold.config import Config, parse_config

VECTORS = Path(__file__).parent / "vectors"
#: How long any wait may last before the test fails. Generous on purpose: a wait ends as soon
#: as its condition holds, so this bound only decides when a stuck test gives up, and a busy
#: machine (a CI host beside other work, a CPU hog) is slow, not broken. Timing goals live
#: in bench/. POOLD_TEST_PATIENCE_S changes it.
PATIENCE_S = float(os.environ.get("POOLD_TEST_PATIENCE_S", "900"))


def load_vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / name).read_text())


def regtest_address(seed: bytes = b"poold test") -> str:
    program = hashlib.new("ripemd160", hashlib.sha256(seed).digest()).digest()
    return bech32m.encode("bcrt", 0, list(program))


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    base: dict[str, dict[str, Any]] = {
        "stratum": {
            "listen": "127.0.0.1:0",
            "start_difficulty": "1/4294967296",
            "min_difficulty": "1/4294967296",
            "vardiff_target_share_time_s": 1000,
            "vardiff_retarget_time_s": 3600,
        },
        "bitcoind": {"kind": "simnet", "simnet_difficulty": "1/64", "poll_interval_s": 0.05},
        "pool": {"network": "regtest", "payout_address": regtest_address(), "coinbase_tag": "/t/"},
        "sharelog": {"path": str(tmp_path / "sharelog"), "fsync_interval_ms": 2},
        "log": {"level": "warning", "format": "json"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return parse_config(base, environ={})


class StratumClient:
    """A minimal miner speaking raw JSON lines, for protocol-level assertions."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.notifications: list[dict[str, Any]] = []
        self._id = 0

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> StratumClient:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_msg(self, timeout_s: float = PATIENCE_S) -> dict[str, Any] | None:
        line = await asyncio.wait_for(self.reader.readline(), timeout_s)
        if not line:
            return None
        msg: dict[str, Any] = orjson.loads(line)
        return msg

    async def request(
        self, method: str, params: list[Any], timeout_s: float = PATIENCE_S
    ) -> dict[str, Any]:
        self._id += 1
        rid = self._id
        await self.send_raw(orjson.dumps({"id": rid, "method": method, "params": params}) + b"\n")
        while True:
            msg = await self.read_msg(timeout_s)
            if msg is None:
                raise ConnectionError("server closed the connection")
            if msg.get("method"):
                self.notifications.append(msg)
            elif msg.get("id") == rid:
                return msg

    async def notification(self, method: str, timeout_s: float = PATIENCE_S) -> dict[str, Any]:
        for i, n in enumerate(self.notifications):
            if n["method"] == method:
                return self.notifications.pop(i)
        while True:
            msg = await self.read_msg(timeout_s)
            if msg is None:
                raise ConnectionError("server closed the connection")
            if msg.get("method") == method:
                return msg
            if msg.get("method"):
                self.notifications.append(msg)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def handshake(self, user: str = "acct.w1", password: str = "x") -> dict[str, Any]:
        sub = await self.request("mining.subscribe", ["test/1.0"])
        self.extranonce1 = bytes.fromhex(sub["result"][1])
        self.extranonce2_size = sub["result"][2]
        auth = await self.request("mining.authorize", [user, password])
        assert auth["result"] is True, auth
        return sub


def header_for(
    notify_params: list[Any], en1: bytes, en2: bytes, nonce: int, version: int | None = None
) -> bytes:
    """Rebuild the header a miner would hash for a mining.notify (independent of poold code)."""
    _job_id, prevhash, cb1, cb2, branch, ver, nbits, ntime, _clean = notify_params
    prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
    coinbase = bytes.fromhex(cb1) + en1 + en2 + bytes.fromhex(cb2)
    root = hashlib.sha256(hashlib.sha256(coinbase).digest()).digest()
    for step in branch:
        root = hashlib.sha256(hashlib.sha256(root + bytes.fromhex(step)).digest()).digest()
    v = int(ver, 16) if version is None else version
    return (
        struct.pack("<I", v)
        + prev
        + root
        + struct.pack("<III", int(ntime, 16), int(nbits, 16), nonce)
    )


def pow_int(header: bytes) -> int:
    return int.from_bytes(hashlib.sha256(hashlib.sha256(header).digest()).digest(), "little")


async def wait_for(cond: Callable[[], object], what: str, *, every_s: float = 0.02) -> None:
    """Wait until `cond()` holds (it may be a coroutine function: a read over HTTP, a query),
    checked every `every_s`; fail naming `what` if it never does. The one way tests wait: on
    the condition they need, never on a fixed sleep or a time budget."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        held = cond()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(every_s)


def wait_for_sync(cond: Callable[[], object], what: str) -> None:
    """`wait_for` for code outside an event loop (a subprocess, a thread)."""
    deadline = time.monotonic() + PATIENCE_S
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


class FakeClock:
    """The one fake clock: a callable giving seconds, moved only by the test."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
