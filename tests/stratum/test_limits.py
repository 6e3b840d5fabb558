"""What one client may hold: worker names, connections per address, idle slots (issue 11)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from poold.stratum import protocol as p
from poold.stratum.session import WorkerQuota, parse_user
from tests.helpers import PATIENCE_S, FakeClock, StratumClient, wait_for
from tests.stratum.test_session import NOW, Sink, jobs, make_session, out

__all__ = ["jobs"]  # the fixture, imported for its side effect on this module


def test_trailing_newline_is_not_a_name() -> None:
    # `$` matches before a final "\n": "victim\n" once became an account beside "victim".
    assert parse_user("victim\n") is None
    assert parse_user("victim.rig\n") is None
    assert parse_user("victim\n.rig") is None
    assert parse_user("victim") == ("victim", "default")


def test_authorize_refuses_newline_name(jobs: Any) -> None:
    s = make_session(jobs, Sink())
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "victim\n", "x"), NOW)
    reply = out(s)[-1]
    assert reply["error"][0] == 24 and s.workers == {}


def test_workers_per_connection_are_capped(jobs: Any) -> None:
    s = make_session(jobs, Sink(), max_workers=3)
    s.handle(p.Subscribe(1, "x", None), NOW)
    out(s)
    for i in range(3):
        s.handle(p.Authorize(10 + i, f"acct.w{i}", "x"), NOW)
    s.handle(p.Authorize(20, "acct.w0", "x"), NOW)  # a name it already has: still fine
    s.handle(p.Authorize(21, "acct.w9", "x"), NOW)
    replies = [m for m in out(s) if "id" in m and m.get("method") is None]
    assert [r["result"] for r in replies] == [True, True, True, True, None]
    assert replies[-1]["error"][0] == 24 and "3 workers per connection" in replies[-1]["error"][1]
    assert len(s.workers) == 3


def test_workers_per_address_are_shared_and_released(jobs: Any) -> None:
    quota = WorkerQuota(4)
    a = make_session(jobs, Sink())
    b = make_session(jobs, Sink())
    a.quota = b.quota = quota
    for s in (a, b):
        s.handle(p.Subscribe(1, "x", None), NOW)
    for i in range(3):
        a.handle(p.Authorize(i, f"acct.a{i}", "x"), NOW)
        b.handle(p.Authorize(i, f"acct.b{i}", "x"), NOW)
    assert len(a.workers) + len(b.workers) == 4 and quota.count == 4
    last = out(b)[-1]
    assert last["error"][0] == 24 and "4 workers per address" in last["error"][1]
    a.release(NOW)
    a.release(NOW)  # twice (connection_lost after a close): counted once
    assert quota.count == len(b.workers)
    b.handle(p.Authorize(9, "acct.b9", "x"), NOW)
    assert out(b)[-1]["result"] is True


async def test_authorize_flood_keeps_memory_bounded(start_daemon: Any, config_factory: Any) -> None:
    rd = await start_daemon(config_factory(stratum={"max_workers_per_connection": 100}))
    c = await StratumClient.connect(rd.address)
    await c.request("mining.subscribe", ["flood"])
    n = 20_000
    names = [f"acct.w{i:06d}" + "x" * 40 for i in range(n)]
    lines = b"".join(
        orjson.dumps({"id": i, "method": "mining.authorize", "params": [u, "x"]}) + b"\n"
        for i, u in enumerate(names)
    )
    await c.send_raw(lines)
    errors = replies = 0
    while replies < n:
        msg = await c.read_msg()
        assert msg is not None
        if msg.get("method") is None:
            replies += 1
            errors += bool(msg.get("error"))
    (conn,) = rd.daemon.server.connections
    assert conn.session is not None and len(conn.session.workers) == 100
    assert errors == n - 100
    await c.close()


async def test_connections_per_address(start_daemon: Any, config_factory: Any) -> None:
    rd = await start_daemon(config_factory(stratum={"max_connections_per_ip": 2}))
    srv = rd.daemon.server
    # Loopback is exempt, as the allowlist is: a real socket from 127.0.0.1 always gets in.
    clients = [await StratumClient.connect(rd.address) for _ in range(4)]
    for c in clients:
        assert (await c.request("mining.subscribe", []))["result"]
    assert srv.hosts["127.0.0.1"].connections == 4
    # Any other address holds at most max_connections_per_ip; leaving frees the place.
    assert srv.admit_host("192.0.2.7") is not None
    assert srv.admit_host("192.0.2.7") is not None
    assert srv.admit_host("192.0.2.7") is None
    srv.leave_host("192.0.2.7")
    assert srv.admit_host("192.0.2.7") is not None
    quota = srv.hosts["192.0.2.7"].quota
    assert quota.limit == rd.daemon.cfg.stratum.max_workers_per_ip
    for c in clients:
        await c.close()
    # No entry left behind per address that went away.
    await wait_for(lambda: "127.0.0.1" not in srv.hosts, "the address's entry to go")


async def test_trickled_bytes_do_not_hold_a_slot(start_daemon: Any, config_factory: Any) -> None:
    """Bytes without a newline are no activity: the connection still times out (slowloris).
    The daemon's clock is the test's, so "idle for a while" is a step, not a wait."""
    clock = FakeClock(NOW)
    rd = await start_daemon(config_factory(stratum={"idle_timeout_s": 10}), clock=clock)
    c = await StratumClient.connect(rd.address)
    await c.request("mining.subscribe", [])
    server = rd.daemon.server
    for _ in range(10):  # a byte every simulated second, never a newline
        c.writer.write(b" ")
        await c.writer.drain()
        clock.advance(1)
        await server.tick()
    clock.advance(1)
    await server.tick()
    assert not server.connections  # closed for idleness after 10 s of it
    assert await asyncio.wait_for(c.reader.read(), PATIENCE_S) == b""
    await c.close()


async def test_whole_lines_keep_a_connection(start_daemon: Any, config_factory: Any) -> None:
    clock = FakeClock(NOW)
    rd = await start_daemon(config_factory(stratum={"idle_timeout_s": 10}), clock=clock)
    c = await StratumClient.connect(rd.address)
    server = rd.daemon.server
    for _ in range(10):  # 60 simulated seconds of requests, each 6 s apart
        assert (await c.request("mining.subscribe", []))["result"]
        clock.advance(6)
        await server.tick()
    assert len(server.connections) == 1
    clock.advance(11)
    await server.tick()
    await wait_for(lambda: not server.connections, "the connection closed once idle")
    await c.close()


def test_quota_unlimited_for_exempt() -> None:
    q = WorkerQuota(None)
    assert all(q.take() for _ in range(1000)) and q.count == 1000
