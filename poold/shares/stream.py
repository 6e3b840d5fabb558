"""The share log shipped to NATS JetStream, so a node's records outlive its host.

`StreamShipper` (one per daemon, when `[stream] url` is set) follows the local share log and
publishes it byte for byte: each message is a run of whole, CRC-checked frames of one
segment, with headers naming the node, the log's identity, the segment and the byte range.
"Acknowledged means stored": the message id names exactly the bytes carried
(`log_id:segment:start:end`), so a retry of another length is never taken for a duplicate; a
`duplicate` answer is checked against the message the stream really stores (fetched by its
sequence, compared byte for byte); `SHIPPED` (in the log directory) advances only over
bytes the stream acknowledged as stored. On every (re)connection and every
`verify_interval_s` the stream is checked against `SHIPPED`: a stream that is gone is
re-created, and one that holds less than `SHIPPED` (restarted empty, or lost its unsynced
tail) is re-filled from the local log. The connection never reconnects on its own (no
client buffer replays stale publishes, no endless retry inside the client): the shipper
connects again itself, one JSON event per outage.

`lag_s` is how long the oldest record not yet stored by the stream has waited; past
`[stream] max_lag_s` the share writer refuses shares (`lag_gate`). `purge_below` drops
whole segments every consumer has ingested. `mirror` rebuilds a node's log from the stream
into a directory, at the same segments and offsets (reading on from the stream sequence it
last read through, kept in the directory's `MIRRORED`): ingest reads a mirror exactly as it
reads the node's own log, and its checkpoint (a log position) means the same in both, so
records ingested from either are ingested once. Imports nats-py, the share log and its
format; never the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
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


class StreamGap(StreamError):
    """The stream no longer holds records a mirror needs: that log cannot be rebuilt."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    url: str
    stream: str = "POOLD_SHARES"
    subject: str = "poold.shares"  # + ".<node id>"
    replicas: int = 1
    timeout_s: float = 5.0
    min_replicas: int = 1  # a stream keeping fewer copies is not shipped to (StreamError)
    verify_interval_s: float = 10.0  # the stream's tail checked against SHIPPED this often


@dataclass(frozen=True, slots=True)
class Durability:
    """What the stream says about how it keeps messages."""

    replicas: int
    storage: str  # "file" or "memory"
    peers_current: int  # replicas the cluster reports current (the leader counts)

    def problem(self, min_replicas: int) -> str | None:
        if self.storage != "file":
            return f"the stream keeps messages in {self.storage}, not on disk"
        if self.replicas < min_replicas:
            return (
                f"the stream keeps {self.replicas} replica(s), fewer than [stream] "
                f"min_replicas = {min_replicas}"
            )
        return None


async def _quiet_error(exc: Exception) -> None:
    """nats-py's error callback: the shipper reports outages itself (once, no traceback)."""
    log.debug("stream_client_error", error=repr(exc))


async def _connection(cfg: StreamConfig) -> tuple[Any, Any]:
    """(NATS connection, JetStream context); one attempt, bounded by `timeout_s`."""
    import nats

    try:
        nc = await asyncio.wait_for(
            nats.connect(
                cfg.url,
                connect_timeout=cfg.timeout_s,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=_quiet_error,
            ),
            cfg.timeout_s * 2,
        )
    except Exception as exc:  # nats raises its own and OSError kinds
        shown = redact_url(cfg.url)
        raise StreamError(f"cannot connect to the stream at {shown}: {exc!r}") from None
    return nc, nc.jetstream(timeout=cfg.timeout_s)


def _js_config(cfg: StreamConfig) -> Any:
    from nats.js.api import StorageType
    from nats.js.api import StreamConfig as JsStreamConfig

    return JsStreamConfig(
        name=cfg.stream,
        subjects=[f"{cfg.subject}.>"],
        storage=StorageType.FILE,
        num_replicas=cfg.replicas,
        duplicate_window=3600.0,
    )


