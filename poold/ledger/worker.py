"""The ledger's own process: ingest, block settlement and token periods run there.

`Worker` is what the scheduler needs of it; `LedgerWorker` is the process the daemon runs,
`InlineWorker` the same steps in the calling process, on the caller's engine (for an in-memory
ledger, and for the fault simulator, whose injected database faults a second process could
not see). `LedgerAccess` opens the ledger and its worker: the composition root chooses which.

These steps are CPU-bound Python. Run in a thread of the daemon they held the GIL for its full
switch interval each time the Stratum loop made a system call, and reply latency rose to seconds
under load. In a separate process they only share the CPU, at a lower priority (`nice`).

One worker process, started with `spawn` from the event loop's thread and killed by the kernel
when the daemon dies (PR_SET_PDEATHSIG): a ledger transaction never outlives the daemon, so a
kill -9 leaves the same state as before (uncommitted work is rolled back by the database). Calls
and results cross as pickles. Must not import the Stratum side (poold.stratum, poold.daemon,
poold.ledger.scheduler).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine

from poold.config import TokensConfig
from poold.ledger.db import (
    DEFAULT_TIMEOUTS,
    Fence,
    LedgerError,
    Timeouts,
    fence_set,
    ledger_entry,
    open_ledger,
)
from poold.ledger.ingest import IngestResult, ingest
from poold.ledger.queries import MinuteCache, PoolOverview
from poold.ledger.queries import pool_overview as queries_pool_overview
from poold.ledger.settle import Settled, settle_pending
from poold.shares.log import LogPosition
from poold.tokens.settle import PeriodResult, settle_due

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1

# -- in the worker process ------------------------------------------------------------------------

_engine: Engine | None = None
#: Called inside each ingest transaction just before it commits (fault tests set it).
_before_commit: Callable[[], None] | None = None


def _die_with_parent(parent_pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the daemon died before the signal was armed
        os._exit(1)


def init(url: str, parent_pid: int, nice: int, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
    """Worker start-up: die with the daemon, step aside for it, open the ledger."""
    global _engine
    _die_with_parent(parent_pid)
    if nice:
        os.nice(nice)
    _engine = open_ledger(url, migrate_schema=False, timeouts=timeouts)


def _ready() -> int:
    """The worker's pid, once its engine is open."""
    assert _engine is not None
    return os.getpid()


def _ingest(
    sharelog: str, node_id: int, closed_only: bool, until: LogPosition | None = None
) -> IngestResult:
    assert _engine is not None
    return ingest(
        _engine,
        Path(sharelog),
        node_id,
        before_commit=_before_commit,
        closed_only=closed_only,
        until=until,
    )


def _settle_blocks(
    pool_fee: Fraction,
    scheme: str,
    found_before_ms: int | None = None,
    excluded_nodes: tuple[int, ...] = (),
    fence: Fence | None = None,
) -> list[Settled]:
    assert _engine is not None
    with fence_set(fence):
        return settle_pending(
            _engine,
            pool_fee=pool_fee,
            scheme=scheme,
            found_before_ms=found_before_ms,
            excluded_nodes=excluded_nodes,
        )


def _settle_tokens(
    cfg: TokensConfig,
    through_ms: int | None,
    now: float | None = None,
    fence: Fence | None = None,
    work_dirs: tuple[tuple[int, Path], ...] = (),
) -> list[PeriodResult]:
    assert _engine is not None
    with fence_set(fence):
        return settle_due(_engine, cfg, through_ms=through_ms, now=now, work_dirs=work_dirs)


