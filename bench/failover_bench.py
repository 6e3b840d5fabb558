"""Failover and a bounded stop: three `poold run` on one PostgreSQL ledger (simnet chains),
each with its database connections through a proxy of its own (tests/faults/proxy.py).

- failover after a silent partition: the leader's proxy stops forwarding (connections stay
  open, nothing passes); measured from the cut to the first `ledger_leadership held=true`
  with a newer epoch on another daemon. Goal: at most 2 x `[ledger] node_lease_s`.
- failover after a resetting partition: the same with every connection reset and new ones
  refused.
- SIGTERM with a stalled database: a daemon whose proxy stalls is sent SIGTERM; measured to
  its exit. Goal: at most `[ledger] shutdown_wait_s` + 2 s.
Writes bench/results/failover.json.

.venv/bin/python bench/failover_bench.py [--lease 3] [--rounds 4] [--shutdown-wait 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import machine  # noqa: E402

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def config(tmp: Path, node_id: int, url: str, lease_s: float, wait_s: float) -> Path:
    cfg = tmp / f"node{node_id}.toml"
    cfg.write_text(f"""
[stratum]
listen = "127.0.0.1:0"
node_id = {node_id}
[bitcoind]
kind = "simnet"
[pool]
network = "regtest"
payout_address = "bcrt1q2gxggvp0sywjxshxylx4ta30xu80fnqdt5pekn"
[ledger]
url = "{url}"
ingest_interval_s = 0.5
auto_migrate = true
node_lease_s = {lease_s}
node_wait_s = {4 * lease_s}
shutdown_wait_s = {wait_s}
statement_timeout_s = {wait_s}
connect_timeout_s = 2
[sharelog]
path = "{tmp / f"log{node_id}"}"
[log]
level = "info"
format = "json"
""")
    return cfg


class Node:
    def __init__(self, node_id: int, cfg: Path, proxy: Any) -> None:
        self.node_id, self.cfg, self.proxy = node_id, cfg, proxy
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "poold", "run", "--config", str(self.cfg),
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            if line.startswith(b"{"):
                self.events.append((time.monotonic(), json.loads(line)))

    def takeovers(self) -> list[tuple[float, int]]:
        return [
            (t, int(e["epoch"]))
            for t, e in self.events
            if e.get("event") == "ledger_leadership" and e.get("held") is True
        ]

    def leads(self) -> bool:
        held = [e["held"] for _t, e in self.events if e.get("event") == "ledger_leadership"]
        return bool(held) and held[-1] is True


async def until(cond: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.02)


async def run(a: argparse.Namespace) -> dict[str, object]:
    import sqlalchemy as sa

    from tests.faults.proxy import CuttableProxy

    schema = f"bench_failover_{int(time.time())}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    nodes: list[Node] = []
    failover: dict[str, list[float]] = {"silent": [], "reset": []}
    stops: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="poold-failover-") as tmp:
            for node_id in (1, 2, 3):
                proxy = CuttableProxy(("127.0.0.1", 5432))
                port = await proxy.start()
                url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
                url += f"?options=-csearch_path%3D{schema}"
                cfg = config(Path(tmp), node_id, url, a.lease, a.shutdown_wait)
                nodes.append(Node(node_id, cfg, proxy))
            for n in nodes:
                await n.start()
            await until(lambda: any(n.leads() for n in nodes), 60)
            for r in range(a.rounds):
                for kind in ("silent", "reset"):
                    await asyncio.sleep(a.lease)
                    old = next(n for n in nodes if n.leads())
                    top = max(e for n in nodes for _t, e in n.takeovers())
                    began = time.monotonic()
                    if kind == "silent":
                        old.proxy.stall()
                    else:
                        old.proxy.cut()
                    others = [n for n in nodes if n is not old]
                    await until(
                        lambda o=others, t=top: any(e > t for n in o for _t, e in n.takeovers()),
                        60,
                    )
                    took = min(at - began for n in others for at, e in n.takeovers() if e > top)
                    failover[kind].append(took)
                    print(f"round {r} {kind}: failover {took:.2f} s", flush=True)
                    old.proxy.restore()
            # A bounded stop: each daemon's database stalls, then SIGTERM.
            for n in nodes:
                assert n.proc is not None
                n.proxy.stall()
                await asyncio.sleep(1.0)  # its passes are now stuck inside database calls
                began = time.monotonic()
                n.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(n.proc.wait(), 120)
                stops.append(time.monotonic() - began)
                print(f"node {n.node_id}: SIGTERM exit {stops[-1]:.2f} s", flush=True)
    finally:
        for n in nodes:
            if n.proc is not None and n.proc.returncode is None:
                n.proc.kill()
                await n.proc.wait()
            await n.proxy.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    all_failovers = failover["silent"] + failover["reset"]
    return {
        "machine": machine(),
        "node_lease_s": a.lease,
        "shutdown_wait_s": a.shutdown_wait,
        "failover_silent_s": {
            "median": round(statistics.median(failover["silent"]), 3),
            "max": round(max(failover["silent"]), 3),
            "runs": [round(x, 3) for x in failover["silent"]],
        },
        "failover_reset_s": {
            "median": round(statistics.median(failover["reset"]), 3),
            "max": round(max(failover["reset"]), 3),
            "runs": [round(x, 3) for x in failover["reset"]],
        },
        "failover_goal_s": 2 * a.lease,
        "failover_within_goal": max(all_failovers) <= 2 * a.lease,
        "sigterm_stalled_db_s": {
            "median": round(statistics.median(stops), 3),
            "max": round(max(stops), 3),
            "runs": [round(x, 3) for x in stops],
        },
        "sigterm_goal_s": a.shutdown_wait + 2,
        "sigterm_within_goal": max(stops) <= a.shutdown_wait + 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lease", type=float, default=3.0, help="[ledger] node_lease_s")
    ap.add_argument("--rounds", type=int, default=4, help="failovers of each kind")
    ap.add_argument("--shutdown-wait", type=float, default=3.0, help="[ledger] shutdown_wait_s")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "failover.json")
    a = ap.parse_args()
    result = asyncio.run(run(a))
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