async def ensure_stream(cfg: StreamConfig, js: Any) -> tuple[Durability, bool]:
    """The stream's durability, creating the stream when it is missing (True: created)."""
    from nats.js.errors import NotFoundError

    created = False
    try:
        try:
            info = await js.stream_info(cfg.stream)
        except NotFoundError:
            info = await js.add_stream(_js_config(cfg))
            created = True
    except Exception as exc:
        raise StreamError(f"cannot read or create stream {cfg.stream}: {exc!r}") from None
    conf = info.config
    storage = getattr(conf.storage, "value", conf.storage) or "file"
    replicas = int(conf.num_replicas or 1)
    peers = info.cluster.replicas if info.cluster is not None else None
    current = 1 + sum(1 for p in peers or () if p.current)
    return Durability(replicas, str(storage), current), created


async def connect(cfg: StreamConfig) -> tuple[Any, Any]:
    """(NATS connection, JetStream context) with the stream created if missing."""
    nc, js = await _connection(cfg)
    try:
        await ensure_stream(cfg, js)
    except StreamError:
        await _close_quietly(nc, "stream_create")
        raise
    return nc, js


@dataclass(frozen=True, slots=True)
class Shipped:
    """What `SHIPPED` holds: how far the stream stores this log, and the stream sequence of
    each segment's first message (what a purge of whole segments cuts at)."""

    pos: LogPosition
    firsts: dict[int, int]


def _load_shipped(directory: Path) -> Shipped:
    try:
        data = orjson.loads((directory / "SHIPPED").read_bytes())
        pos = LogPosition(int(data["segment"]), int(data["offset"]))
        firsts = {int(k): int(v) for k, v in dict(data.get("firsts", {})).items()}
        return Shipped(pos, firsts)
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return Shipped(LogPosition(1, 0), {})


def _save_shipped(directory: Path, pos: LogPosition, firsts: dict[int, int]) -> None:
    tmp = directory / "SHIPPED.tmp"
    body = {
        "segment": pos.segment,
        "offset": pos.offset,
        "firsts": {str(k): v for k, v in firsts.items()},
    }
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(body))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / "SHIPPED")


def next_chunk(
    directory: Path, pos: LogPosition, until: LogPosition | None = None
) -> tuple[LogPosition, bytes, LogPosition]:
    """(where the chunk starts, its bytes: whole frames, where the next one starts); empty
    bytes when nothing new is written (or fsynced: nothing past `until`). Moves to the next
    segment once this one is done."""
    segs = list_segments(directory)
    for seq in segs:
        if seq < pos.segment:
            continue
        if until is not None and seq > until.segment:
            break
        start = pos.offset if seq == pos.segment else 0
        with open(segment_path(directory, seq), "rb") as fh:
            fh.seek(start)
            data = fh.read(CHUNK_BYTES + 1024)
        if until is not None and seq == until.segment:
            data = data[: max(0, until.offset - start)]
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


def _key(pos: LogPosition) -> tuple[int, int]:
    return pos.segment, pos.offset


def message_id(log_id: str, start: LogPosition, end: LogPosition) -> str:
    """Names exactly the bytes a message carries: a retry of another length is another id."""
    return f"{log_id}:{start.segment}:{start.offset}:{end.offset}"


