"""The `poold` command line (typer): run, demo, simulate, config check|dump.

Returns non-zero on failure; a config error stops `run` before anything is bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import bech32m
import typer
import uvloop
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from poold.api.auth import create_token, list_tokens, revoke_token
from poold.config import Config, ConfigError, load_config, parse_config, redacted
from poold.daemon import Daemon
from poold.jobs.address import address_to_script
from poold.ledger import journal, rollup
from poold.ledger.db import LedgerError, open_ledger
from poold.ledger.fpps import FppsBooked, book_with_node
from poold.ledger.ingest import ingest as run_ingest
from poold.ledger.models import SCHEMA_VERSION
from poold.ledger.payouts import PayoutError, PayoutReport, run_payouts, set_account
from poold.ledger.replay import replay as run_replay
from poold.ledger.settle import BLOCK_KEYS, balances, settle_pending, verify
from poold.logs import configure_logging
from poold.node.base import NodeError
from poold.node.factory import rpc_node
from poold.shares.log import ShareLogError, prune_segments
from poold.simulate import run_fleet
from poold.tokens.settle import period_of, set_price, settle_due
from poold.tokens.transfers import TokenError, import_transfers, parse_records
from poold.tokens.transfers import parse_file as parse_transfers

app = typer.Typer(add_completion=False, no_args_is_help=True, help="poold: pool share accounting")
config_app = typer.Typer(no_args_is_help=True, help="Check or show configuration.")
app.add_typer(config_app, name="config")
ledger_app = typer.Typer(no_args_is_help=True, help="Inspect the ledger.")
app.add_typer(ledger_app, name="ledger")
account_app = typer.Typer(no_args_is_help=True, help="Per-account payout settings.")
app.add_typer(account_app, name="account")
api_app = typer.Typer(no_args_is_help=True, help="HTTP API access tokens.")
app.add_typer(api_app, name="api")
tokens_app = typer.Typer(no_args_is_help=True, help="Hashrate tokens: transfers, prices, periods.")
app.add_typer(tokens_app, name="tokens")


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"poold: {msg}", err=True)
    return typer.Exit(code)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _run_daemon(cfg: Config, reuse_port: bool) -> int:
    stop = asyncio.Event()
    _install_signals(stop)
    executor = _own_threads()
    code = await _daemon_outcome(Daemon(cfg, reuse_port=reuse_port).run(stop))
    await _leave_stuck_threads(executor, code)
    return code


async def _daemon_outcome(run: Awaitable[None]) -> int:
    """Await a daemon's run: 0, or 1 after saying why it could not start or run (a busy port,
    an unusable share log or ledger), the same words for `run` and `demo`."""
    failure: BaseException | None = None
    try:
        await run
    except* (OSError, ShareLogError, LedgerError) as eg:
        failure = eg.exceptions[0]
    code = 0
    if failure is not None:
        typer.echo(f"poold: cannot start: {failure}", err=True)
        code = 1
    return code


#: Names of the threads of the daemon's own default executor (see `_own_threads`).
_THREADS = "poold-io"


def _own_threads() -> ThreadPoolExecutor:
    """Give the loop a default executor this process can check on at exit."""
    executor = ThreadPoolExecutor(thread_name_prefix=_THREADS)
    asyncio.get_running_loop().set_default_executor(executor)
    return executor


async def _leave_stuck_threads(executor: ThreadPoolExecutor, code: int, wait_s: float = 5) -> None:
    """Exit now if a worker thread is still stuck in a call to a database that stopped
    answering: Python would wait for it forever at exit. By now the share log is flushed and
    closed; the thread's transaction rolls back and its work is redone at the next start."""
    executor.shutdown(wait=False, cancel_futures=True)  # idle threads end at once
    for _ in range(round(wait_s / 0.05)):
        if not any(t.name.startswith(_THREADS) for t in threading.enumerate()):
            return
        await asyncio.sleep(0.05)
    typer.echo("poold: leaving a database call that does not answer", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the daemon in the foreground. SIGINT/SIGTERM stop it gracefully (exit 0)."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None
    configure_logging(cfg.log.level, cfg.log.format)
    n = cfg.stratum.workers
    if n > 1 and worker_index is None:
        raise typer.Exit(_supervise(config, n))
    if worker_index is not None:
        # Each worker process: own extranonce1 prefix and share-log directory, shared port.
        over = {
            "stratum": {
                **cfg.stratum.model_dump(mode="json"),
                "node_id": (cfg.stratum.node_id + worker_index) % 256,
                "workers": 1,
            },
            "sharelog": {
                **cfg.sharelog.model_dump(mode="json"),
                "path": str(cfg.sharelog.path / f"worker-{worker_index}"),
            },
        }
        cfg = parse_config({**cfg.model_dump(mode="json"), **over}, environ={})
    code = uvloop.run(_run_daemon(cfg, reuse_port=worker_index is not None))
    if code:
        raise typer.Exit(code)


def _supervise(config: Path, n: int) -> int:
    """Start n worker processes on one SO_REUSEPORT socket address; forward stop signals."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poold",
                "run",
                "--config",
                str(config),
                "--worker-index",
                str(i),
            ]
        )
        for i in range(n)
    ]

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes, default=0)


def demo_config(port: int = 3333, var: Path = Path("var"), api_port: int = 8080) -> Config:
    """The embedded default: simnet chain, SQLite and share log under ./var, stratum on :3333,
    API and dashboard on :8080; FPPS booked every 10 s and token periods of one minute, so a
    short run shows every step."""
    program = hashlib.new("ripemd160", hashlib.sha256(b"poold demo").digest()).digest()
    address = bech32m.encode("bcrt", 0, list(program))
    return parse_config(
        {
            "stratum": {
                "listen": f"127.0.0.1:{port}",
                "start_difficulty": "1/1048576",
                "min_difficulty": "1/4294967296",
                "vardiff_target_share_time_s": 1.0,
                "vardiff_retarget_time_s": 5.0,
            },
            "node": {"kind": "simnet", "simnet_difficulty": "1/512", "simnet_tx_count": 6},
            "pool": {
                "network": "regtest",
                "payout_address": address,
                "coinbase_tag": "/poold-demo/",
                "scheme": "fpps",
                "fee": "0.02",
                "fpps_period_s": 10,
            },
            "ledger": {
                "url": f"sqlite:///{var / 'ledger.db'}",
                "ingest_interval_s": 2.0,
                "auto_migrate": True,
            },
            "tokens": {
                "enabled": True,
                "th_per_token": "1/1000000000",  # 1 kH/s: the demo miners are CPUs
                "w_per_th": "20",
                "usd_per_kwh": "0.05",
                "service_usd_per_th_day": "0.01",
                "fleet_accounts": ["demo"],
                "period_s": 60,
                "settle_delay_s": 5,
            },
            "api": {"listen": f"127.0.0.1:{api_port}"},
            "sharelog": {"path": str(var / "sharelog")},
            "log": {"level": "warning", "stats_interval_s": 3600},
        },
        environ={},
    )


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="stop after this many seconds (0 = Ctrl-C)")] = 0,
    miners: Annotated[int, typer.Option(help="simulated miners")] = 4,
    port: Annotated[int, typer.Option(help="stratum port")] = 3333,
    api_port: Annotated[int, typer.Option(help="API and dashboard port")] = 8080,
) -> None:
    """Run the embedded default with a few simulated miners, printing what happens. Each run
    starts from a fresh ./var (the simnet chain is new each time too)."""
    var = Path("var")
    cfg = demo_config(port, var, api_port)
    configure_logging(cfg.log.level, cfg.log.format)
    var.mkdir(exist_ok=True)
    for old in (*var.glob("ledger.db*"), var / "sharelog"):
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    code = uvloop.run(_demo(cfg, duration, miners))
    if code:
        raise typer.Exit(code)


async def _demo(cfg: Config, duration: float, miners: int) -> int:
    stop = asyncio.Event()
    _install_signals(stop)
    daemon = Daemon(cfg)
    run_task = asyncio.create_task(daemon.run(stop))
    listening = asyncio.create_task(daemon.listening.wait())
    await asyncio.wait({run_task, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not listening.done():  # it ended before binding (a busy port): say so, as `run` does
        listening.cancel()
        return await _daemon_outcome(run_task) or 1
    assert daemon.address is not None
    host, port = daemon.address
    print(
        f"poold demo: simnet chain at height {(await daemon.node.get_template())['height']}, "
        f"stratum on {host}:{port}, {miners} simulated miners, share log in "
        f"{cfg.sharelog.path}/",
        flush=True,
    )
    holder_token = await asyncio.to_thread(_demo_tokens, daemon, cfg)
    if daemon.api_addresses:
        ahost, aport = daemon.api_addresses[0]
        print(
            f"dashboard: http://{ahost}:{aport}/  (token holders alice and bob; alice's read "
            f"token: {holder_token})",
            flush=True,
        )
    horizon = duration if duration > 0 else 10**9
    # The miners run in their own process, as real ones would: hashing in this process would
    # starve the daemon's ledger thread of the GIL.
    fleet = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poold",
        "simulate",
        "--url",
        f"stratum+tcp://{host}:{port}",
        "--miners",
        str(miners),
        "--duration",
        str(horizon),
        "--account",
        "demo",
        stdout=asyncio.subprocess.PIPE,
    )
    started = time.monotonic()
    seen_blocks = seen_periods = 0
    while not stop.is_set() and time.monotonic() - started < horizon and fleet.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                fleet.wait(), min(2.0, max(0.05, horizon - (time.monotonic() - started)))
            )
        m = daemon.metrics
        for b in daemon.blocks[seen_blocks:]:
            status = "accepted by simnet" if b.accepted else f"rejected: {b.reason}"
            print(
                f"  block {b.height} found by {b.account}.{b.worker}: {b.hash_hex[:16]}… "
                f"({status})",
                flush=True,
            )
        seen_blocks = len(daemon.blocks)
        for start, settled in daemon.token_periods[seen_periods:]:
            lines = ", ".join(
                f"{h} net {line.net_sat} sat" for h, line in sorted(settled.lines.items())
            )
            print(
                f"  token period {start} settled: pot {settled.holders_pot_sat} sat, "
                f"delivery {float(settled.delivery_ratio):.2f} — {lines}",
                flush=True,
            )
        seen_periods = len(daemon.token_periods)
        print(
            f"[{time.monotonic() - started:6.1f}s] connections={m.connections} "
            f"shares accepted={m.shares_accepted} rejected={sum(m.shares_rejected.values())} "
            f"blocks={m.blocks_accepted} jobs={m.jobs} in ledger={daemon.ingested_shares}",
            flush=True,
        )
    if fleet.returncode is None and not stop.is_set():
        with contextlib.suppress(TimeoutError):  # it started later: let it finish and report
            await asyncio.wait_for(fleet.wait(), 5)
    if fleet.returncode is None:
        fleet.terminate()
    out, _ = await fleet.communicate()
    stop.set()
    await run_task
    m = daemon.metrics
    summary = out.decode().strip().splitlines()[-1:] if out else []
    print(
        f"poold demo: done. {m.shares_accepted} shares accepted, {m.blocks_accepted} blocks "
        f"accepted, {daemon.ingested_shares} shares in the ledger, share log "
        f"{daemon.sharelog.bytes_written} bytes.",
        flush=True,
    )
    if summary:
        print(f"miners: {summary[0]}", flush=True)
    if cfg.ledger.ingest_interval_s > 0:
        engine = open_ledger(cfg.ledger.url)
        try:
            owed = {
                k: -v for k, v in balances(engine).items() if journal.parse(k).kind == "miner" and v
            }
            problems = verify(engine)
        finally:
            engine.dispose()
        for account, sat in sorted(owed.items()):
            print(f"  ledger {account}: {sat} sat", flush=True)
        print(f"ledger verify: {'; '.join(problems) or 'ok'}", flush=True)
    return 0


def _demo_tokens(daemon: Daemon, cfg: Config) -> str:
    """Two holders minted at the current period's start, BTC/USD for the next hour of periods,
    and a read token for alice."""
    assert daemon.ledger is not None
    start = period_of(int(time.time()), cfg.tokens)[0]
    import_transfers(
        daemon.ledger,
        parse_records(
            [
                {"id": "demo:mint:alice", "ts": start, "to": "alice", "amount": "3"},
                {"id": "demo:mint:bob", "ts": start, "to": "bob", "amount": "1"},
                {
                    "id": "demo:alice->bob",
                    "ts": start + 90,
                    "from": "alice",
                    "to": "bob",
                    "amount": "1",
                },
            ]
        ),
    )
    for i in range(60):
        set_price(daemon.ledger, start + i * cfg.tokens.period_s, Fraction(65000), cfg.tokens)
    return create_token(daemon.ledger, "holder:alice")


@app.command()
def simulate(
    url: Annotated[str, typer.Option(help="stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT")],
    miners: Annotated[int, typer.Option(help="number of simulated miners")] = 4,
    duration: Annotated[float, typer.Option(help="seconds to mine")] = 10.0,
    account: Annotated[str, typer.Option(help="account name (workers are ACCOUNT.rigN)")] = "sim",
    password: Annotated[str, typer.Option(help="password, e.g. d=0.001")] = "x",
    cafile: Annotated[
        Path | None,
        typer.Option(help="stratum+ssl: trust this PEM certificate (default: the system's CAs)"),
    ] = None,
) -> None:
    """Run a simulated ASIC fleet that grinds real shares; print accepted/rejected/latency."""
    try:
        tls = None if cafile is None else ssl.create_default_context(cafile=str(cafile))
        stats = uvloop.run(
            run_fleet(
                url,
                miners=miners,
                duration_s=duration,
                account=account,
                password=password,
                tls=tls,
            )
        )
    except (OSError, ValueError) as exc:
        raise _fail(f"simulate: {exc}", 1) from None
    typer.echo(json.dumps(stats.summary()))


@contextlib.contextmanager
def _ledger(config: Path, *, migrate_schema: bool = False) -> Iterator[tuple[Config, Engine]]:
    """Config and a ready ledger for one CLI command; their errors exit 2 with the message."""
    try:
        cfg = load_config(config)
        engine = open_ledger(cfg.ledger.url, migrate_schema=migrate_schema)
        try:
            yield cfg, engine
        finally:
            engine.dispose()
    except (ConfigError, LedgerError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def migrate(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Create or upgrade the ledger schema at [ledger] url."""
    with _ledger(config, migrate_schema=True):
        pass
    typer.echo(f"ledger schema at version {SCHEMA_VERSION}")


@app.command()
def ingest(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Ingest everything new in the share log into the ledger (exactly once; safe to repeat)."""
    with _ledger(config) as (cfg, engine):
        result = run_ingest(engine, cfg.sharelog.path, cfg.stratum.node_id)
    # Retention, never past what the ledger holds: segments below the checkpoint's only.
    removed = prune_segments(
        cfg.sharelog.path,
        below_segment=result.position.segment,
        older_than=time.time() - cfg.sharelog.retention_hours * 3600,
    )
    typer.echo(
        json.dumps(
            {
                "records": result.records,
                "shares": result.shares,
                "slices": result.slices,
                "blocks": result.blocks,
                "segments_removed": len(removed),
            }
        )
    )


@app.command()
def settle(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Settle every accepted block not settled yet (and, under FPPS with a real node, book the
    period that ended last); running it again changes nothing."""
    with _ledger(config) as (cfg, engine):
        scheme = cfg.pool.scheme
        if scheme not in BLOCK_KEYS:
            raise _fail(f"scheme {scheme!r} has no block settlement")
        done = settle_pending(engine, pool_fee=cfg.pool.fee, scheme=scheme)
        booked = None
        if scheme == "fpps" and cfg.node.kind == "rpc":
            try:
                booked = uvloop.run(_book_fpps(cfg, engine))
            except NodeError as exc:
                raise _fail(f"settle: {exc}", 1) from None
    for s in done:
        typer.echo(
            json.dumps(
                {
                    "block": s.block_hash,
                    "credits_sat": sum(s.credits.values()),
                    "fee_sat": s.pool_fee_sat,
                    "unallocated_sat": s.unallocated_sat,
                }
            )
        )
    if booked is not None:
        typer.echo(
            json.dumps(
                {
                    "fpps_period_end": booked.period_end_s,
                    "slices": booked.slices,
                    "credits_sat": sum(booked.credits.values()),
                }
            )
        )
    typer.echo(f"{len(done)} block(s) settled")


async def _book_fpps(cfg: Config, engine: Engine) -> FppsBooked | None:
    node = rpc_node(cfg.node)
    pool = cfg.pool
    try:
        return await book_with_node(
            engine,
            node,
            period_end_s=int(time.time()) // pool.fpps_period_s * pool.fpps_period_s,
            fee_window_blocks=pool.fee_window_blocks,
            pool_fee=pool.fee,
        )
    finally:
        await node.close()


@app.command()
def replay(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Recompute slices and PPLNS credits from the retained share log; compare with the ledger."""
    with _ledger(config) as (cfg, engine), _progress("replaying the share log") as progress:
        report = run_replay(
            engine,
            cfg.sharelog.path,
            cfg.stratum.node_id,
            pool_fee=cfg.pool.fee,
            progress=progress,
        )
    for p in report.problems:
        typer.echo(p, err=True)
    typer.echo(
        json.dumps(
            {
                "shares": report.shares,
                "slices": report.slices,
                "blocks_checked": report.blocks_checked,
                "blocks_not_checkable": report.blocks_not_checkable,
                "problems": len(report.problems),
            }
        )
    )
    if not report.ok:
        raise typer.Exit(1)


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over bytes on a terminal; nothing when output is not a TTY."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(
        TextColumn(what),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@ledger_app.command("verify")
def ledger_verify(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Check the journal: every posting balances and the whole journal sums to zero."""
    with _ledger(config) as (_cfg, engine):
        problems = verify(engine)
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("ledger ok: every posting balances")


@ledger_app.command("refold")
def ledger_refold(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Rebuild the slice sums PPLNS windows read, from the slices (after restoring a ledger,
    or when `ledger verify` says they differ). Ingest waits while it runs."""
    with _ledger(config) as (_cfg, engine):
        try:
            with engine.begin() as conn:
                rollup.rebuild(conn)
        except SQLAlchemyError as exc:
            raise LedgerError(f"refold failed, nothing changed: {exc}") from None
    typer.echo("slice sums rebuilt from the slices")


@app.command()
def payout(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
    send: Annotated[
        bool, typer.Option("--send/--dry-run", help="pay through the node wallet, or only show")
    ] = False,
) -> None:
    """Pay spendable balances over their threshold through the node wallet (never twice)."""
    with _ledger(config) as (cfg, engine):
        if cfg.node.kind != "rpc":
            raise _fail('payouts need a node wallet: set [node] kind = "rpc"')
        try:
            report = uvloop.run(_payout(cfg, engine, send))
        except (PayoutError, NodeError) as exc:
            raise _fail(f"payout: {exc}", 1) from None
    for payout_id, status in report.reconciled:
        typer.echo(json.dumps({"payout": payout_id, "reconciled": status}))
    for account, why in report.skipped.items():
        typer.echo(json.dumps({"account": account, "skipped": why}))
    for batch in report.batches:
        for p in batch:
            typer.echo(
                json.dumps({"account": p.account, "address": p.address, "amount_sat": p.amount_sat})
            )
    for payout_id, txid, total in report.sent:
        typer.echo(json.dumps({"payout": payout_id, "txid": txid, "total_sat": total}))
    verb = "paid" if send else "would pay"
    typer.echo(f"{verb} {report.total_sat} sat in {len(report.batches)} transaction(s)")


async def _payout(cfg: Config, engine: Engine, send: bool) -> PayoutReport:
    wallet = rpc_node(cfg.node)
    try:
        return await run_payouts(
            engine,
            wallet,
            network=cfg.pool.network,
            min_payout_sat=cfg.payouts.min_payout_sat,
            max_outputs=cfg.payouts.max_outputs,
            confirmations=cfg.payouts.confirmations,
            send=send,
        )
    finally:
        await wallet.close()


@account_app.command("set")
def account_set(
    name: str,
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
    address: Annotated[str | None, typer.Option(help="payout address for this account")] = None,
    min_payout: Annotated[
        int | None, typer.Option(min=1, help="this account's payout threshold, satoshis")
    ] = None,
) -> None:
    """Set an account's payout address and/or threshold (checked against [pool] network)."""
    with _ledger(config) as (cfg, engine):
        if address is not None:
            try:
                address_to_script(address, cfg.pool.network)
            except ValueError as exc:
                raise _fail(f"address {address!r}: {exc}") from None
        set_account(engine, name, address=address, min_payout_sat=min_payout)
    typer.echo(f"account {name}: address={address} min_payout_sat={min_payout}")


@api_app.command("token")
def api_token(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
    admin: Annotated[bool, typer.Option(help="a token for every endpoint")] = False,
    holder: Annotated[str | None, typer.Option(help="a token for this holder's pages")] = None,
) -> None:
    """Create an API token and print it once (only its SHA-256 digest is stored)."""
    if admin == (holder is not None):
        raise _fail("give exactly one of --admin or --holder NAME")
    with _ledger(config) as (_cfg, engine):
        secret = create_token(engine, "admin" if admin else f"holder:{holder}")
    typer.echo(secret)


@api_app.command("tokens")
def api_tokens(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """List the live API tokens: id, scope, created (the secrets are never stored)."""
    with _ledger(config) as (_cfg, engine):
        for t in list_tokens(engine):
            when = datetime.fromtimestamp(t.created_ms / 1000, UTC).isoformat(timespec="seconds")
            typer.echo(f"{t.id}\t{t.scope}\t{when}")


@api_app.command("revoke")
def api_revoke(
    token_id: Annotated[int, typer.Argument(help="the id `poold api tokens` shows")],
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Revoke an API token: it stops working within seconds everywhere."""
    with _ledger(config) as (_cfg, engine):
        revoked = revoke_token(engine, token_id)
    if revoked is None:
        raise _fail(f"no token {token_id} (revoked already?)", 1)
    typer.echo(f"revoked token {revoked.id} ({revoked.scope})")


@tokens_app.command("import")
def tokens_import(
    path: Path,
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Import token transfers from a CSV (id,ts,from,to,amount) or JSON file; idempotent."""
    with _ledger(config) as (_cfg, engine):
        try:
            result = import_transfers(engine, parse_transfers(path))
        except TokenError as exc:
            raise _fail(f"tokens import: {exc}; nothing was imported", 1) from None
    typer.echo(json.dumps({"added": result.added, "unchanged": result.unchanged}))


def _period_start(text: str, cfg: Config) -> int:
    """A period given as unix seconds or a UTC date (YYYY-MM-DD: the period holding its noon)."""
    try:
        t = (
            int(text)
            if text.isdigit()
            else int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) + 43_200
        )
    except ValueError:
        raise _fail(f"period {text!r}: give unix seconds or a date YYYY-MM-DD") from None
    return period_of(t, cfg.tokens)[0]


@tokens_app.command("price")
def tokens_price(
    period: Annotated[str, typer.Argument(help="the period: a UTC date or unix seconds")],
    btc_usd: Annotated[str, typer.Argument(help='BTC/USD for the period, exact ("65432.10")')],
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Enter the BTC/USD rate that converts a period's electricity and service costs."""
    with _ledger(config) as (cfg, engine):
        start = _period_start(period, cfg)
        try:
            price = Fraction(btc_usd)
            set_price(engine, start, price, cfg.tokens)
        except (ValueError, ZeroDivisionError, TokenError) as exc:
            raise _fail(f"tokens price: {exc}", 1) from None
    typer.echo(json.dumps({"period_start": start, "btc_usd": str(price)}))


@tokens_app.command("prices")
def tokens_prices(
    path: Path,
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Import BTC/USD prices from a CSV file with a header period,btc_usd (period: a UTC date
    or unix seconds); all or nothing."""
    with _ledger(config) as (cfg, engine):
        try:
            rows = list(csv.DictReader(path.read_text().splitlines()))
        except OSError as exc:
            raise _fail(f"tokens prices: cannot read {path}: {exc.strerror}", 1) from None
        if not rows or set(rows[0]) != {"period", "btc_usd"}:
            raise _fail(f"tokens prices: {path} needs a header period,btc_usd and rows", 1)
        parsed = []
        for n, row in enumerate(rows, 2):
            try:
                price = Fraction(row["btc_usd"].strip())
            except (ValueError, ZeroDivisionError):
                raise _fail(
                    f"tokens prices: line {n}: {row['btc_usd']!r} is not a number", 1
                ) from None
            parsed.append((_period_start(row["period"].strip(), cfg), price))
        try:
            for start, price in parsed:
                set_price(engine, start, price, cfg.tokens)
        except TokenError as exc:
            raise _fail(f"tokens prices: {exc}", 1) from None
    typer.echo(json.dumps({"prices": len(parsed)}))


@tokens_app.command("settle")
def tokens_settle(
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML config file")],
) -> None:
    """Settle every token period that is due (once each); say what the next one waits for."""
    with _ledger(config) as (cfg, engine):
        if not cfg.tokens.enabled:
            raise _fail("tokens are not enabled: set [tokens] enabled = true")
        results = settle_due(engine, cfg.tokens)
    for r in results:
        if r.settled is not None:
            typer.echo(
                json.dumps(
                    {
                        "period_start": r.period_start,
                        "holders": len(r.settled.lines),
                        "holders_pot_sat": r.settled.holders_pot_sat,
                        "operator_retained_sat": r.settled.operator_retained_sat,
                    }
                )
            )
        elif r.waiting is not None:
            typer.echo(json.dumps({"period_start": r.period_start, "waiting": r.waiting}))
    typer.echo(f"{sum(r.settled is not None for r in results)} period(s) settled")


@app.command("sim")
def sim_cmd(
    seed: Annotated[int | None, typer.Option(help="replay exactly this seed")] = None,
    seeds: Annotated[int, typer.Option(help="how many seeds, from --first")] = 100,
    first: Annotated[int, typer.Option(help="first seed of the range")] = 0,
    steps: Annotated[int, typer.Option(help="steps per run")] = 400,
) -> None:
    """The seeded fault simulator: the share path under full disks, short writes, fsync errors,
    database cuts and kill -9, checked against every durability invariant after each run.
    Exit 1 naming each failing seed (`poold sim --seed N` replays one exactly)."""
    import logging

    import structlog

    from poold.sim import FAULTS, simulate

    # The runs provoke thousands of logged faults on purpose: keep only the verdicts.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    chosen = [seed] if seed is not None else list(range(first, first + seeds))
    failed = []
    faults: dict[str, int] = {}
    for n in chosen:
        report = simulate(n, steps=steps)
        for kind, count in report.faults.items():
            faults[kind] = faults.get(kind, 0) + count
        if seed is not None or not report.ok:
            typer.echo(report.summary())
        if not report.ok:
            failed.append(n)
    typer.echo(
        f"{len(chosen)} seeds, {steps} steps each, fault kinds {', '.join(FAULTS)}; injected: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
        + f"; failing seeds: {failed or 'none'}"
    )
    if failed:
        raise typer.Exit(1)


@config_app.command("check")
def config_check(path: Path) -> None:
    """Validate a config file (and POOLD__ overrides); exit 2 naming the bad key."""
    try:
        load_config(path)
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None
    typer.echo(f"{path}: ok")


@config_app.command("dump")
def config_dump(
    path: Path,
    show_secrets: Annotated[
        bool, typer.Option("--show-secrets", help="print passwords too (default: ***)")
    ] = False,
) -> None:
    """Print the effective configuration (file + environment + defaults) as JSON, with
    passwords replaced by *** unless --show-secrets."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None
    data = cfg.model_dump(mode="json") if show_secrets else redacted(cfg)
    typer.echo(json.dumps(data, indent=2))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":
    main()
