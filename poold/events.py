"""The daemon's event hub: what happens (a block found, a block settled, a payout sent) is
published here once and fanned out to every subscriber (the API's /api/v1/events streams).

Each subscriber has a bounded queue; one that cannot keep up is disconnected rather than
allowed to grow memory. Publishers are the block submitter (what the daemon sees first-hand)
and the ledger's journal tailer (`ledger.events`). Imports asyncio only: no ledger, no
aiohttp, no Stratum.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

EVENTS_QUEUED_PER_STREAM = 1000  # a subscriber further behind than this is dropped


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENTS_QUEUED_PER_STREAM)
        if self.closed:
            q.put_nowait(None)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                # Too slow: make room for the end marker and let the stream close.
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)
                self._subscribers.discard(q)

    def close(self) -> None:
        self.closed = True
        for q in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self._subscribers.clear()
