"""Live events over Server-Sent Events: journal postings by any process and blocks the daemon
finds reach every subscriber, and a subscriber that cannot keep up is cut off, not buffered."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from poold.api.app import ApiContext, make_app
from poold.events import EVENTS_QUEUED_PER_STREAM, EventHub
from poold.ledger.events import tail_journal
from poold.ledger.ingest import ingest
from poold.ledger.maturity import _apply, _pending
from poold.ledger.settle import settle_pending
from poold.metrics import Metrics
from tests.helpers import PATIENCE_S, make_config
from tests.ledger.test_settle import mine


async def read_events(
    resp: aiohttp.ClientResponse, n: int, *, heartbeats: bool = False
) -> list[dict[str, Any]]:
    """The next n events (heartbeats skipped unless asked for)."""
    out: list[dict[str, Any]] = []
    kind = None
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), PATIENCE_S)).decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            event = json.loads(line[6:])
            assert event["type"] == kind and event["summary"]
            if heartbeats or kind != "heartbeat":
                out.append(event)
    return out


async def test_journal_postings_become_events(ledger: sa.Engine, tmp_path: Path) -> None:
    hub = EventHub()
    ctx = ApiContext(make_config(tmp_path), Metrics(), ledger, events=hub, keepalive_s=0.2)
    runner = web.AppRunner(make_app(ctx))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    # From the start of the (empty) journal: no need to wait until the tailer has looked.
    tailer = asyncio.create_task(tail_journal(ledger, hub, interval_s=0.05, after=0))
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{port}/api/v1/events") as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            # Bytes at once (the stream is open), then a heartbeat a page can see while
            # nothing happens: the server's time, in UTC.
            assert await asyncio.wait_for(r.content.readline(), PATIENCE_S) == b": connected\n"
            [beat] = await read_events(r, 1, heartbeats=True)
            assert beat["type"] == "heartbeat" and beat["summary"].endswith(" UTC")
            mine(tmp_path / "log", 40, {30: True, 39: True})
            await asyncio.to_thread(ingest, ledger, tmp_path / "log", 0)
            await asyncio.to_thread(settle_pending, ledger, pool_fee=Fraction(1, 100))
            settled = await read_events(r, 2)
            assert [e["type"] for e in settled] == ["block_settled", "block_settled"]
            assert (
                settled[0]["summary"].startswith("20")
                and " UTC · block settled " in (settled[0]["summary"])
            )
            block_hash, entry = _pending(ledger)[0]
            await asyncio.to_thread(_apply, ledger, block_hash, entry, -1)
            [orphaned] = await read_events(r, 1)
            assert orphaned["type"] == "block_orphaned" and orphaned["reference"] == block_hash
            hub.publish(
                {"type": "block_found", "height": 7, "accepted": True, "finder": "a.w",
                 "time_ms": 1_800_000_000_000}
            )  # fmt: skip
            [found] = await read_events(r, 1)
            assert found["height"] == 7
            assert found["summary"] == "2027-01-15 08:00:00 UTC · block 7 found by a.w, accepted"
            hub.close()  # shutdown ends the stream
            assert (await asyncio.wait_for(r.content.read(), PATIENCE_S)).strip() == b""
    finally:
        tailer.cancel()
        await runner.cleanup()


async def test_a_slow_subscriber_is_cut_off() -> None:
    hub = EventHub()
    slow = hub.subscribe()
    fast = hub.subscribe()
    for i in range(EVENTS_QUEUED_PER_STREAM + 5):
        hub.publish({"type": "x", "i": i})
        if not fast.empty():
            fast.get_nowait()
    assert slow.qsize() == 1 and slow.get_nowait() is None  # only the end marker is left
    hub.publish({"type": "after"})
    assert fast.get_nowait() == {"type": "after"}
