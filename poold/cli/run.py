"""`poold run`, `demo`, `simulate` and `sim`: the daemon, the demo and the simulators.

Every import of the daemon side happens inside the command that needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poold.cli import (
    ConfigOption,
    app,
    fail,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from accounting import StatementLine, TokenSettlement
    from poold.config import Config
    from poold.daemon import Daemon


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _run_daemon(cfg: Config, reuse_port: bool, metrics_dir: Path | None = None) -> int:
    from poold.daemon import Daemon, StartupError
    from poold.stratum.tls import TlsConfigError

    stop = asyncio.Event()
    _install_signals(stop)
    executor = _own_threads()
    try:
        daemon = Daemon(cfg, reuse_port=reuse_port, metrics_dir=metrics_dir)
    except (TlsConfigError, StartupError) as exc:  # a config error, found before anything opens
        typer.echo(f"poold: config error: {exc}", err=True)
        return 2
    code = await _daemon_outcome(daemon.run(stop))
    await _leave_stuck_threads(executor, code)
    return code


async def _daemon_outcome(run: Awaitable[None]) -> int:
    """Await a daemon's run: 0, or 1 after saying why it could not start or run (a busy port,
    an unusable share log or ledger), the same words for `run` and `demo`."""
    from poold.daemon import StartupError
    from poold.ledger.db import LedgerError
    from poold.shares.log import ShareLogError

    failure: BaseException | None = None
    try:
        await run
    except* (OSError, ShareLogError, LedgerError, StartupError) as eg:
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
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(thread_name_prefix=_THREADS)
    asyncio.get_running_loop().set_default_executor(executor)
    return executor


async def _leave_stuck_threads(executor: ThreadPoolExecutor, code: int, wait_s: float = 1) -> None:
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
    config: ConfigOption,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the daemon in the foreground. SIGINT/SIGTERM stop it gracefully (exit 0)."""
    import uvloop

    from poold.config import ConfigError, load_config
    from poold.logs import configure_logging

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(f"config error: {exc}") from None
    configure_logging(cfg.log.level, cfg.log.format)
    n = cfg.stratum.workers
    if n > 1 and worker_index is None:
        raise typer.Exit(_supervise(config, n, cfg))
    metrics_dir = None
    if worker_index is not None:
        metrics_dir = cfg.sharelog.path  # the workers' common root: their metrics meet there
        cfg = worker_config(cfg, worker_index)
    code = uvloop.run(
        _run_daemon(cfg, reuse_port=worker_index is not None, metrics_dir=metrics_dir)
    )
    if code:
        raise typer.Exit(code)


def worker_config(cfg: Config, index: int) -> Config:
    """Worker `index` of a daemon with workers > 1: its own node id (node_id + index) and
    share-log directory (`worker-<index>/`), the shared stratum port; worker 0 alone serves
    the API (one port can have one HTTP server), every worker runs a ledger scheduler (the
    leadership elects one of them to settle)."""
    from poold.config import parse_config

    data = cfg.model_dump(mode="json")
    data["stratum"] |= {"node_id": (cfg.stratum.node_id + index) % 256, "workers": 1}
    data["sharelog"] |= {"path": str(cfg.sharelog.path / f"worker-{index}")}
    if index > 0:
        data["api"] |= {"listen": "", "admin_listen": ""}
    return parse_config(data, environ={})


#: A worker that dies this many times within a minute is not started again: the supervisor
#: stops the others and exits with the worker's code (a bad config or host, not a blip).
RESTARTS_PER_MINUTE = 5


