"""The share log shipped to NATS JetStream, so a node's records outlive its host.

`StreamShipper` (one per daemon, when `[stream] url` is set) follows the local share log and
publishes it byte for byte: each message is a run of whole, CRC-checked frames of one
segment, with headers naming the node, the log's identity, the segment and the offset. The
publish is acknowledged by JetStream (a file-backed stream) before the shipped position is
saved (`SHIPPED` in the log directory); a message sent twice (a crash between the ack and
the save) carries the same `Nats-Msg-Id` and the stream drops it, and the mirror ignores it
anyway. Segments are pruned only below what is both ingested and shipped.

`mirror` rebuilds a node's log from the stream into a directory, at the same segments and
offsets: ingest reads a mirror exactly as it reads the node's own log, and its checkpoint
(a log position) means the same in both, so records ingested from either are ingested once.
Imports nats-py, the share log and its format; never the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import structlog

from poold.config import redact_url
from poold.shares.log import (
    LogPosition,
    frames,
    fsync_dir,
    list_segments,
    segment_path,
)

log = structlog.get_logger(__name__)

CHUNK_BYTES = 512 * 1024  # at most this much of a segment per message (whole frames)


class StreamError(RuntimeError):
    """The stream cannot be reached or refused a message; the message says which."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    url: str
    stream: str = "POOLD_SHARES"
    subject: str = "poold.shares"  # + ".<node id>"
    replicas: int = 1
    timeout_s: float = 5.0


async def connect(cfg: StreamConfig) -> tuple[Any, Any]:
    """(NATS connection, JetStream context) with the stream created if missing."""
    import nats
    from nats.js.api import StorageType
    from nats.js.api import StreamConfig as JsStreamConfig

    try:
        nc = await nats.connect(
            cfg.url, connect_timeout=cfg.timeout_s, max_reconnect_attempts=-1, allow_reconnect=True
        )
    except Exception as exc:  # nats raises its own and OSError kinds
        shown = redact_url(cfg.url)
        raise StreamError(f"cannot connect to the stream at {shown}: {exc!r}") from None
    js = nc.jetstream(timeout=cfg.timeout_s)
    try:
        await js.add_stream(
            JsStreamConfig(
                name=cfg.stream,
                subjects=[f"{cfg.subject}.>"],
                storage=StorageType.FILE,
                num_replicas=cfg.replicas,
                duplicate_window=3600.0,
            )
        )
    except Exception as exc:
        await _close_quietly(nc, "stream_create")
        raise StreamError(f"cannot create stream {cfg.stream}: {exc!r}") from None
    return nc, js


