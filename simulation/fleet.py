"""A simulated ASIC fleet: real Stratum V1 clients that really grind valid shares.

Each miner subscribes (negotiating version rolling), authorizes, applies `set_difficulty` at the
next `notify` as hardware does, and hashes headers with SHA256d until one meets its share
target, then submits it and measures the reply latency. Used by `poold simulate`, `poold demo`
and the end-to-end tests. Hashing in Python is slow, so give it low difficulties.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from urllib.parse import urlparse

import orjson

from poold.chain.difficulty import to_difficulty
from poold.chain.targets import target_from_difficulty


@dataclass
class FleetStats:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    hashes: int = 0
    blocks: int = 0
    connected: int = 0
    disconnects: int = 0
    accepted_keys: list[tuple[str, str, str, int, int]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies_ms)

        def pct(q: float) -> float:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else 0.0

        return {
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "hashes": self.hashes,
            "disconnects": self.disconnects,
            "latency_ms_p50": pct(0.50),
            "latency_ms_p99": pct(0.99),
        }


TLS_SCHEMES = ("stratum+ssl", "stratum+tcps", "ssl")


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, over TLS) of a stratum URL: stratum+tcp:// or stratum+ssl:// (+tcps)."""
    u = urlparse(url)
    if u.scheme not in ("stratum+tcp", "tcp", *TLS_SCHEMES) or not u.hostname or not u.port:
        raise ValueError(f"expected stratum+tcp:// or stratum+ssl://HOST:PORT, got {url!r}")
    return u.hostname, u.port, u.scheme in TLS_SCHEMES


@dataclass
class _Job:
    job_id: str
    prevhash: bytes
    coinb1: bytes
    coinb2: bytes
    branch: list[bytes]
    version: int
    nbits: int
    ntime: int
    target: int
    difficulty: Fraction