def _reserve(host: str) -> socket.socket:
    """Bind a port of the kernel's choice for workers to share, and keep it bound: SO_REUSEPORT
    and never listening, so it takes no connection, yet no other process can take the port
    between the workers' starts (a port picked and released could be)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _supervise(config: Path, n: int, cfg: Config) -> int:
    """Start n worker processes on one SO_REUSEPORT socket address; forward stop signals.
    A worker that exits while no stop was asked for is started again (logged); one that
    keeps dying stops the whole daemon with its exit code. A Stratum listener on port 0 gets
    one port for all workers (`_reserve`), handed to them as an environment override."""
    env = dict(os.environ)
    reserved: list[socket.socket] = []
    st = cfg.stratum
    for key, host, port in (
        ("LISTEN", st.host, st.port),
        ("TLS_LISTEN", st.tls_host, st.tls_port if st.tls_listen else None),
    ):
        if port == 0:
            sock = _reserve(host)
            reserved.append(sock)
            env[f"POOLD__STRATUM__{key}"] = f'"{host}:{sock.getsockname()[1]}"'

    def start(i: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poold",
                "run",
                "--config",
                str(config),
                "--worker-index",
                str(i),
            ],
            env=env,
        )

    procs = [start(i) for i in range(n)]
    stopping: list[int] = []
    deaths: list[list[float]] = [[] for _ in range(n)]

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    failed = 0
    while not stopping and not failed:
        time.sleep(0.2)
        for i, proc in enumerate(procs):
            code = proc.poll()
            if code is None or stopping:
                continue
            now = time.monotonic()
            deaths[i] = [t for t in deaths[i] if now - t < 60] + [now]
            if len(deaths[i]) > RESTARTS_PER_MINUTE:
                typer.echo(
                    f"poold: worker {i} exited {len(deaths[i])} times in a minute (last code "
                    f"{code}); stopping the other workers",
                    err=True,
                )
                failed = code or 1
                forward(signal.SIGTERM, None)
                break
            typer.echo(f"poold: worker {i} exited with code {code}; starting it again", err=True)
            procs[i] = start(i)
    codes = [proc.wait() for proc in procs]
    for sock in reserved:
        sock.close()
    return failed or max(codes, default=0)


def demo_config(port: int = 3333, var: Path = Path("var"), api_port: int = 8080) -> Config:
    """The embedded default, `poold/cli/demo.toml` (package data; `configs/demo.toml` links to
    it): simnet chain, SQLite and share log under `var`, stratum on `port`, API and dashboard
    on `api_port`; FPPS booked every 10 s and token periods of one minute, so a short run
    shows every step. The demo itself logs warnings only (it prints its own progress)."""
    import tomllib
    from importlib.resources import files

    from poold.config import parse_config

    data = tomllib.loads(files("poold.cli").joinpath("demo.toml").read_text())
    data["stratum"]["listen"] = f"127.0.0.1:{port}"
    data["api"]["listen"] = f"127.0.0.1:{api_port}"
    data["ledger"]["url"] = f"sqlite:///{var / 'ledger.db'}"
    data["sharelog"]["path"] = str(var / "sharelog")
    data["log"] = {"level": "warning", "stats_interval_s": 3600}
    return parse_config(data, environ={})


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="stop after this many seconds (0 = Ctrl-C)")] = 0,
    miners: Annotated[int, typer.Option(help="simulated miners")] = 4,
    port: Annotated[int, typer.Option(help="stratum port")] = 3333,
    api_port: Annotated[int, typer.Option(help="API and dashboard port")] = 8080,
) -> None:
    """Run the embedded default with a few simulated miners, printing what happens. Each run
    starts from a fresh ./var (the simnet chain is new each time too)."""
    import uvloop

    from poold.logs import configure_logging

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
    from poold.daemon import Daemon
    from poold.ledger import journal
    from poold.ledger.db import open_ledger
    from poold.ledger.settle import balances, verify

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
        f"poold demo: simnet chain at height {(await daemon.bitcoind.get_template())['height']}, "
        f"stratum on {host}:{port}, {miners} simulated miners, share log in "
        f"{cfg.sharelog.path}/",
        flush=True,
    )
    holder_token, miner_token = await asyncio.to_thread(_demo_tokens, daemon, cfg)
    if daemon.api_addresses:
        ahost, aport = daemon.api_addresses[0]
        print(
            f"dashboard: http://{ahost}:{aport}/  (token holders alice and bob; alice's read "
            f"token: {holder_token}; miner account demo's token: {miner_token})",
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
    seen_blocks = seen_periods = seen_anchors = 0
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
            print(_period_line(start, cfg.tokens.period_s, settled), flush=True)
        if len(daemon.token_periods) > seen_periods:
            for line in await _demo_payouts(daemon, cfg):
                print(line, flush=True)
        seen_periods = len(daemon.token_periods)
        if m.anchors_sent > seen_anchors:
            print(
                "  anchor transaction sent: the chains' heads on chain, for holders to check "
                "(verify.py)",
                flush=True,
            )
            seen_anchors = m.anchors_sent
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


#: The demo's holders and the fleet's own account, with the regtest addresses they are paid
#: at (`poold demo` pays them through the simnet's wallet after each token period).
DEMO_ADDRESSES = {
    "holder:alice": "bcrt1q5nmnplysa458yfr320cpdpeqn6kswh5q82cqz9",
    "holder:bob": "bcrt1qy5vd63wq578rd2lju78lt490ym20t6s85s6s74",
    "demo": "bcrt1qjc86a5wd6087ynqe5ceutuhau7lpr8ra0q3ufw",
}
#: BTC/USD of the simnet's coin: a TH/s earns about $0.05 a day at it (see demo.toml), times
#: a cycle of 12 periods, one a minute: at once a dip in which costs exceed gross (holders
#: carry debt into the next periods), then a recovery that pays it back.
DEMO_PRICE = Fraction(1, 10**13)
DEMO_CYCLE = ("1.00", "0.50", "0.45", "0.70", "0.90", "1.05", "1.20", "1.30", "1.20", "1.10",
              "1.05", "1.00")  # fmt: skip
DEMO_PERIODS = 1440  # prices for a day of one-minute periods


def demo_price(i: int) -> Fraction:
    """The BTC/USD of the demo's i-th token period."""
    return DEMO_PRICE * Fraction(DEMO_CYCLE[i % len(DEMO_CYCLE)])