def _load_shipped(directory: Path) -> LogPosition:
    try:
        data = orjson.loads((directory / "SHIPPED").read_bytes())
        return LogPosition(int(data["segment"]), int(data["offset"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return LogPosition(1, 0)


def _save_shipped(directory: Path, pos: LogPosition) -> None:
    tmp = directory / "SHIPPED.tmp"
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps({"segment": pos.segment, "offset": pos.offset}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / "SHIPPED")


def next_chunk(directory: Path, pos: LogPosition) -> tuple[LogPosition, bytes, LogPosition]:
    """(where the chunk starts, its bytes: whole frames, where the next one starts); empty
    bytes when nothing new is written. Moves to the next segment once this one is done."""
    segs = list_segments(directory)
    for seq in segs:
        if seq < pos.segment:
            continue
        start = pos.offset if seq == pos.segment else 0
        with open(segment_path(directory, seq), "rb") as fh:
            fh.seek(start)
            data = fh.read(CHUNK_BYTES + 1024)
        end = 0
        for _s, e, _p in frames(data):
            if e > CHUNK_BYTES and end:
                break
            end = e
        if end:
            return LogPosition(seq, start), data[:end], LogPosition(seq, start + end)
        if seq == segs[-1]:
            break  # the newest segment: nothing more yet
        # A finished segment (a newer one exists) with nothing left: go on to the next.
    return pos, b"", pos


class StreamShipper:
    """Publishes the local share log to the stream, in order, each chunk acknowledged."""

    def __init__(
        self,
        cfg: StreamConfig,
        directory: Path,
        node_id: int,
        log_id: Callable[[], str | None],
    ) -> None:
        self.cfg, self.directory, self.node_id, self.log_id = cfg, directory, node_id, log_id
        self.shipped = _load_shipped(directory)
        self.problem: str | None = None
        self.bytes_shipped = 0
        self._js: Any = None
        self._nc: Any = None

    async def ship_once(self) -> int:
        """Ship everything written so far; returns the bytes shipped."""
        if self._js is None:
            self._nc, self._js = await connect(self.cfg)
        log_id = self.log_id() or ""
        total = 0
        while True:
            start, data, after = await asyncio.to_thread(next_chunk, self.directory, self.shipped)
            if not data:
                if after != self.shipped:
                    self.shipped = after
                return total
            headers = {
                "Nats-Msg-Id": f"{log_id}:{start.segment}:{start.offset}",
                "node": str(self.node_id),
                "log": log_id,
                "segment": str(start.segment),
                "offset": str(start.offset),
            }
            try:
                await self._js.publish(
                    f"{self.cfg.subject}.{self.node_id}",
                    data,
                    headers=headers,
                    timeout=self.cfg.timeout_s,
                )
            except Exception as exc:
                raise StreamError(
                    f"the stream did not take node {self.node_id}'s records: {exc!r}"
                ) from None
            self.shipped = after
            await asyncio.to_thread(_save_shipped, self.directory, after)
            total += len(data)
            self.bytes_shipped += len(data)

    async def run(self, stopping: asyncio.Event, interval_s: float = 0.2) -> None:
        """Ship every `interval_s` until `stopping`, then once more; errors are retried."""
        while True:
            try:
                await self.ship_once()
                if self.problem is not None:
                    log.warning("stream_recovered", after=self.problem)
                self.problem = None
            except StreamError as exc:
                if self.problem is None:
                    log.error("stream_ship_failed", error=str(exc))
                self.problem = str(exc)
            if stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
        await self.close()

    async def close(self) -> None:
        if self._nc is not None:
            await _close_quietly(self._nc, "stream_close")
            self._nc = self._js = None


def _write_chunk(directory: Path, node_id: int, headers: dict[str, str], data: bytes) -> bool:
    """Put one chunk where it lies in the node's log; False when it was there already."""
    seq, offset = int(headers["segment"]), int(headers["offset"])
    if not (directory / "LOG_ID").exists():
        directory.mkdir(parents=True, exist_ok=True)
        ident = {"log_id": headers.get("log", ""), "node_id": node_id}
        (directory / "LOG_ID").write_bytes(orjson.dumps(ident))
    path = segment_path(directory, seq)
    size = path.stat().st_size if path.exists() else 0
    if offset + len(data) <= size:
        return False  # a chunk sent twice
    if offset > size:
        raise StreamError(
            f"the stream lacks node {node_id}'s records of segment {seq} from offset {size} "
            f"(the next message starts at {offset}): its log cannot be rebuilt"
        )
    with open(path, "ab") as fh:
        fh.write(data[size - offset :])
    return True


async def mirror(
    cfg: StreamConfig, node_id: int, directory: Path, *, js: Any = None
) -> tuple[int, int]:
    """Rebuild node `node_id`'s share log in `directory` from the stream (what is there
    already is kept; only newer chunks are added). Returns (messages read, chunks added)."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    nc = None
    if js is None:
        nc, js = await connect(cfg)
    read = added = 0
    try:
        subject = f"{cfg.subject}.{node_id}"
        try:
            info = await js.stream_info(cfg.stream, subjects_filter=subject)
            want = int((info.state.subjects or {}).get(subject, 0))
        except Exception as exc:
            raise StreamError(f"cannot read stream {cfg.stream}: {exc!r}") from None
        if want == 0:
            return 0, 0
        sub = await js.pull_subscribe(
            subject,
            durable=None,
            stream=cfg.stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        try:
            while read < want:
                try:
                    msgs = await sub.fetch(256, timeout=cfg.timeout_s)
                except Exception as exc:
                    raise StreamError(
                        f"the stream stopped answering while node {node_id}'s log was read "
                        f"({read} of {want} messages): {exc!r}"
                    ) from None
                for msg in msgs:
                    read += 1
                    headers = dict(msg.headers or {})
                    if await asyncio.to_thread(_write_chunk, directory, node_id, headers, msg.data):
                        added += 1
                    await msg.ack()
        finally:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the server drops the consumer with the connection
                log.debug("stream_unsubscribe_failed", error=repr(exc))
        if added:
            await asyncio.to_thread(fsync_dir, directory)
    finally:
        if nc is not None:
            await _close_quietly(nc, "mirror_close")
    return read, added


async def _close_quietly(nc: Any, what: str) -> None:
    """Close a NATS connection whose work is done or failed: a close that fails cannot lose
    anything, but it is logged."""
    try:
        await nc.close()
    except Exception as exc:
        log.debug("stream_connection_close_failed", what=what, error=repr(exc))
