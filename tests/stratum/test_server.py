"""Real sockets on 127.0.0.1 port 0 against a running daemon (simnet)."""

from __future__ import annotations

import asyncio
import socket
from fractions import Fraction
from typing import Any

import pytest

from poold.chain.targets import target_from_difficulty
from poold.shares.log import read_log
from poold.stratum.server import never_banned
from tests.helpers import PATIENCE_S, FakeClock, StratumClient, header_for, pow_int, wait_for


async def ready_client(pool: Any, user: str = "acct.w1", password: str = "x") -> StratumClient:
    c = await StratumClient.connect(pool.address)
    await c.handshake(user, password)
    return c


async def current_job(c: StratumClient) -> tuple[Fraction, list[Any]]:
    diff = await c.notification("mining.set_difficulty")
    notify = await c.notification("mining.notify")
    return Fraction(diff["params"][0]), notify["params"]


def grind(
    params: list[Any],
    en1: bytes,
    en2: bytes,
    target: int,
    *,
    below: bool = True,
    version: int | None = None,
) -> int:
    for nonce in range(1 << 24):
        h = pow_int(header_for(params, en1, en2, nonce, version))
        if (h <= target) == below:
            return nonce
    raise AssertionError("no nonce")


def submit_params(user: str, params: list[Any], en2: bytes, nonce: int, *extra: str) -> list[Any]:
    return [user, params[0], en2.hex(), params[7], f"{nonce:08x}", *extra]


async def test_set_difficulty_precedes_notify_and_share_is_logged(pool: Any) -> None:
    c = await StratumClient.connect(pool.address)
    sub = await c.request("mining.subscribe", ["test/1"])
    (subs, en1_hex, en2_size) = sub["result"]
    assert [s[0] for s in subs] == ["mining.set_difficulty", "mining.notify"]
    assert len(bytes.fromhex(en1_hex)) == 4 and en2_size == 4
    assert (await c.request("mining.authorize", ["acct.w1", "x"]))["result"] is True
    first = await c.read_msg()
    second = await c.read_msg()
    assert first and first["method"] == "mining.set_difficulty"
    assert second and second["method"] == "mining.notify"
    params = second["params"]
    diff = Fraction(first["params"][0])
    en2 = b"\x00\x00\x00\x07"
    nonce = grind(params, bytes.fromhex(en1_hex), en2, target_from_difficulty(diff))
    reply = await c.request("mining.submit", submit_params("acct.w1", params, en2, nonce))
    assert reply == {"id": 3, "result": True, "error": None}
    # Answered true => already written to the share log.
    shares = [r for _p, r in read_log(pool.daemon.cfg.sharelog.path) if r["t"] == "share"]
    assert any(
        r["nonce"] == nonce
        and r["en2"] == en2.hex()
        and r["account"] == "acct"
        and r["worker"] == "w1"
        for r in shares
    )
    await c.close()


async def test_code_20_unknown_method_and_bad_params_keep_connection(pool: Any) -> None:
    c = await ready_client(pool)
    r = await c.request("mining.frobnicate", [])
    assert r["error"][0] == 20 and "unknown method" in r["error"][1]
    r = await c.request("mining.submit", ["acct.w1", "1", "zz", "00000000", "00000000"])
    assert r["error"][0] == 20 and "not hex" in r["error"][1]
    await c.send_raw(b"this is not json\n")
    msg = await c.read_msg()
    while msg and msg.get("method"):
        msg = await c.read_msg()
    assert msg and msg["id"] is None and msg["error"][0] == 20 and "JSON" in msg["error"][1]
    r = await c.request("mining.extranonce.subscribe", [])
    assert r["result"] is True  # still served
    await c.close()


async def test_code_21_stale_job(pool: Any) -> None:
    c = await ready_client(pool)
    r = await c.request("mining.submit", ["acct.w1", "ffff", "00000000", "00000000", "00000000"])
    assert r["error"][0] == 21
    assert pool.daemon.metrics.shares_rejected["stale"] == 1
    assert pool.daemon.metrics.rejected_by_account == {"acct": {"stale": 1}}
    await c.close()