def _read(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    assert _engine is not None
    engine = _engine

    @ledger_entry
    def read(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        with engine.connect() as conn:
            return fn(conn, *args)

    return read(fn, args)


#: The pool page's old minutes, kept by this (ledger) process between reads.
_MINUTES = MinuteCache()


def pool_overview(conn: Connection, now: int) -> PoolOverview:
    """The pool overview with this process's minute cache (called through `LedgerWorker.read`)."""
    return queries_pool_overview(conn, now, _MINUTES)


# -- in the daemon --------------------------------------------------------------------------------


class Worker(Protocol):
    """The ledger steps the scheduler runs, wherever they run."""

    pid: int | None

    async def start(self) -> None: ...

    async def ingest(
        self,
        sharelog: Path,
        node_id: int,
        *,
        closed_only: bool = False,
        until: LogPosition | None = None,
    ) -> IngestResult: ...

    async def settle_blocks(
        self,
        pool_fee: Fraction,
        scheme: str,
        found_before_ms: int | None = None,
        excluded_nodes: tuple[int, ...] = (),
        fence: Fence | None = None,
    ) -> list[Settled]: ...

    async def settle_tokens(
        self,
        cfg: TokensConfig,
        through_ms: int | None = None,
        now: float | None = None,
        fence: Fence | None = None,
        work_dirs: tuple[tuple[int, Path], ...] = (),
    ) -> list[PeriodResult]: ...

    async def read(self, fn: Callable[..., T], *args: Any) -> T: ...

    async def stop(self, wait_s: float) -> bool: ...


class LedgerAccess(Protocol):
    """How the scheduler opens its ledger and the worker beside it."""

    def open(self, url: str, *, migrate_schema: bool, timeouts: Timeouts) -> Engine: ...

    def worker(self, url: str, engine: Engine, *, timeouts: Timeouts) -> Worker: ...


class ProcessLedger:
    """The daemon's way: an engine in this process for the scheduler's small reads and writes,
    and the CPU-heavy steps in the ledger process (`LedgerWorker`)."""

    def open(self, url: str, *, migrate_schema: bool, timeouts: Timeouts) -> Engine:
        return open_ledger(url, migrate_schema=migrate_schema, timeouts=timeouts)

    def worker(self, url: str, engine: Engine, *, timeouts: Timeouts) -> Worker:
        return LedgerWorker(url, timeouts=timeouts)


class InlineWorker:
    """The worker's steps run in this process on `engine`, one at a time, in call order."""

    def __init__(self, engine: Engine, *, before_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.before_commit = before_commit
        self.pid: int | None = os.getpid()
        self._minutes = MinuteCache()

    async def start(self) -> None:
        return None

    async def ingest(
        self,
        sharelog: Path,
        node_id: int,
        *,
        closed_only: bool = False,
        until: LogPosition | None = None,
    ) -> IngestResult:
        return ingest(
            self.engine,
            sharelog,
            node_id,
            before_commit=self.before_commit,
            closed_only=closed_only,
            until=until,
        )

    async def settle_blocks(
        self,
        pool_fee: Fraction,
        scheme: str,
        found_before_ms: int | None = None,
        excluded_nodes: tuple[int, ...] = (),
        fence: Fence | None = None,
    ) -> list[Settled]:
        with fence_set(fence):
            return settle_pending(
                self.engine,
                pool_fee=pool_fee,
                scheme=scheme,
                found_before_ms=found_before_ms,
                excluded_nodes=excluded_nodes,
            )

    async def settle_tokens(
        self,
        cfg: TokensConfig,
        through_ms: int | None = None,
        now: float | None = None,
        fence: Fence | None = None,
        work_dirs: tuple[tuple[int, Path], ...] = (),
    ) -> list[PeriodResult]:
        with fence_set(fence):
            return settle_due(self.engine, cfg, through_ms=through_ms, now=now, work_dirs=work_dirs)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        engine = self.engine

        @ledger_entry
        def read(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
            with engine.connect() as conn:
                return fn(conn, *args)

        return read(fn, args)

    async def stop(self, wait_s: float) -> bool:
        return True


class InlineLedger:
    """Open the ledger with `open` (which may attach fault hooks to the engine) and run the
    worker's steps inline on it."""

    def __init__(self, open_engine: Callable[[str, bool, Timeouts], Engine]) -> None:
        self._open = open_engine

    def open(self, url: str, *, migrate_schema: bool, timeouts: Timeouts) -> Engine:
        return self._open(url, migrate_schema, timeouts)

    def worker(self, url: str, engine: Engine, *, timeouts: Timeouts) -> Worker:
        return InlineWorker(engine)


class LedgerWorker:
    """The daemon's handle on the ledger process. Every call is awaited on the event loop."""

    def __init__(self, url: str, *, nice: int = 10, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.url = url
        self.nice = nice
        self.timeouts = timeouts
        self.pid: int | None = None  # the worker process, once started
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init,  # looked up now: a fault test may have replaced it
                initargs=(self.url, os.getpid(), self.nice, self.timeouts),
            )
        return self._pool

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            # Submitted from the loop's thread, so that is the thread the worker is forked from
            # (PR_SET_PDEATHSIG fires when the forking *thread* ends).
            return await loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool as exc:
            pool, self._pool = self._pool, None  # a new worker next time
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise LedgerError(f"the ledger process stopped unexpectedly: {exc}") from exc

    async def start(self) -> None:
        """Start the worker and open its engine now, so the first pass does not wait for it."""
        self.pid = await self._call(_ready)

    async def ingest(
        self,
        sharelog: Path,
        node_id: int,
        *,
        closed_only: bool = False,
        until: LogPosition | None = None,
    ) -> IngestResult:
        return await self._call(_ingest, str(sharelog), node_id, closed_only, until)

    async def settle_blocks(
        self,
        pool_fee: Fraction,
        scheme: str,
        found_before_ms: int | None = None,
        excluded_nodes: tuple[int, ...] = (),
        fence: Fence | None = None,
    ) -> list[Settled]:
        return await self._call(
            _settle_blocks, pool_fee, scheme, found_before_ms, excluded_nodes, fence
        )

    async def settle_tokens(
        self,
        cfg: TokensConfig,
        through_ms: int | None = None,
        now: float | None = None,
        fence: Fence | None = None,
        work_dirs: tuple[tuple[int, Path], ...] = (),
    ) -> list[PeriodResult]:
        """Settle every due token period; `now` is the daemon's clock (unix seconds)."""
        return await self._call(_settle_tokens, cfg, through_ms, now, fence, work_dirs)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` on a ledger connection in the worker (`fn` importable by name).

        For heavy pool-wide reads whose result is cached by the caller: they queue behind a
        ledger pass in progress, but never hold the daemon's GIL."""
        return await self._call(_read, fn, args)

    def close(self) -> None:
        """Stop the worker (after the call in progress, if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    async def stop(self, wait_s: float) -> bool:
        """Stop the worker, giving a call in progress `wait_s` to finish; then end the process
        (a database that stopped answering must not hold the daemon's shutdown). Its open
        transaction rolls back. Returns False when it had to be killed."""
        pool, self._pool = self._pool, None
        if pool is None:
            return True
        pool.shutdown(wait=False, cancel_futures=True)
        pid = self.pid
        if pid is None:
            return True
        for _ in range(max(1, round(wait_s / 0.05))):
            if not _running(pid):
                return True
            await asyncio.sleep(0.05)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return False
        return True


def _running(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, IndexError):
        return False
