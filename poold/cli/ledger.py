"""Ledger commands: migrate, ingest, settle, replay, `ledger verify|refold`, payout,
`account set`, `nodes list|retire`. Heavy imports happen inside each command.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from poold.cli import (
    ConfigOption,
    account_app,
    app,
    fail,
    ledger_app,
    node_logs,
    nodes_app,
    open_ledger_for,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from poold.config import Config
    from poold.ledger.fpps import FppsBooked
    from poold.ledger.payouts import PayoutReport
    from poold.ledger.replay import ReplayReport


@app.command()
def migrate(
    config: ConfigOption,
) -> None:
    """Create or upgrade the ledger schema (the database the config's ledger url names)."""
    from poold.ledger.models import SCHEMA_VERSION

    with open_ledger_for(config, migrate_schema=True):
        pass
    typer.echo(f"ledger schema at version {SCHEMA_VERSION}")


@app.command()
def ingest(
    config: ConfigOption,
) -> None:
    """Ingest everything new in the share log (every worker's, with workers > 1) into the
    ledger (exactly once; safe to repeat)."""
    from poold.ledger.ingest import ingest as run_ingest
    from poold.shares.log import prune_segments

    totals = dict.fromkeys(("records", "shares", "slices", "blocks", "segments_removed"), 0)
    with open_ledger_for(config) as (cfg, engine):
        for path, node_id in node_logs(cfg):
            result = run_ingest(engine, path, node_id)
            # Retention, never past what the ledger holds: segments below the checkpoint's.
            removed = prune_segments(
                path,
                below_segment=result.position.segment,
                older_than=time.time() - cfg.sharelog.retention_hours * 3600,
            )
            totals["records"] += result.records
            totals["shares"] += result.shares
            totals["slices"] += result.slices
            totals["blocks"] += result.blocks
            totals["segments_removed"] += len(removed)
    typer.echo(json.dumps(totals))


@app.command()
def settle(
    config: ConfigOption,
) -> None:
    """Settle every accepted block not settled yet (and, under FPPS with a real node, book the
    period that ended last); running it again changes nothing."""
    import uvloop

    from poold.bitcoind.client import BitcoindError
    from poold.ledger.settle import BLOCK_KEYS, settle_pending

    with open_ledger_for(config) as (cfg, engine):
        scheme = cfg.pool.scheme
        if scheme not in BLOCK_KEYS:
            raise fail(f"scheme {scheme!r} has no block settlement")
        done = settle_pending(engine, pool_fee=cfg.pool.fee, scheme=scheme)
        booked = None
        if scheme == "fpps" and cfg.bitcoind.kind == "rpc":
            try:
                booked = uvloop.run(_book_fpps(cfg, engine))
            except BitcoindError as exc:
                raise fail(f"settle: {exc}", 1) from None
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
    from poold.bitcoind.make import rpc_bitcoind
    from poold.ledger.fpps import book_with_bitcoind

    node = rpc_bitcoind(cfg.bitcoind)
    pool = cfg.pool
    try:
        return await book_with_bitcoind(
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
    config: ConfigOption,
    log: Annotated[
        list[str] | None,
        typer.Option(
            "--log",
            help="another daemon's share log, as NODE_ID=DIRECTORY (repeat for each); "
            "blocks are checked only when every node's log is given",
        ),
    ] = None,
    from_stream: Annotated[
        bool,
        typer.Option(
            "--from-stream",
            help="read every ingested node's records from the [stream] (NATS JetStream) "
            "instead of local directories",
        ),
    ] = False,
) -> None:
    """Recompute slices and block credits from the retained share logs (this config's, each
    worker's, and every --log; or every node's, from the stream); compare with the ledger."""
    import tempfile

    from poold.ledger.replay import replay_nodes

    if from_stream:
        with tempfile.TemporaryDirectory() as tmp, open_ledger_for(config) as (cfg, engine):
            mirrored = _mirror_all(cfg, engine, Path(tmp))
            with _progress("replaying the share log") as progress:
                report = replay_nodes(engine, mirrored, pool_fee=cfg.pool.fee, progress=progress)
        _replay_outcome(report)
        return
    sources: list[tuple[Path, int]] = []
    for item in log or []:
        node, sep, directory = item.partition("=")
        if not sep or not node.strip().isdigit() or not directory:
            raise fail(f"--log {item!r}: expected NODE_ID=DIRECTORY, e.g. --log 2=/var/poold/log")
        sources.append((Path(directory), int(node)))
    with open_ledger_for(config) as (cfg, engine), _progress("replaying the share log") as progress:
        report = replay_nodes(
            engine,
            node_logs(cfg) + sources,
            pool_fee=cfg.pool.fee,
            progress=progress,
        )
    _replay_outcome(report)


def _mirror_all(cfg: Config, engine: Engine, tmp: Path) -> list[tuple[Path, int]]:
    """Every ingested node's log rebuilt from the stream under `tmp`."""
    import asyncio

    from sqlalchemy import select

    from poold.ledger.models import IngestCheckpoint
    from poold.shares.stream import StreamConfig, StreamError, mirror

    sc = cfg.stream
    if not sc.url:
        raise fail("--from-stream needs [stream] url in the config")
    stream = StreamConfig(sc.url, sc.stream, sc.subject, sc.replicas, sc.timeout_s)
    with engine.connect() as conn:
        node_ids = sorted(conn.execute(select(IngestCheckpoint.node_id)).scalars())
    sources = []
    for node_id in node_ids:
        directory = tmp / f"node-{node_id}"
        try:
            asyncio.run(mirror(stream, node_id, directory))
        except StreamError as exc:
            raise fail(str(exc), 1) from None
        sources.append((directory, node_id))
    return sources


def _replay_outcome(report: ReplayReport) -> None:
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
    missing = [x for x in report.blocks_not_checkable if x.startswith("all:")]
    if missing:  # a replay that could not check the blocks did not pass
        typer.echo(f"poold: no block could be checked: {missing[0]} (add it with --log)", err=True)
        raise typer.Exit(1)


@nodes_app.command("list")
def nodes_list(config: ConfigOption) -> None:
    """Every node registered with the ledger: lease, watermark, status (JSON lines)."""
    from poold.ledger.nodes import read_states

    with open_ledger_for(config) as (cfg, engine):
        now = int(time.time() * 1000)
        for n in read_states(engine, now_ms=now, wait_ms=int(cfg.ledger.node_wait_s * 1000)):
            typer.echo(
                json.dumps(
                    {
                        "node_id": n.node_id,
                        "status": n.status,
                        "host": n.host,
                        "log_id": n.log_id,
                        "lease_until_ms": n.lease_until_ms,
                        "ingested_through_ms": n.through_ms,
                        "lag_s": max(0, now - n.through_ms) / 1000,
                    }
                )
            )


@nodes_app.command("retire")
def nodes_retire(
    config: ConfigOption,
    node_id: Annotated[int, typer.Argument(help="the node id to free")],
) -> None:
    """Forget a node whose share log is gone for good (its ingested shares stay): its id can
    be registered by another log, and settlement no longer waits for it."""
    from poold.ledger.nodes import retire

    with open_ledger_for(config) as (_cfg, engine):
        if not retire(engine, node_id):
            raise fail(f"node {node_id} is not registered", 1)
    typer.echo(f"node {node_id} retired")


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar over bytes on a terminal; nothing when output is not a TTY."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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
    config: ConfigOption,
) -> None:
    """Check the journal: every posting balances and the whole journal sums to zero."""
    from poold.ledger.settle import verify

    with open_ledger_for(config) as (_cfg, engine):
        problems = verify(engine)
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("ledger ok: every posting balances")