async def test_code_22_duplicate_and_23_low_difficulty(pool: Any) -> None:
    c = await ready_client(pool, password="d=1/65536")
    diff, params = await current_job(c)
    assert diff == Fraction(1, 65536)
    en2 = bytes(4)
    target = target_from_difficulty(diff)
    good = grind(params, c.extranonce1, en2, target)
    sp = submit_params("acct.w1", params, en2, good)
    assert (await c.request("mining.submit", sp))["result"] is True
    dup = await c.request("mining.submit", sp)
    assert dup["error"][0] == 22
    bad = grind(params, c.extranonce1, en2, target, below=False)
    low = await c.request("mining.submit", submit_params("acct.w1", params, en2, bad))
    assert low["error"][0] == 23
    await c.close()


async def test_code_24_unauthorized_and_25_not_subscribed(pool: Any) -> None:
    c = await StratumClient.connect(pool.address)
    r = await c.request("mining.submit", ["acct.w1", "1", "00000000", "00000000", "00000000"])
    assert r["error"][0] == 25
    await c.request("mining.subscribe", [])
    r = await c.request("mining.submit", ["acct.w1", "1", "00000000", "00000000", "00000000"])
    assert r["error"][0] == 24
    bad_name = await c.request("mining.authorize", ["bad name!", "x"])
    assert bad_name["error"][0] == 24
    await c.close()


async def test_version_rolling_in_and_out_of_mask(pool: Any) -> None:
    c = await StratumClient.connect(pool.address)
    conf = await c.request(
        "mining.configure",
        [
            ["version-rolling", "minimum-difficulty", "subscribe-extranonce", "weird"],
            {"version-rolling.mask": "00fff000", "minimum-difficulty.value": 0.00001},
        ],
    )
    res = conf["result"]
    assert res["version-rolling"] is True
    assert res["version-rolling.mask"] == f"{0x1FFFE000 & 0x00FFF000:08x}"
    assert res["minimum-difficulty"] is True and res["subscribe-extranonce"] is True
    assert res["weird"] is False
    await c.handshake()
    diff, params = await current_job(c)
    mask = int(res["version-rolling.mask"], 16)
    base = int(params[5], 16)
    rolled = 0x00002000
    en2 = b"\x00\x00\x00\x02"
    version = (base & ~mask) | rolled
    nonce = grind(params, c.extranonce1, en2, target_from_difficulty(diff), version=version)
    ok = await c.request(
        "mining.submit", submit_params("acct.w1", params, en2, nonce, f"{rolled:08x}")
    )
    assert ok["result"] is True
    outside = await c.request(
        "mining.submit", submit_params("acct.w1", params, en2, nonce, f"{0x10000000:08x}")
    )
    assert outside["error"][0] == 20 and "mask" in outside["error"][1]
    await c.close()


async def test_oversize_line_closes_but_server_keeps_serving(pool: Any) -> None:
    c = await ready_client(pool)
    await c.send_raw(b'{"id":1,"method":"' + b"x" * 20000)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        while True:
            msg = await c.read_msg()
            if msg is None:
                raise ConnectionError("closed")
    await c.close()
    c2 = await ready_client(pool)  # loopback is never banned
    assert (await c2.request("mining.extranonce.subscribe", []))["result"] is True
    await c2.close()


async def test_miner_that_does_not_read_is_dropped(start_daemon: Any, config_factory: Any) -> None:
    """Replies pile up for a miner that never reads: past the cap it is dropped, the server
    keeps serving others, and memory stays bounded."""
    rd = await start_daemon(config_factory(stratum={"max_write_buffer_bytes": 4096}))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no autotuning
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, rd.address)
    request = b'{"id":1,"method":"mining.extranonce.subscribe","params":[]}\n' * 1000
    sent = 0
    with pytest.raises(ConnectionError):
        while sent < 200 << 20:  # far more replies than kernel buffers + the cap can hold
            await asyncio.wait_for(loop.sock_sendall(sock, request), PATIENCE_S)
            sent += len(request)
    sock.close()
    assert sent < 200 << 20
    c = await ready_client(rd)
    assert (await c.request("mining.extranonce.subscribe", []))["result"] is True
    await c.close()


async def test_junk_flood_closes_connection(start_daemon: Any, config_factory: Any) -> None:
    rd = await start_daemon(config_factory(stratum={"junk_limit": 3}))
    c = await StratumClient.connect(rd.address)
    await c.send_raw(b"junk\n" * 5)
    replies = []
    while (msg := await c.read_msg()) is not None:
        replies.append(msg)
    assert len(replies) == 3 and all(r["error"][0] == 20 for r in replies)
    await c.close()