class StreamShipper:
    """Publishes the local share log to the stream, in order, each chunk stored.

    `written` is the local log's position (what exists to ship); `clock` the daemon's."""

    def __init__(
        self,
        cfg: StreamConfig,
        directory: Path,
        node_id: int,
        log_id: Callable[[], str | None],
        *,
        written: Callable[[], LogPosition] | None = None,
        durable: Callable[[], LogPosition] | None = None,
        ingested: Callable[[], LogPosition | None] | None = None,
        clock: Callable[[], float] = time.time,
        connector: Callable[[StreamConfig], Awaitable[tuple[Any, Any]]] | None = None,
    ) -> None:
        self.cfg, self.directory, self.node_id, self.log_id = cfg, directory, node_id, log_id
        self.clock = clock
        self.written = written
        # How far the log is fsynced: nothing past it is shipped (a power cut could take it
        # back, and the stream would then hold records the log lost). None: no bound.
        self.durable = durable
        # The ledger's checkpoint in this log: a stream that lost everything is re-filled
        # from that segment on (what is before it is in the ledger already).
        self.ingested = ingested
        self.connector = connector if connector is not None else _connection
        saved = _load_shipped(directory)
        self.shipped = saved.pos
        self._firsts = dict(saved.firsts)
        # Not ready until the stream was reached and checked (readyz says so from the start).
        self.problem: str | None = "the stream was not reached yet"
        self._outage_since: float | None = None  # when the current outage began
        self.failures = 0  # shipping attempts that failed
        self.outages = 0
        self.rewinds = 0  # times the stream held less than SHIPPED and was re-filled
        self.duplicates = 0  # duplicate answers checked against what the stream stores
        self.bytes_shipped = 0
        self.durability: Durability | None = None
        # The last time the stream stored all that was written then; -inf until a round saw
        # it so (a log left behind by an earlier run waited for as long as it is unknown).
        self.caught_up_at = float("-inf")
        # (when, how far the log was written then), oldest first: once SHIPPED passes a
        # sample's position, everything written by its time is stored.
        self._samples: deque[tuple[float, tuple[int, int]]] = deque()
        self._js: Any = None
        self._nc: Any = None
        self._next_verify = 0.0

    @property
    def subject(self) -> str:
        return f"{self.cfg.subject}.{self.node_id}"

    def lag_s(self, now: float | None = None) -> float:
        """How long the oldest record the stream does not store yet has waited (0: none)."""
        if self.written is None or _key(self.shipped) >= _key(self.written()):
            return 0.0
        return max(0.0, (self.clock() if now is None else now) - self.caught_up_at)

    def _note_caught_up(self, when: float) -> None:
        if self.written is None or _key(self.shipped) >= _key(self.written()):
            self.caught_up_at = when
            self._samples.clear()

    def _sample(self) -> None:
        if self.written is not None and len(self._samples) < 100_000:
            self._samples.append((self.clock(), _key(self.written())))

    def _advance(self, after: LogPosition) -> None:
        self.shipped = after
        done = _key(after)
        samples = self._samples
        while samples and samples[0][1] <= done:
            self.caught_up_at = max(self.caught_up_at, samples.popleft()[0])

    async def _ensure(self) -> Any:
        """The JetStream context, connecting and checking the stream first when needed."""
        if self._nc is not None and not self._nc.is_connected:
            await self._drop()  # the server went away (and may be back): connect again
        if self._js is None:
            self._nc, self._js = await self.connector(self.cfg)
            self._next_verify = 0.0
        if self.clock() >= self._next_verify:
            try:
                await self.verify()
            except StreamError:
                await self._drop()
                raise
            self._next_verify = self.clock() + self.cfg.verify_interval_s
        return self._js

    async def verify(self) -> None:
        """Check the stream against SHIPPED: re-create a stream that is gone, re-fill one
        that holds less than SHIPPED says (from the oldest segment the local log still has
        when it holds nothing of this log)."""
        from nats.js.errors import NotFoundError

        js = self._js
        durability, created = await ensure_stream(self.cfg, js)
        if durability != self.durability:
            log.info(
                "stream_durability",
                stream=self.cfg.stream,
                replicas=durability.replicas,
                storage=durability.storage,
                current=durability.peers_current,
                min_replicas=self.cfg.min_replicas,
            )
        self.durability = durability
        problem = durability.problem(self.cfg.min_replicas)
        if problem is not None:
            raise StreamError(f"{problem}: the host-loss promise needs more (not shipped)")
        if created:
            log.warning("stream_created", stream=self.cfg.stream)
            self._firsts = {}
        log_id = self.log_id() or ""
        stored: LogPosition | None = None
        try:
            last = await js.get_last_msg(self.cfg.stream, self.subject)
        except NotFoundError:
            last = None
        except Exception as exc:
            raise StreamError(f"cannot read stream {self.cfg.stream}: {exc!r}") from None
        if last is not None:
            h = dict(last.headers or {})
            if h.get("log", "") == log_id and "end" in h:
                stored = LogPosition(int(h["segment"]), int(h["end"]))
        if stored is not None and _key(stored) >= _key(self.shipped):
            return
        if stored is None:
            segs = await asyncio.to_thread(list_segments, self.directory)
            first = segs[0] if segs else 1
            checkpoint = self.ingested() if self.ingested is not None else None
            if checkpoint is not None:
                first = max(first, checkpoint.segment)
            back = LogPosition(first, 0)
            if _key(back) == _key(self.shipped):
                return  # nothing shipped that the stream should hold
            self._firsts = {}
            if _key(back) > _key(self.shipped):
                # Everything before `back` is in the ledger: ship from the first byte of the
                # checkpoint's segment (a mirror needs each segment from its first byte).
                log.info("stream_starts_at_checkpoint", stream=self.cfg.stream, segment=first)
                self.shipped = back
                await asyncio.to_thread(_save_shipped, self.directory, back, {})
                return
        else:
            back = stored
            self._firsts = {
                s: q
                for s, q in self._firsts.items()
                if s < back.segment or (s == back.segment and back.offset)
            }
        log.warning(
            "stream_behind",
            stream=self.cfg.stream,
            shipped_segment=self.shipped.segment,
            shipped_offset=self.shipped.offset,
            refill_segment=back.segment,
            refill_offset=back.offset,
        )
        self.rewinds += 1
        self.shipped = back
        # What the stream lacks now is as old as unknown: the lag bound holds until re-filled.
        self.caught_up_at = float("-inf")
        self._samples.clear()
        await asyncio.to_thread(_save_shipped, self.directory, back, dict(self._firsts))

    async def _confirm_stored(
        self, js: Any, seq: int, headers: dict[str, str], data: bytes, after: LogPosition
    ) -> None:
        """A duplicate answer: the stream must store exactly these bytes at `seq`. A message
        purged since (its id still remembered) is no loss when the ledger has ingested past
        it; otherwise shipping stops here and says why."""
        from nats.js.errors import NotFoundError

        self.duplicates += 1
        try:
            stored = await js.get_msg(self.cfg.stream, seq=seq)
        except NotFoundError:
            checkpoint = self.ingested() if self.ingested is not None else None
            if checkpoint is not None and _key(checkpoint) >= _key(after):
                return
            raise StreamError(
                f"the stream answered a duplicate for {headers['Nats-Msg-Id']} but holds no "
                f"message {seq}: not shipped"
            ) from None
        except Exception as exc:
            raise StreamError(
                f"the stream answered a duplicate for {headers['Nats-Msg-Id']} but its message "
                f"{seq} cannot be read: {exc!r}"
            ) from None
        h = dict(stored.headers or {})
        if stored.data != data or h.get("Nats-Msg-Id") != headers["Nats-Msg-Id"]:
            raise StreamError(
                f"the stream answered a duplicate for {headers['Nats-Msg-Id']} but stores "
                f"other bytes at {seq} ({h.get('Nats-Msg-Id')}): not shipped"
            )

    async def ship_once(self) -> int:
        """Ship everything written so far; returns the bytes shipped."""
        js = await self._ensure()
        log_id = self.log_id() or ""
        total = 0
        while True:
            began = self.clock()
            self._sample()
            until = self.durable() if self.durable is not None else None
            start, data, after = await asyncio.to_thread(
                next_chunk, self.directory, self.shipped, until
            )
            if not data:
                if after != self.shipped:
                    self.shipped = after
                self._note_caught_up(began)
                return total
            headers = {
                "Nats-Msg-Id": message_id(log_id, start, after),
                "node": str(self.node_id),
                "log": log_id,
                "segment": str(start.segment),
                "offset": str(start.offset),
                "end": str(after.offset),
            }
            try:
                ack = await js.publish(
                    self.subject, data, headers=headers, timeout=self.cfg.timeout_s
                )
            except Exception as exc:
                await self._drop()
                raise StreamError(
                    f"the stream did not take node {self.node_id}'s records: {exc!r}"
                ) from None
            if ack.duplicate:
                await self._confirm_stored(js, ack.seq, headers, data, after)
            if start.offset == 0 and start.segment not in self._firsts:
                self._firsts[start.segment] = int(ack.seq)
            self._advance(after)
            await asyncio.to_thread(_save_shipped, self.directory, after, dict(self._firsts))
            total += len(data)
            self.bytes_shipped += len(data)

    async def purge_below(self, segment: int) -> int:
        """Drop this node's messages of segments below `segment` (whole segments only, and
        only what the stream holds below the first message of `segment`); returns how many
        segments' messages went. Nothing when that message's sequence is not known."""
        if self._js is None or _key(self.shipped) < (segment, 0):
            return 0
        seq = self._firsts.get(segment)
        if seq is None:
            return 0
        # Nothing lies below the stream's first message, and a purge "below sequence 1" is
        # taken by the server as a purge without a bound: every message of this node would go
        # (the first node to ship to a new stream lost its whole log at its first purge).
        if seq > 1:
            try:
                await self._js.purge_stream(self.cfg.stream, seq=seq, subject=self.subject)
            except Exception as exc:
                raise StreamError(f"cannot purge stream {self.cfg.stream}: {exc!r}") from None
        gone = [s for s in self._firsts if s < segment]
        for s in gone:
            del self._firsts[s]
        await asyncio.to_thread(_save_shipped, self.directory, self.shipped, dict(self._firsts))
        if gone:
            log.info(
                "stream_purged", stream=self.cfg.stream, below_segment=segment, segments=len(gone)
            )
        return len(gone)

    async def step(self) -> bool:
        """One shipping round with its outage bookkeeping; True when it succeeded."""
        now = self.clock()
        try:
            try:
                had_connection = self._js is not None
                await self.ship_once()
            except StreamError:
                if not had_connection:
                    raise
                # A connection the server dropped (restarted, say) before we noticed: one
                # fresh attempt before this counts as an outage.
                await self.ship_once()
        except StreamError as exc:
            self.failures += 1
            if self._outage_since is None:
                self._outage_since = now
                self.outages += 1
                log.error("stream_unreachable", stream=self.cfg.stream, error=str(exc))
            self.problem = str(exc)
            self._note_caught_up(now)
            return False
        if self._outage_since is not None:
            log.warning(
                "stream_recovered",
                stream=self.cfg.stream,
                outage_s=round(now - self._outage_since, 3),
                after=self.problem,
            )
            self._outage_since = None
        self.problem = None
        return True

    async def run(self, stopping: asyncio.Event, interval_s: float = 0.2) -> None:
        """Ship every `interval_s` until `stopping`, then once more; errors are retried."""
        while True:
            await self.step()
            if stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)
        await self.close()

    async def _drop(self) -> None:
        """Forget a connection that failed: the next round connects and checks again."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close_quietly(nc, "stream_failed")

    async def close(self) -> None:
        await self._drop()


def write_chunk(directory: Path, node_id: int, headers: dict[str, str], data: bytes) -> bool:
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
        raise StreamGap(
            f"the stream lacks node {node_id}'s records of segment {seq} from offset {size} "
            f"(the next message starts at {offset}): its log cannot be rebuilt"
        )
    with open(path, "ab") as fh:
        fh.write(data[size - offset :])
    return True


MIRRORED = "MIRRORED"  # in a mirror directory: the stream sequence read through


def _mirrored_seq(directory: Path) -> int:
    path = directory / MIRRORED
    return int(path.read_text()) if path.exists() else 0


async def mirror(
    cfg: StreamConfig, node_id: int, directory: Path, *, js: Any = None
) -> tuple[int, int]:
    """Rebuild node `node_id`'s share log in `directory` from the stream (what is there
    already is kept; only newer chunks are added). Reads on from the stream sequence the
    last call read through (`MIRRORED`): a mirror followed every pass reads each message
    once. Returns (messages read, chunks added)."""
    from nats.js.errors import NotFoundError

    nc = None
    if js is None:
        nc, js = await connect(cfg)
    read = added = 0
    try:
        subject = f"{cfg.subject}.{node_id}"
        try:
            last = int((await js.get_last_msg(cfg.stream, subject)).seq)
        except NotFoundError:
            return 0, 0  # nothing of this node in the stream
        except Exception as exc:
            raise StreamError(f"cannot read stream {cfg.stream}: {exc!r}") from None
        after = _mirrored_seq(directory)
        if after >= last:
            if after == last:
                return 0, 0
            after = 0  # the stream was made anew (its sequences restarted): read it all
        try:
            touched = await _mirror_from(cfg, js, node_id, directory, subject, after, last)
        except StreamError:
            if after == 0:
                raise
            # A gap after a stream was re-created and re-filled (new sequences for bytes
            # this mirror lacks): read the whole stream once.
            touched = await _mirror_from(cfg, js, node_id, directory, subject, 0, last)
        read, added = touched.pop(-1), len(touched)
        await asyncio.to_thread(_note_mirrored, directory, set(touched), last)
    finally:
        if nc is not None:
            await _close_quietly(nc, "mirror_close")
    return read, added


def _note_mirrored(directory: Path, segments: set[int], seq: int) -> None:
    """Every chunk read is on disk (synced with its directory) before the sequence is."""
    for segment in sorted(segments):
        with open(segment_path(directory, segment), "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(directory)
    tmp = directory / (MIRRORED + ".tmp")
    tmp.write_text(str(seq))
    os.replace(tmp, directory / MIRRORED)
    fsync_dir(directory)


async def _mirror_from(
    cfg: StreamConfig, js: Any, node_id: int, directory: Path, subject: str, after: int, last: int
) -> list[int]:
    """Read the node's messages from stream sequence `after + 1` through `last`: the segment
    of each chunk added, then the number of messages read."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    policy = (
        ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        if after == 0
        else ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1)
    )
    read, touched = 0, []
    seq = after
    sub = await js.pull_subscribe(subject, durable=None, stream=cfg.stream, config=policy)
    try:
        while seq < last:
            try:
                msgs = await sub.fetch(256, timeout=cfg.timeout_s)
            except Exception as exc:
                raise StreamError(
                    f"the stream stopped answering while node {node_id}'s log was read "
                    f"({read} messages, through sequence {seq} of {last}): {exc!r}"
                ) from None
            for msg in msgs:
                read += 1
                seq = max(seq, int(msg.metadata.sequence.stream))
                headers = dict(msg.headers or {})
                if await asyncio.to_thread(write_chunk, directory, node_id, headers, msg.data):
                    touched.append(int(headers["segment"]))
                await msg.ack()
    finally:
        try:
            await sub.unsubscribe()
        except Exception as exc:  # the server drops the consumer with the connection
            log.debug("stream_unsubscribe_failed", error=repr(exc))
    return [*touched, read]


async def _close_quietly(nc: Any, what: str) -> None:
    """Close a NATS connection whose work is done or failed: a close that fails cannot lose
    anything, but it is logged."""
    try:
        await nc.close()
    except Exception as exc:
        log.debug("stream_connection_close_failed", what=what, error=repr(exc))