def _period_line(start: int, length_s: int, settled: TokenSettlement) -> str:
    """A settled token period in one line: the pot, the delivery, each holder's statement."""
    from poold.api.display import percent, period, sat

    def holder(name: str, x: StatementLine) -> str:
        debt = f", debt carried {sat(x.debt_out_sat)}" if x.debt_out_sat else ""
        costs = sat(x.electricity_sat + x.service_sat)
        return f"{name} gross {sat(x.gross_sat)} - costs {costs} = net {sat(x.net_sat)}{debt}"

    lines = "; ".join(holder(h, x) for h, x in sorted(settled.lines.items()))
    return (
        f"  token period {period(start, start + length_s)} settled: pot "
        f"{sat(settled.holders_pot_sat)}, delivery {percent(settled.delivery_ratio)} — {lines}"
    )


def _demo_tokens(daemon: Daemon, cfg: Config) -> tuple[str, str]:
    """Holders minted at the current period's start, or the next one's when less than half of
    it is left (alice 700 tokens, bob 200; 100 move from
    alice to bob 90 s in: 900 kH/s against a fleet of CPU miners), BTC/USD for a day of
    periods, payout addresses, a read token for alice and a miner token for the demo's miner
    account."""
    from poold.api.auth import create_token, scope_for
    from poold.ledger.payouts import set_account
    from poold.tokens.settle import period_of, set_prices
    from poold.tokens.transfers import import_transfers, parse_records

    assert daemon.ledger is not None
    now = int(time.time())
    start, end = period_of(now, cfg.tokens)
    if end - now < cfg.tokens.period_s // 2:  # the first statement is of a period mined through
        start = end
    import_transfers(
        daemon.ledger,
        parse_records(
            [
                {"id": "demo:mint:alice", "ts": start, "to": "alice", "amount": "700"},
                {"id": "demo:mint:bob", "ts": start, "to": "bob", "amount": "200"},
                {
                    "id": "demo:alice->bob",
                    "ts": start + 90,
                    "from": "alice",
                    "to": "bob",
                    "amount": "100",
                },
            ]
        ),
    )
    period = cfg.tokens.period_s
    set_prices(
        daemon.ledger,
        [(start + i * period, demo_price(i)) for i in range(DEMO_PERIODS)],
        cfg.tokens,
    )
    for account, address in DEMO_ADDRESSES.items():
        set_account(daemon.ledger, account, address=address, min_payout_sat=None)
    return (
        create_token(daemon.ledger, "holder:alice"),
        create_token(daemon.ledger, scope_for("miner", "demo")),
    )


