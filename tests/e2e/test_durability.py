"""kill -9 of a real `poold run` process right after shares were answered true loses none, and
kill -9 inside its ingest transaction neither loses nor doubles a share in the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from poold.ledger.db import make_engine
from poold.ledger.models import Account, ShareSlice
from poold.shares.log import read_log
from simulation.fleet import FleetStats, run_fleet
from tests.helpers import PATIENCE_S, regtest_address, wait_for
from tests.ledger.test_ingest import ledger_totals, log_totals

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, port: int = 0, extra: str = "") -> Path:
    cfg = tmp_path / "poold.toml"
    cfg.write_text(
        f"""
[stratum]
listen = "127.0.0.1:{port}"
start_difficulty = "1/1048576"
min_difficulty = "1/4294967296"
vardiff_target_share_time_s = 0.05
vardiff_retarget_time_s = 2
{extra}
[bitcoind]
kind = "simnet"
simnet_difficulty = "1/256"
poll_interval_s = 0.05

[pool]
network = "regtest"
payout_address = "{regtest_address()}"

[sharelog]
path = "{tmp_path / "sharelog"}"
fsync_interval_ms = 50

[log]
level = "info"
format = "json"
"""
    )
    return cfg


async def start_poold(
    cfg: Path, launcher: tuple[str, ...] = ("-m", "poold"), env: dict[str, str] | None = None
) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *launcher,
        "run",
        "--config",
        str(cfg),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    while True:
        line = await asyncio.wait_for(proc.stderr.readline(), PATIENCE_S)
        if not line:
            raise AssertionError(f"poold exited early with {await proc.wait()}")
        event = json.loads(line)
        if event.get("event") == "stratum_listening":
            return proc, int(event["port"])


async def drain_stderr(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def test_kill9_loses_no_acknowledged_share(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc, port = await start_poold(cfg)
    drain = asyncio.create_task(drain_stderr(proc))
    stats = FleetStats()
    fleet = asyncio.create_task(
        run_fleet(
            f"stratum+tcp://127.0.0.1:{port}",
            miners=4,
            duration_s=PATIENCE_S,
            record_keys=True,
            stats=stats,
        )
    )
    await wait_for(lambda: stats.accepted >= 300 or fleet.done(), "300 shares answered true")
    assert not fleet.done(), fleet
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of a stream of replies
    assert await proc.wait() == -signal.SIGKILL
    with contextlib.suppress(Exception):
        await fleet
    await drain
    acked = set(stats.accepted_keys)
    assert len(acked) >= 300

    # Restart on the same share log (it recovers any torn tail), then stop it cleanly.
    proc2, _ = await start_poold(cfg)
    proc2.send_signal(signal.SIGTERM)
    await drain_stderr(proc2)
    assert await proc2.wait() == 0

    logged = {
        (r["job"], r["en1"], r["en2"], r["ntime"], r["nonce"])
        for _pos, r in read_log(tmp_path / "sharelog")
        if r["t"] == "share"
    }
    missing = acked - logged
    assert not missing, f"{len(missing)} acknowledged shares lost"


async def test_kill9_inside_an_ingest_transaction_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.db"
    cfg = write_config(tmp_path)
    cfg.write_text(
        cfg.read_text()
        + f'\n[ledger]\nurl = "sqlite:///{ledger}"\ningest_interval_s = 0.1\n'
        + "ingest_open_minutes = true\nauto_migrate = true\n"
        # The stop's last ingest may take long on a busy machine: what is tested is that it
        # resumes from the checkpoint, not how fast (the stop's bound has its own test).
        + f"shutdown_wait_s = {PATIENCE_S}\n"
    )
    crash = ("-u", str(Path(__file__).with_name("crash_ingest.py")), "3")
    pidfile = tmp_path / "ledger-process.pid"
    proc, port = await start_poold(cfg, crash, {"CRASH_INGEST_PIDFILE": str(pidfile)})
    drain = asyncio.create_task(drain_stderr(proc))
    stats = FleetStats()
    fleet = asyncio.create_task(
        run_fleet(
            f"stratum+tcp://127.0.0.1:{port}",
            miners=4,
            duration_s=PATIENCE_S,
            record_keys=True,
            stats=stats,
        )
    )
    # The ledger process kills the daemon inside its third ingest transaction ...
    await wait_for(lambda: ended(proc.pid), "the ledger process to kill the daemon")
    # ... and dies with it (PR_SET_PDEATHSIG): no orphan can commit that transaction later.
    ledger_pid = int(pidfile.read_text())
    await wait_for(lambda: ended(ledger_pid), "the ledger process to die with the daemon")
    assert await asyncio.wait_for(proc.wait(), PATIENCE_S) == -signal.SIGKILL
    with contextlib.suppress(Exception):
        await fleet
    await drain
    acked = set(stats.accepted_keys)
    assert len(acked) > 0
    engine = make_engine(f"sqlite:///{ledger}")
    before = sum(ledger_totals_count(engine).values())

    # Restart: the last ingest at stop resumes from the committed checkpoint.
    proc2, _ = await start_poold(cfg)
    proc2.send_signal(signal.SIGTERM)
    await drain_stderr(proc2)
    assert await proc2.wait() == 0

    logged = [r for _pos, r in read_log(tmp_path / "sharelog") if r["t"] == "share"]
    keys = {(r["job"], r["en1"], r["en2"], r["ntime"], r["nonce"]) for r in logged}
    assert acked <= keys  # every share answered true is in the log ...
    counts = ledger_totals_count(engine)
    assert sum(counts.values()) == len(logged) > before  # ... and in the ledger, exactly once
    assert ledger_totals(engine) == log_totals(tmp_path / "sharelog")
    engine.dispose()


def ended(pid: int) -> bool:
    """`pid` is gone or a zombie (it may be nobody's child to reap now)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def ledger_totals_count(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            a: int(n)
            for a, n in conn.execute(
                sa.select(Account.name, sa.func.sum(ShareSlice.shares))
                .join(ShareSlice, ShareSlice.account_id == Account.id)
                .group_by(Account.name)
            )
        }


async def test_sigterm_is_graceful_and_flushes(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    proc, port = await start_poold(cfg)
    drain = asyncio.create_task(drain_stderr(proc))
    stats = await run_fleet(
        f"stratum+tcp://127.0.0.1:{port}",
        miners=2,
        duration_s=PATIENCE_S,
        record_keys=True,
        until=lambda s: s.accepted >= 20,
    )
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), PATIENCE_S) == 0
    await drain
    logged = {
        (r["job"], r["en1"], r["en2"], r["ntime"], r["nonce"])
        for _p, r in read_log(tmp_path / "sharelog")
        if r["t"] == "share"
    }
    assert set(stats.accepted_keys) <= logged and stats.accepted > 0


def test_config_error_stops_before_binding(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, port=0, extra='lisen = "x"\n')
    out = subprocess.run(
        [sys.executable, "-m", "poold", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )
    assert out.returncode == 2
    assert "stratum.lisen" in out.stderr and "did you mean 'listen'" in out.stderr
    assert not (tmp_path / "sharelog").exists()  # nothing was opened or bound


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, port=port)
        out = subprocess.run(
            [sys.executable, "-m", "poold", "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )
    assert out.returncode == 1
    assert "poold: cannot start:" in out.stderr and "address already in use" in out.stderr.lower()
