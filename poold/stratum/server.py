"""The Stratum transport: asyncio Protocols on the running (uv)loop, nothing else.

Owns sockets, the connection table, idle timeouts, bans and write back-pressure. All policy is
in `Session`; all parsing in `protocol.py`. Outgoing bytes are queued and sent by one callback
per loop iteration, which first calls `before_reply()`: every share accepted in that iteration
reaches the share log with a single write() before any of its `true` replies leaves. A session's
`outbox` is its send buffer until then (one write() per connection per iteration).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog

from poold.jobs.job import Job
from poold.metrics import Metrics
from poold.shares.accepted import ShareSink
from poold.stratum import protocol as p
from poold.stratum.extranonce import ExtranoncePool
from poold.stratum.session import JobSource, Session, SessionPolicy, WorkerQuota

log = structlog.get_logger(__name__)

MAX_WRITE_BUFFER = 1 << 20  # default: a miner that stops reading is dropped before it costs more
CONNECTIONS_PER_SWEEP_STEP = (
    200  # connections handled per loop iteration in periodic sweeps (keeps p99 low)
)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int
    max_line_bytes: int
    idle_timeout_s: float
    ban_s: float
    allowlist: frozenset[str] = frozenset()
    max_write_buffer: int = MAX_WRITE_BUFFER
    max_connections_per_ip: int = 256  # loopback and `allowlist` are exempt
    max_workers_per_ip: int = 20_000  # worker names authorized from one address at once


@dataclass(slots=True)
class _Host:
    """What one remote address holds right now: connections, and its worker-name quota."""

    connections: int
    quota: WorkerQuota


@dataclass(slots=True)
class _Ban:
    until: float
    reason: str = field(default="")


def never_banned(host: str, allowlist: frozenset[str]) -> bool:
    if host in allowlist:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MinerConnection(asyncio.Protocol):
    __slots__ = (
        "_log",
        "close_after",
        "conn",
        "host",
        "last_activity",
        "peer",
        "queued",
        "received_at",
        "server",
        "session",
        "transport",
    )

    def __init__(self, server: StratumServer) -> None:
        self.server = server
        self.received_at = 0.0  # when the oldest line not answered yet arrived (perf_counter)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.host = ""
        self.last_activity = 0.0
        self.conn = p.StratumConnection(server.limits.max_line_bytes)
        self._log: structlog.typing.FilteringBoundLogger | None = None
        self.peer = ""
        self.close_after = False
        self.queued = False  # in the server's send list for this loop iteration

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.host = str(peer[0])
        srv = self.server
        now = srv.clock()
        self.last_activity = now
        if not srv.accepting:
            transport.abort()
            return
        if srv.is_banned(self.host, now):
            srv.metrics.connections_refused += 1
            transport.abort()
            return
        if len(srv.connections) >= srv.limits.max_connections:
            srv.metrics.connections_refused += 1
            transport.write(p.encode_notification("client.show_message", ["pool is full"]))
            transport.close()
            return
        quota = srv.admit_host(self.host)
        if quota is None:
            srv.metrics.connections_refused += 1
            transport.write(
                p.encode_notification("client.show_message", ["too many connections from you"])
            )
            transport.close()
            return
        self.peer = f"{self.host}:{peer[1]}"
        self.session = srv.new_session(self.peer, now, quota)
        self.session.log_event = self._debug
        srv.connections.add(self)
        srv.metrics.connections = len(srv.connections)
        srv.metrics.connections_total += 1
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Past this many unsent bytes asyncio calls pause_writing(): the miner is not reading.
        transport.set_write_buffer_limits(high=srv.limits.max_write_buffer)

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """This connection's logger, bound on first use (most connections never log)."""
        if self._log is None:
            en1 = self.session.extranonce1.hex() if self.session else ""
            self._log = log.bind(peer=self.peer, en1=en1)
        return self._log

    def _debug(self, event: str, **kw: object) -> None:
        self.log.debug(event, **kw)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or self.close_after:
            return
        now = self.server.clock()
        try:
            events = self.conn.receive_data(data)
        except p.RemoteProtocolError as exc:
            self.log.info("miner_protocol_error", reason=str(exc))
            self.server.record_abuse(self.host, str(exc), now)
            self.close_after = True
            self.server.queue_write(self)
            return
        if events:  # only whole lines count as activity: a trickled byte does not (slowloris)
            self.last_activity = now
            if not self.received_at:
                self.received_at = time.perf_counter()
        for event in events:
            if type(event) is p.Submit:
                session.submit(event, now)
            else:
                session.handle(event, now)
            if session.close_reason is not None:
                self.log.info("miner_closed", reason=session.close_reason, ban=session.ban)
                if session.ban:
                    self.server.record_abuse(self.host, session.close_reason, now)
                self.close_after = True
                break
        if session.outbox or self.close_after:
            self.server.queue_write(self)

    def pause_writing(self) -> None:
        """The write buffer passed `max_write_buffer`: a miner that does not read is dropped."""
        if self.transport is not None and not self.transport.is_closing():
            self.log.info("miner_closed", reason="not reading its replies")
            self.transport.abort()

    def push(self, job: Job, notify: bytes, now: float) -> None:
        if self.session is not None and self.transport is not None:
            self.session.on_new_job(job, notify, now)
            if self.session.outbox:
                self.server.queue_write(self)

    def tick(self, now: float) -> bool:
        """Returns False when the connection was closed for idleness."""
        if self.session is None or self.transport is None:
            return True
        if now - self.last_activity > self.server.limits.idle_timeout_s:
            self.log.info("miner_closed", reason="idle timeout")
            self.transport.close()
            return False
        self.session.on_tick(now)
        if self.session.outbox:
            self.server.queue_write(self)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        srv = self.server
        if self in srv.connections:
            srv.connections.discard(self)
            srv.metrics.connections = len(srv.connections)
        if self.session is not None:
            self.session.release(srv.clock())
            srv.leave_host(self.host)
        srv.connection_closed()


