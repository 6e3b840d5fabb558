"""Stratum load generator for benchmarks: many connections on one uvloop, minimal overhead.

Every share it submits really meets the share target (it hashes the header before sending;
at difficulty 2**-32 nearly every nonce qualifies). Modes:
  closed: each connection keeps one submit in flight (send, wait for the reply, send again);
  open:   a fixed total rate spread over all connections, whatever the replies do;
  idle:   connect, subscribe, authorize, then only wait (for RSS per idle connection).
With --tls every connection speaks TLS (stratum+ssl), the certificate unchecked.
Prints one JSON object with counts, rate and latency percentiles; with --server-pid also the
server's CPU seconds (process and children, from /proc) over exactly the measured window, and
the µs of server CPU per accepted share.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import ssl
import struct
import sys
import time

import orjson
import uvloop

TARGET = 0xFFFF << 240  # difficulty 2**-32


class Stats:
    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.lat: list[float] = []
        self.measuring = False
        self.ready = 0
        self.errors = 0


class Miner(asyncio.Protocol):
    def __init__(self, idx: int, stats: Stats, closed_loop: bool, user: bytes) -> None:
        self.idx, self.stats, self.closed_loop, self.user = idx, stats, closed_loop, user
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.en1 = b""
        self.job: tuple[bytes, bytes, bytes] | None = None  # job_id, ntime hex, prefix
        self.base: hashlib._Hash | None = None  # type: ignore[name-defined]
        self.nonce = 0
        self.rid = 10
        self.sent: dict[int, float] = {}
        self.ready_fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.en2 = struct.pack(">I", idx)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(  # type: ignore[attr-defined]
            b'{"id":1,"method":"mining.subscribe","params":["loadgen"]}\n'
            b'{"id":2,"method":"mining.authorize","params":["' + self.user + b'","x"]}\n'
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.errors += 1
        if not self.ready_fut.done():
            self.ready_fut.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        *lines, self.buf = buf.split(b"\n")
        now = time.perf_counter()
        for line in lines:
            msg = orjson.loads(line)
            rid = msg.get("id")
            if rid is not None and rid >= 10:
                sent = self.sent.pop(rid, None)
                if self.stats.measuring and sent is not None:
                    if msg["result"] is True:
                        self.stats.accepted += 1
                    else:
                        self.stats.rejected += 1
                    self.stats.lat.append(now - sent)
                if self.closed_loop and self.job is not None:
                    self.send_share()
            elif rid == 1:
                self.en1 = bytes.fromhex(msg["result"][1])
            elif msg.get("method") == "mining.notify":
                self.set_job(msg["params"])

    def set_job(self, p: list) -> None:
        job_id, prevhash, cb1, cb2, branch, ver, nbits, ntime, _clean = p
        prev = b"".join(bytes.fromhex(prevhash)[i : i + 4][::-1] for i in range(0, 32, 4))
        cb = bytes.fromhex(cb1) + self.en1 + self.en2 + bytes.fromhex(cb2)
        root = hashlib.sha256(hashlib.sha256(cb).digest()).digest()
        for b in branch:
            root = hashlib.sha256(hashlib.sha256(root + bytes.fromhex(b)).digest()).digest()
        prefix = (
            struct.pack("<I", int(ver, 16))
            + prev
            + root
            + struct.pack("<II", int(ntime, 16), int(nbits, 16))
        )
        self.job = (job_id.encode(), ntime.encode(), prefix)
        self.base = hashlib.sha256(prefix)
        if not self.ready_fut.done():
            self.ready_fut.set_result(None)

    def send_share(self) -> None:
        assert self.job is not None and self.base is not None and self.transport is not None
        job_id, ntime, _prefix = self.job
        while True:
            self.nonce += 1
            h = self.base.copy()
            h.update(self.nonce.to_bytes(4, "little"))
            if int.from_bytes(hashlib.sha256(h.digest()).digest(), "little") <= TARGET:
                break
        self.rid += 1
        self.sent[self.rid] = time.perf_counter()
        self.transport.write(
            b'{"id":%d,"method":"mining.submit","params":["%s","%s","%s","%s","%08x"]}\n'
            % (self.rid, self.user, job_id, self.en2.hex().encode(), ntime, self.nonce)
        )


def pct(lat: list[float], q: float) -> float:
    if not lat:
        return 0.0
    s = sorted(lat)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)


def server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants (threads are included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue
    return total


async def main(a: argparse.Namespace) -> dict:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    stats = Stats()
    miners: list[Miner] = []
    closed = a.mode == "closed"
    tls = None
    if a.tls:  # stratum+ssl: the bench server's self-signed certificate is not checked
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    t0 = time.perf_counter()
    for i in range(a.connections):
        _t, m = await loop.create_connection(
            lambda i=i: Miner(i, stats, closed, b"bench.w%d" % (i % 1000)), a.host, a.port, ssl=tls
        )
        miners.append(m)
    await asyncio.gather(*(m.ready_fut for m in miners))
    connect_s = time.perf_counter() - t0
    if a.mode == "idle":
        print(
            json.dumps({"mode": "idle", "connections": len(miners), "connect_s": connect_s}),
            flush=True,
        )
        await asyncio.sleep(a.duration)
        return {}
    if closed:
        for m in miners:
            m.send_share()
    else:

        async def pace() -> None:
            tick = 0.002
            per_tick = a.rate * tick
            carry = 0.0
            idx = 0
            nxt = time.perf_counter()
            while True:
                nxt += tick
                carry += per_tick
                n = int(carry)
                carry -= n
                for _ in range(n):
                    miners[idx].send_share()
                    idx = (idx + 1) % len(miners)
                delay = nxt - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))

        pacer = asyncio.create_task(pace())
    await asyncio.sleep(a.warmup)
    stats.measuring = True
    cpu0 = time.process_time()
    srv0 = server_cpu_s(a.server_pid) if a.server_pid else 0.0
    start = time.perf_counter()
    await asyncio.sleep(a.duration)
    stats.measuring = False
    elapsed = time.perf_counter() - start
    srv = server_cpu_s(a.server_pid) - srv0 if a.server_pid else 0.0
    cpu = time.process_time() - cpu0
    if not closed:
        pacer.cancel()
    return {
        "mode": a.mode,
        "connections": len(miners),
        "offered_per_s": a.rate if not closed else None,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "replies_per_s": round((stats.accepted + stats.rejected) / elapsed),
        "accepted_per_s": round(stats.accepted / elapsed),
        "latency_ms_p50": pct(stats.lat, 0.50),
        "latency_ms_p99": pct(stats.lat, 0.99),
        "loadgen_cpu": round(cpu / elapsed, 2),
        "connect_s": round(connect_s, 2),
        "closed_connections": stats.errors,
        **(
            {
                "server_cpu_s": round(srv, 3),
                "server_cpu_us_per_share": round(srv * 1e6 / stats.accepted, 2)
                if stats.accepted
                else None,
            }
            if a.server_pid
            else {}
        ),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--mode", choices=["closed", "open", "idle"], default="closed")
    ap.add_argument("--rate", type=float, default=20000)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--tls", action="store_true", help="connect with TLS (stratum+ssl)")
    ap.add_argument("--server-pid", type=int, default=0, help="report this process's CPU use")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = uvloop.run(main(args))
    if result:
        print(json.dumps(result), flush=True)
    sys.exit(0)