async def test_max_connections(start_daemon: Any, config_factory: Any) -> None:
    rd = await start_daemon(config_factory(stratum={"max_connections": 2}))
    a = await ready_client(rd)
    b = await ready_client(rd)
    extra = await StratumClient.connect(rd.address)
    msg = await extra.read_msg()
    assert msg and msg["method"] == "client.show_message"
    assert await extra.read_msg() is None
    assert rd.daemon.metrics.connections_refused == 1
    for c in (a, b, extra):
        await c.close()


async def test_idle_timeout(start_daemon: Any, config_factory: Any) -> None:
    clock = FakeClock(1_800_000_000.0)
    rd = await start_daemon(config_factory(stratum={"idle_timeout_s": 30}), clock=clock)
    c = await StratumClient.connect(rd.address)
    await c.request("mining.subscribe", [])
    clock.advance(31)
    await rd.daemon.server.tick()
    assert await asyncio.wait_for(c.reader.read(), PATIENCE_S) == b""  # closed by the server
    await c.close()


async def test_session_resume_and_duplicate_across_reconnect(pool: Any) -> None:
    c = await ready_client(pool)
    diff, params = await current_job(c)
    en1 = c.extranonce1
    en2 = bytes(4)
    nonce = grind(params, en1, en2, target_from_difficulty(diff))
    sp = submit_params("acct.w1", params, en2, nonce)
    assert (await c.request("mining.submit", sp))["result"] is True
    await c.close()
    server = pool.daemon.server
    await wait_for(lambda: not server.connections, "the server to release the session")
    c2 = await StratumClient.connect(pool.address)
    sub = await c2.request("mining.subscribe", ["test/1", en1.hex()])
    assert sub["result"][1] == en1.hex()  # resumed
    await c2.request("mining.authorize", ["acct.w1", "x"])
    again = await c2.request("mining.submit", sp)
    assert again["error"][0] == 22
    # A third connection asking for an extranonce1 that is in use gets a fresh one.
    c3 = await StratumClient.connect(pool.address)
    sub3 = await c3.request("mining.subscribe", ["test/1", en1.hex()])
    assert sub3["result"][1] != en1.hex()
    await c2.close()
    await c3.close()


async def test_suggest_difficulty_before_and_after_authorize(pool: Any) -> None:
    c = await StratumClient.connect(pool.address)
    await c.request("mining.subscribe", [])
    assert (await c.request("mining.suggest_difficulty", [0.25]))["result"] is True
    await c.request("mining.authorize", ["acct.w1", ""])
    diff, _ = await current_job(c)
    assert diff == Fraction(1, 4)
    await c.request("mining.suggest_difficulty", [1e15])  # clamped to max_difficulty (2**40)
    d2 = await c.notification("mining.set_difficulty")
    await c.notification("mining.notify")
    assert Fraction(d2["params"][0]) == pool.daemon.cfg.stratum.max_difficulty
    await c.close()


async def test_new_block_sends_clean_job_and_old_job_goes_stale(
    start_daemon: Any, config_factory: Any
) -> None:
    rd = await start_daemon(config_factory(stratum={"stale_grace_s": 0}))
    c = await ready_client(rd)
    diff, params = await current_job(c)
    rd.daemon.bitcoind.mine_external_block()
    nxt = await c.notification("mining.notify")
    assert nxt["params"][8] is True and nxt["params"][1] != params[1]
    en2 = bytes(4)
    nonce = grind(params, c.extranonce1, en2, target_from_difficulty(diff))
    r = await c.request("mining.submit", submit_params("acct.w1", params, en2, nonce))
    assert r["error"][0] == 21
    await c.close()


async def test_shutdown_sends_client_reconnect(pool: Any) -> None:
    c = await ready_client(pool)
    await current_job(c)
    await pool.shutdown()
    msg = await c.read_msg()
    while msg and msg.get("method") != "client.reconnect":
        msg = await c.read_msg()
    assert msg and msg["method"] == "client.reconnect"
    assert await c.read_msg() is None
    await c.close()


def test_ban_policy(pool: Any) -> None:
    srv = pool.daemon.server
    assert never_banned("127.0.0.1", frozenset()) and never_banned("::1", frozenset())
    assert never_banned("10.0.0.9", frozenset({"10.0.0.9"}))
    srv.record_abuse("127.0.0.1", "junk", 100.0)
    assert not srv.is_banned("127.0.0.1", 100.0)
    srv.record_abuse("192.0.2.7", "junk", 100.0)
    assert srv.is_banned("192.0.2.7", 101.0)
    assert not srv.is_banned("192.0.2.7", 100.0 + srv.limits.ban_s + 1)