class StratumServer:
    def __init__(
        self,
        *,
        limits: ServerLimits,
        policy: SessionPolicy,
        jobs: JobSource,
        sink: ShareSink,
        metrics: Metrics,
        extranonces: ExtranoncePool,
        before_reply: Callable[[], Callable[[Callable[[], None]], None] | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.policy = policy
        self.jobs = jobs
        self.sink = sink
        self.metrics = metrics
        self.extranonces = extranonces
        self.before_reply = before_reply
        self.clock = clock
        self.connections: set[MinerConnection] = set()
        self.bans: dict[str, _Ban] = {}
        self.hosts: dict[str, _Host] = {}  # addresses with at least one session
        self.accepting = True
        self._servers: list[asyncio.Server] = []  # plain TCP, and TLS when configured
        self._drained = asyncio.Event()
        self._out: list[MinerConnection] = []
        self._flush_scheduled = False

    def admit_host(self, host: str) -> WorkerQuota | None:
        """Count one more connection from `host`; None when it already holds its limit."""
        use = self.hosts.get(host)
        if use is None:
            exempt = never_banned(host, self.limits.allowlist)
            use = self.hosts[host] = _Host(
                0, WorkerQuota(None if exempt else self.limits.max_workers_per_ip)
            )
        elif use.quota.limit is not None and use.connections >= self.limits.max_connections_per_ip:
            return None
        use.connections += 1
        return use.quota

    def leave_host(self, host: str) -> None:
        use = self.hosts.get(host)
        if use is not None:
            use.connections -= 1
            if use.connections <= 0:
                del self.hosts[host]

    def new_session(self, peer: str, now: float, quota: WorkerQuota | None = None) -> Session:
        return Session(
            policy=self.policy,
            jobs=self.jobs,
            sink=self.sink,
            metrics=self.metrics,
            extranonces=self.extranonces,
            peer=peer,
            now=now,
            on_log=None,
            quota=quota,
        )

    def queue_write(self, conn: MinerConnection) -> None:
        """Send `conn`'s outbox at the end of this loop iteration, after the share log write."""
        if conn.queued:
            return
        conn.queued = True
        self._out.append(conn)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_queued)

    def _send_queued(self) -> None:
        self._flush_scheduled = False
        # One write() covers every share accepted this iteration. A hook handed back: the
        # replies are held until it sends them (after the fsync that covers the shares).
        hold = self.before_reply()
        out, self._out = self._out, []
        if hold is not None:
            hold(self._held_send(out))
            return
        now = time.perf_counter()
        latency = self.metrics.reply_latency
        for conn in out:
            conn.queued = False
            if conn.received_at:
                latency.observe(now - conn.received_at)
                conn.received_at = 0.0
            t, session = conn.transport, conn.session
            if t is None or session is None:
                continue
            box = session.outbox
            if t.is_closing():
                box.clear()
                continue
            if box:
                t.write(box[0] if len(box) == 1 else b"".join(box))
                box.clear()
            if conn.close_after:
                t.close()

    def _held_send(self, out: list[MinerConnection]) -> Callable[[], None]:
        """Take the connections' replies now (later ones are not covered) to send later."""
        taken = []
        for conn in out:
            conn.queued = False
            session = conn.session
            if session is not None and session.outbox:
                taken.append((conn, b"".join(session.outbox), conn.close_after))
                session.outbox.clear()
            elif conn.close_after:
                taken.append((conn, b"", True))

        def send() -> None:
            now = time.perf_counter()
            for conn, data, close in taken:
                if conn.received_at:
                    self.metrics.reply_latency.observe(now - conn.received_at)
                    conn.received_at = 0.0
                t = conn.transport
                if t is None or t.is_closing():
                    continue
                if data:
                    t.write(data)
                if close:
                    t.close()

        return send

    async def start(
        self, host: str, port: int, *, reuse_port: bool = False, tls: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Listen on host:port (plain TCP, or TLS with `tls`); may be called once per listener:
        every listener feeds the same sessions, limits and share log."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: MinerConnection(self),
            host,
            port,
            reuse_address=True,
            reuse_port=reuse_port or None,
            backlog=4096,
            ssl=tls,
            ssl_handshake_timeout=10.0 if tls is not None else None,
        )
        self._servers.append(server)
        addr = server.sockets[0].getsockname()
        log.info("stratum_listening", host=addr[0], port=addr[1], tls=tls is not None)
        return str(addr[0]), int(addr[1])

    async def broadcast(self, job: Job) -> None:
        """Send a new job to every connection (the notify line is encoded once).

        Connections are served in slices so shares keep flowing while 10,000 notifies go out.
        """
        notify = p.encode_notification("mining.notify", job.notify_params())
        conns = list(self.connections)
        for i in range(0, len(conns), CONNECTIONS_PER_SWEEP_STEP):
            now = self.clock()
            for c in conns[i : i + CONNECTIONS_PER_SWEEP_STEP]:
                c.push(job, notify, now)
            await asyncio.sleep(0)

    async def tick(self) -> None:
        """Idle timeouts and vardiff's no-share checks, a slice at a time."""
        conns = list(self.connections)
        for i in range(0, len(conns), CONNECTIONS_PER_SWEEP_STEP):
            now = self.clock()
            for c in conns[i : i + CONNECTIONS_PER_SWEEP_STEP]:
                c.tick(now)
            await asyncio.sleep(0)
        now = self.clock()
        for host in [h for h, b in self.bans.items() if b.until <= now]:
            del self.bans[host]

    def is_banned(self, host: str, now: float) -> bool:
        ban = self.bans.get(host)
        return ban is not None and ban.until > now

    def record_abuse(self, host: str, reason: str, now: float) -> None:
        if self.limits.ban_s <= 0 or never_banned(host, self.limits.allowlist):
            return
        self.bans[host] = _Ban(now + self.limits.ban_s, reason)
        self.metrics.bans += 1
        log.warning("peer_banned", host=host, reason=reason, seconds=self.limits.ban_s)

    def connection_closed(self) -> None:
        if not self.accepting and not self.connections:
            self._drained.set()

    async def stop(self, *, reconnect: bool = True, timeout_s: float = 5.0) -> None:
        """Stop accepting, ask miners to reconnect (elsewhere or later), close every connection."""
        if not self.accepting and not self.connections:
            return  # stopped already (a second call on the way out)
        self.accepting = False
        for server in self._servers:
            server.close()
        self._send_queued()
        msg = p.encode_notification("client.reconnect", []) if reconnect else b""
        for c in list(self.connections):
            if c.transport is not None and not c.transport.is_closing():
                if msg:
                    c.transport.write(msg)
                c.transport.close()
        if self.connections:
            try:
                await asyncio.wait_for(self._drained.wait(), timeout_s)
            except TimeoutError:
                for c in list(self.connections):
                    if c.transport is not None:
                        c.transport.abort()
        for server in self._servers:
            await server.wait_closed()