class SimMiner:
    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        stats: FleetStats,
        *,
        password: str = "x",
        version_rolling: bool = True,
        agent: str = "poold-sim/0.1",
        record_keys: bool = False,
        max_in_flight: int = 32,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        self.max_in_flight = max_in_flight
        self._room = asyncio.Event()
        self._room.set()
        self.host, self.port, self.user, self.password = host, port, user, password
        self.stats = stats
        self.version_rolling = version_rolling
        self.agent = agent
        self.record_keys = record_keys
        self.extranonce1 = b""
        self.extranonce2_size = 4
        self.version_mask = 0
        self.difficulty = Fraction(1)
        self.job: _Job | None = None
        self._new_job = asyncio.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[float, str, tuple[str, str, str, int, int] | None]] = {}
        self._replies: dict[int, asyncio.Future[object]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self.reconnect_requested = False
        self.closed = False
        self._stop: Callable[[], bool] = lambda: False

    async def _request(self, method: str, params: list[object]) -> object:
        assert self._writer is not None
        rid = next(self._ids)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        self._writer.write(orjson.dumps({"id": rid, "method": method, "params": params}) + b"\n")
        return await fut

    async def _reader(self, reader: asyncio.StreamReader) -> None:
        try:
            await self._read_lines(reader)
        finally:
            self.closed = True
            self._new_job.set()  # wake the grinder so it notices
            self._room.set()

    async def _read_lines(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            msg = orjson.loads(line)
            rid = msg.get("id")
            if msg.get("method"):
                self._on_notification(msg["method"], msg.get("params") or [])
            elif rid in self._replies:
                self._replies.pop(rid).set_result(msg)
            elif rid in self._pending:
                sent, _job, key = self._pending.pop(rid)
                self._room.set()
                self.stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
                if msg.get("result") is True:
                    self.stats.accepted += 1
                    if key is not None:
                        self.stats.accepted_keys.append(key)
                else:
                    err = msg.get("error") or [20, "?", None]
                    name = {21: "stale", 22: "duplicate", 23: "low_difficulty"}.get(
                        err[0], str(err[0])
                    )
                    self.stats.rejected[name] = self.stats.rejected.get(name, 0) + 1

    def _on_notification(self, method: str, params: list[object]) -> None:
        if method == "mining.set_difficulty":
            self.difficulty = to_difficulty(params[0])  # applied at the next notify
        elif method == "mining.notify":
            job_id, prevhash, cb1, cb2, branch, ver, nbits, ntime, _clean = params
            assert isinstance(branch, list)
            self.job = _Job(
                str(job_id),
                b"".join(bytes.fromhex(str(prevhash))[i : i + 4][::-1] for i in range(0, 32, 4)),
                bytes.fromhex(str(cb1)),
                bytes.fromhex(str(cb2)),
                [bytes.fromhex(str(b)) for b in branch],
                int(str(ver), 16),
                int(str(nbits), 16),
                int(str(ntime), 16),
                target_from_difficulty(self.difficulty),
                self.difficulty,
            )
            self._new_job.set()
        elif method == "client.reconnect":
            self.reconnect_requested = True

    async def run(self, deadline: float, stop: Callable[[], bool] = lambda: False) -> None:
        """Mine until `deadline` (monotonic seconds) or until `stop()` holds."""
        self._stop = stop
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        self._writer = writer
        read_task = asyncio.create_task(self._reader(reader))
        try:
            if self.version_rolling:
                res = await self._request(
                    "mining.configure",
                    [
                        ["version-rolling"],
                        {"version-rolling.mask": "1fffe000", "version-rolling.min-bit-count": 2},
                    ],
                )
                result = res.get("result") if isinstance(res, dict) else None
                if isinstance(result, dict) and result.get("version-rolling"):
                    self.version_mask = int(str(result["version-rolling.mask"]), 16)
            res = await self._request("mining.subscribe", [self.agent])
            assert isinstance(res, dict)
            _subs, en1, en2_size = res["result"]
            self.extranonce1, self.extranonce2_size = bytes.fromhex(en1), int(en2_size)
            res = await self._request("mining.authorize", [self.user, self.password])
            assert isinstance(res, dict) and res.get("result") is True, res
            self.stats.connected += 1
            await self._grind(deadline)
        except (ConnectionError, RuntimeError):
            # The pool closed the connection (shutdown, limits): a disconnect, not a crash.
            self.stats.disconnects += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                await writer.wait_closed()
            read_task.cancel()

    def _over(self, deadline: float) -> bool:
        return time.monotonic() >= deadline or self.closed or self._stop()

    async def _grind(self, deadline: float) -> None:
        en2_counter = itertools.count(1)
        while not self._over(deadline):
            if self.job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_job.wait(), deadline - time.monotonic())
                continue
            self._new_job.clear()
            job = self.job
            en2 = next(en2_counter).to_bytes(self.extranonce2_size, "big")
            coinbase = job.coinb1 + self.extranonce1 + en2 + job.coinb2
            root = hashlib.sha256(hashlib.sha256(coinbase).digest()).digest()
            for step in job.branch:
                root = hashlib.sha256(hashlib.sha256(root + step).digest()).digest()
            rolled = 0
            if self.version_mask:
                # Roll the lowest allowed bit pattern that varies per extranonce2.
                low = self.version_mask & -self.version_mask
                rolled = (low * (int.from_bytes(en2, "big") % 4)) & self.version_mask
            version = (job.version & ~self.version_mask) | rolled
            prefix = struct.pack("<I", version) + job.prevhash + root
            prefix += struct.pack("<II", job.ntime, job.nbits)
            base = hashlib.sha256(prefix)
            for nonce in range(1 << 32):
                h = base.copy()
                h.update(nonce.to_bytes(4, "little"))
                digest = hashlib.sha256(h.digest()).digest()
                self.stats.hashes += 1
                if int.from_bytes(digest, "little") <= job.target:
                    self._submit(job, en2, nonce, rolled)
                    await asyncio.sleep(0)
                    if len(self._pending) >= self.max_in_flight:
                        # Like hardware: a bounded number of submits awaiting an answer.
                        self._room.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._room.wait(), 5)
                    if self._new_job.is_set() or self._over(deadline):
                        break
                if nonce % 512 == 511:
                    await asyncio.sleep(0)
                    if self._new_job.is_set() or self._over(deadline):
                        break

    def _submit(self, job: _Job, en2: bytes, nonce: int, rolled: int) -> None:
        assert self._writer is not None
        if self._writer.is_closing():
            raise ConnectionError("connection closed by the pool")
        rid = next(self._ids)
        params: list[object] = [
            self.user,
            job.job_id,
            en2.hex(),
            f"{job.ntime:08x}",
            f"{nonce:08x}",
        ]
        if self.version_mask:
            params.append(f"{rolled:08x}")
        key = (
            (job.job_id, self.extranonce1.hex(), en2.hex(), job.ntime, nonce)
            if self.record_keys
            else None
        )
        self._pending[rid] = (time.perf_counter(), job.job_id, key)
        self._writer.write(
            orjson.dumps({"id": rid, "method": "mining.submit", "params": params}) + b"\n"
        )


async def run_fleet(
    url: str,
    *,
    miners: int,
    duration_s: float,
    account: str = "sim",
    password: str = "x",
    record_keys: bool = False,
    stats: FleetStats | None = None,
    tls: ssl.SSLContext | None = None,
    until: Callable[[FleetStats], bool] | None = None,
) -> FleetStats:
    """Run `miners` simulated miners against `url` for `duration_s` seconds, or until
    `until(stats)` holds (tests mine until they have what they need, on a machine of any
    speed). A stratum+ssl:// URL connects over TLS with `tls` (default: the system's trust
    store and hostname check)."""
    host, port, over_tls = parse_url(url)
    context = (tls or ssl.create_default_context()) if over_tls else None
    stats = stats or FleetStats()
    deadline = time.monotonic() + duration_s
    fleet = [
        SimMiner(
            host,
            port,
            f"{account}.rig{i}",
            stats,
            password=password,
            record_keys=record_keys,
            tls=context,
        )
        for i in range(miners)
    ]

    last = [0.0, False]  # when `until` was last asked, and its answer

    def stop() -> bool:
        """`until(stats)`, asked at most every 0.1 s (it may query a database)."""
        if until is None or last[1]:
            return bool(last[1])
        now = time.monotonic()
        if now - last[0] >= 0.1:
            last[0], last[1] = now, bool(until(stats))
        return bool(last[1])

    results = await asyncio.gather(*(m.run(deadline, stop) for m in fleet), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors and len(errors) == len(results):
        raise errors[0]
    # Let in-flight replies arrive.
    return stats