async def _demo_payouts(daemon: Daemon, cfg: Config) -> list[str]:
    """Pay what is owed (holders and the fleet's account) through the simnet's wallet, as
    `poold payout --send` would through bitcoind's; lines saying what was sent."""
    from poold.api.display import btc
    from poold.bitcoind.simnet import SimNet
    from poold.ledger.payouts import PayoutError, run_payouts

    wallet = daemon.bitcoind
    if daemon.ledger is None or not isinstance(wallet, SimNet):
        return []
    leadership = daemon.scheduler.leadership
    try:
        report = await run_payouts(
            daemon.ledger,
            wallet,
            network=cfg.pool.network,
            min_payout_sat=cfg.payouts.min_payout_sat,
            max_outputs=cfg.payouts.max_outputs,
            confirmations=cfg.payouts.confirmations,
            send=True,
            # As the leader: its intents carry its epoch, and it sends only while it leads.
            fence=None if leadership is None else leadership.fence(),
            lease_ms=int(cfg.ledger.node_lease_s * 1000),
            leading=lambda: leadership is None or leadership.leading(),
        )
    except PayoutError as exc:  # the next period's run tries again
        return [f"  payout failed: {exc}"]
    lines = []
    for (payout_id, txid, _total), batch in zip(report.sent, report.batches, strict=False):
        paid = ", ".join(f"{btc(p.amount_sat)} to {p.account}" for p in batch)
        lines.append(f"  payout {payout_id}: {paid}; txid {txid}")
    return lines


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
    import uvloop

    from simulation.fleet import run_fleet

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
        raise fail(f"simulate: {exc}", 1) from None
    typer.echo(json.dumps(stats.summary()))


@app.command("sim")
def sim_cmd(
    seed: Annotated[int | None, typer.Option(help="replay exactly this seed")] = None,
    seeds: Annotated[int, typer.Option(help="how many seeds, from --first")] = 100,
    first: Annotated[int, typer.Option(help="first seed of the range")] = 0,
    steps: Annotated[int, typer.Option(help="steps per run")] = 400,
    nodes: Annotated[
        int, typer.Option(min=1, max=8, help="daemons on one ledger (2+: the several-daemons sim)")
    ] = 1,
) -> None:
    """The seeded fault simulator: the share path under full disks, short writes, fsync errors,
    database cuts and kill -9, checked against every durability invariant after each run;
    with --nodes N, N daemons on one ledger under lagging, stopped, killed and lost nodes,
    silent partitions and deposed leaders resuming, every block checked against the rule over
    the final ledger and no write accepted from a deposed leadership epoch.
    Exit 1 naming each failing seed (`poold sim --seed N` replays one exactly)."""
    import logging

    import structlog

    from simulation.daemons import NODE_FAULTS, NodesReport, simulate_nodes
    from simulation.faults import FAULTS, SimReport, simulate

    # The runs provoke thousands of logged faults on purpose: keep only the verdicts.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    chosen = [seed] if seed is not None else list(range(first, first + seeds))
    failed = []
    faults: dict[str, int] = {}
    fenced = [0, 0]  # writes of a deposed epoch: refused, accepted (must stay 0)
    kinds = NODE_FAULTS if nodes > 1 else FAULTS
    for n in chosen:
        report: SimReport | NodesReport = (
            simulate_nodes(n, n_nodes=nodes, steps=steps) if nodes > 1 else simulate(n, steps=steps)
        )
        for kind, count in report.faults.items():
            faults[kind] = faults.get(kind, 0) + count
        if isinstance(report, NodesReport):
            fenced[0] += report.refused
            fenced[1] += report.deposed_accepted
        if seed is not None or not report.ok:
            typer.echo(report.summary())
        if not report.ok:
            failed.append(n)
    typer.echo(
        f"{len(chosen)} seeds, {steps} steps each, fault kinds {', '.join(kinds)}; injected: "
        + ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
        + (
            f"; writes from a deposed epoch: {fenced[0]} refused, {fenced[1]} accepted"
            if nodes > 1
            else ""
        )
        + f"; failing seeds: {failed or 'none'}"
    )
    if failed:
        raise typer.Exit(1)