@ledger_app.command("refold")
def ledger_refold(
    config: ConfigOption,
) -> None:
    """Rebuild the slice sums PPLNS windows read, from the slices (after restoring a ledger,
    or when `ledger verify` says they differ). Ingest waits while it runs."""
    from sqlalchemy.exc import SQLAlchemyError

    from poold.ledger.db import LedgerError
    from poold.ledger.slices import sums as slice_sums

    with open_ledger_for(config) as (_cfg, engine):
        try:
            with engine.begin() as conn:
                slice_sums.rebuild(conn)
        except SQLAlchemyError as exc:
            raise LedgerError(f"refold failed, nothing changed: {exc}") from None
    typer.echo("slice sums rebuilt from the slices")


@app.command()
def payout(
    config: ConfigOption,
    send: Annotated[
        bool, typer.Option("--send/--dry-run", help="pay through the bitcoind wallet, or only show")
    ] = False,
) -> None:
    """Pay spendable balances over their threshold through the bitcoind wallet (never twice)."""
    import uvloop

    from poold.bitcoind.client import BitcoindError
    from poold.ledger.payouts import PayoutError

    with open_ledger_for(config) as (cfg, engine):
        if cfg.bitcoind.kind != "rpc":
            raise fail('payouts need a node wallet: set [bitcoind] kind = "rpc"')
        try:
            report = uvloop.run(_payout(cfg, engine, send))
        except (PayoutError, BitcoindError) as exc:
            raise fail(f"payout: {exc}", 1) from None
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
    from poold.bitcoind.make import rpc_bitcoind
    from poold.ledger.payouts import run_payouts

    wallet = rpc_bitcoind(cfg.bitcoind)
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
    config: ConfigOption,
    address: Annotated[str | None, typer.Option(help="payout address for this account")] = None,
    min_payout: Annotated[
        int | None, typer.Option(min=1, help="this account's payout threshold, satoshis")
    ] = None,
) -> None:
    """Set an account's payout address and/or threshold (checked against [pool] network)."""
    from poold.chain.address import address_to_script
    from poold.ledger.payouts import set_account

    with open_ledger_for(config) as (cfg, engine):
        if address is not None:
            try:
                address_to_script(address, cfg.pool.network)
            except ValueError as exc:
                raise fail(f"address {address!r}: {exc}") from None
        set_account(engine, name, address=address, min_payout_sat=min_payout)
    typer.echo(f"account {name}: address={address} min_payout_sat={min_payout}")
