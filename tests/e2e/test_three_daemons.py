"""Three daemons, one PostgreSQL ledger, one real regtest node, their share logs shipped to
the real NATS JetStream: miners on each, one daemon cut off (SIGSTOP) for longer than its
lease, the leader killed with kill -9. Another daemon takes the leadership within seconds;
the dead daemon's records come from the stream; every settled block's credits equal the
rule over the final ledger; `poold replay` over every node's log and `poold ledger verify`
pass."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from poold.ledger.models import Block, Settlement
from tests.bitcoind.conftest import Bitcoind, bitcoind, bitcoind_bin, free_port
from tests.helpers import PATIENCE_S
from tests.ledger.conftest import PG_URL, fresh_pg_schema
from tests.ledger.test_nodes import rule_over_final_ledger
from tests.ledger.test_prop_solo import journal_credits
from tests.shares.test_stream import NATS_URL, drop, stream_config

__all__ = ["bitcoind", "bitcoind_bin"]

FEE = Fraction(1, 100)
LEASE_S, WAIT_S = 2, 6


def write_config(
    tmp: Path, node_id: int, port: int, bitcoind: Bitcoind, url: str, stream: Any
) -> Path:
    cfg = tmp / f"poold{node_id}.toml"
    stream_section = (
        f"""
[stream]
url = "{NATS_URL}"
stream = "{stream.stream}"
subject = "{stream.subject}"
mirror_path = "{tmp / "mirror"}"
"""
        if stream is not None
        else '\n[api]\nlisten = "127.0.0.1:0"\n'
    )
    cfg.write_text(
        f"""
[stratum]
listen = "127.0.0.1:{port}"
node_id = {node_id}
start_difficulty = "1/65536"
min_difficulty = "1/65536"

[bitcoind]
kind = "rpc"
url = "{bitcoind.url}"
user = "u"
password = "p"
poll_interval_s = 0.2

[pool]
network = "regtest"
payout_address = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
fee = "1/100"

[ledger]
url = "{url}"
ingest_interval_s = 0.5
auto_migrate = true
node_lease_s = {LEASE_S}
node_wait_s = {WAIT_S}

[sharelog]
path = "{tmp / f"log{node_id}"}"
fsync_interval_ms = 20

{stream_section}
[log]
level = "info"
format = "json"
"""
    )
    return cfg


class Daemon:
    def __init__(self, node_id: int, cfg: Path, port: int) -> None:
        self.node_id, self.cfg, self.port = node_id, cfg, port
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
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
                self.events.append(json.loads(line))

    def saw(self, event: str, **fields: Any) -> bool:
        return any(
            e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            for e in self.events
        )

    def leads(self) -> bool:
        held = [e["held"] for e in self.events if e.get("event") == "ledger_leadership"]
        return bool(held) and held[-1] is True


async def wait_until(cond: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def poold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poold", *args], capture_output=True, text=True, timeout=PATIENCE_S
    )


async def test_three_daemons_one_cut_one_killed(bitcoind: Bitcoind, tmp_path: Path) -> None:
    stream = stream_config()
    with fresh_pg_schema() as schema:
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        daemons = []
        for node_id in (1, 2, 3):
            port = free_port()
            daemons.append(
                Daemon(node_id, write_config(tmp_path, node_id, port, bitcoind, url, stream), port)
            )
        miners: list[asyncio.subprocess.Process] = []
        try:
            for d in daemons:
                await d.start()
                await wait_until(
                    lambda d=d: d.saw("stratum_listening"), PATIENCE_S, f"node {d.node_id}"
                )
            for d, account in zip(daemons, ("alice", "bob", "carol"), strict=True):
                miners.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "poold",
                        "simulate",
                        "--url",
                        f"stratum+tcp://127.0.0.1:{d.port}",
                        "--miners",
                        "2",
                        "--duration",
                        "16",
                        "--account",
                        account,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                    )
                )
            await wait_until(lambda: any(d.leads() for d in daemons), PATIENCE_S, "a leader")
            leader = next(d for d in daemons if d.leads())
            cut = next(d for d in daemons if d is not leader)
            # Cut one daemon off for longer than its lease (but not past node_wait_s).
            await asyncio.sleep(3)
            assert cut.proc is not None
            cut.proc.send_signal(signal.SIGSTOP)
            await wait_until(
                lambda: leader.saw("settlement_waits_for_node"), PATIENCE_S, "the leader to wait"
            )
            cut.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(3)
            # Kill the leader; another takes over within seconds.
            assert leader.proc is not None
            leader.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await leader.proc.wait()
            survivors = [d for d in daemons if d is not leader]
            await wait_until(lambda: any(d.leads() for d in survivors), PATIENCE_S, "a new leader")
            handover_s = time.monotonic() - killed_at
            assert handover_s < 10
            for m in miners:
                await m.wait()
            # The killed node is waited for, its records read from the stream, then it is
            # left out; every accepted block of a closed minute is settled.
            engine = sa.create_engine(url)
            minute_end = (int(time.time()) // 60 + 1) * 60

            def all_settled() -> bool:
                if time.time() < minute_end + 2:
                    return False
                with engine.connect() as conn:
                    accepted = set(
                        conn.execute(
                            sa.select(Block.hash).where(Block.accepted.is_(True))
                        ).scalars()
                    )
                    keys = set(conn.execute(sa.select(Settlement.key)).scalars())
                return bool(accepted) and all(f"pplns:{h}" in keys for h in accepted)

            await wait_until(all_settled, PATIENCE_S, "every accepted block settled")
            new_leader = next(d for d in survivors if d.leads())
            assert new_leader.saw("ledger_ingested_from_stream", node=leader.node_id)
            assert new_leader.saw("settlement_excludes_node")
        finally:
            for m in miners:
                if m.returncode is None:
                    m.kill()
            for d in daemons:
                if d.proc is not None and d.proc.returncode is None:
                    d.proc.send_signal(signal.SIGCONT)
                    d.proc.send_signal(signal.SIGTERM)
            for d in daemons:
                if d.proc is not None:
                    await asyncio.wait_for(d.proc.wait(), PATIENCE_S)
                if d.reader is not None:
                    await d.reader
        # Every settled block's credits are the rule over the final ledger.
        with engine.connect() as conn:
            blocks = conn.execute(
                sa.select(Block.hash, Block.found_ms, Block.reward_sat).join(
                    Settlement, Settlement.key == "pplns:" + Block.hash
                )
            ).all()
            nodes_seen = set(
                conn.execute(sa.text("SELECT DISTINCT node_id FROM share_slices")).scalars()
            )
        assert len(blocks) >= 3 and nodes_seen == {1, 2, 3}
        for h, found_ms, reward in blocks:
            want = rule_over_final_ledger(engine, int(found_ms), FEE, int(reward), f"pplns:{h}")
            assert journal_credits(engine, h) == want, h
        engine.dispose()
        survivor = next(d for d in daemons if d is not leader)
        others = [
            f"--log={d.node_id}={tmp_path / f'log{d.node_id}'}"
            for d in daemons
            if d is not survivor
        ]
        rep = await asyncio.to_thread(poold, "replay", "--config", str(survivor.cfg), *others)
        assert rep.returncode == 0, rep.stderr
        assert json.loads(rep.stdout)["blocks_checked"] == len(blocks)
        ver = await asyncio.to_thread(poold, "ledger", "verify", "--config", str(survivor.cfg))
        assert ver.returncode == 0, ver.stdout + ver.stderr
        assert (tmp_path / "mirror" / f"node-{leader.node_id}").is_dir()
        # The same replay from the stream alone: every node's records as NATS holds them.
        try:
            rep = await asyncio.to_thread(
                poold, "replay", "--config", str(survivor.cfg), "--from-stream"
            )
            assert rep.returncode == 0, rep.stderr
            assert json.loads(rep.stdout)["blocks_checked"] == len(blocks)
        finally:
            await drop(stream)


class Leaders:
    """Samples every daemon's `poold_leader` (its /metrics) as fast as they answer: a stopped
    or cut-off daemon that does not answer is skipped (it cannot act on what it would say)."""

    def __init__(self, daemons: list[Daemon]) -> None:
        self.daemons = daemons
        self.samples = 0
        self.both: list[dict[int, int]] = []  # samples with two daemons reporting leader
        self._task: asyncio.Task[None] | None = None

    async def _one(self, http: Any, d: Daemon) -> int | None:
        api = next((e["port"] for e in d.events if e.get("event") == "api_listening"), None)
        if api is None or d.proc is None or d.proc.returncode is not None:
            return None
        try:
            async with http.get(f"http://127.0.0.1:{api}/metrics") as resp:
                text = await resp.text()
        except (TimeoutError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith("poold_leader "):
                return int(float(line.split()[1]))
        return None

    async def _run(self) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=0.5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                got = await asyncio.gather(*(self._one(http, d) for d in self.daemons))
                self.samples += 1
                view = {d.node_id: v for d, v in zip(self.daemons, got, strict=True) if v}
                if len(view) > 1:
                    self.both.append(view)
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def leading_now(daemons: list[Daemon]) -> Daemon | None:
    leaders = [d for d in daemons if d.leads() and d.proc is not None and d.proc.returncode is None]
    return leaders[-1] if leaders else None


def takeovers(daemons: list[Daemon]) -> list[tuple[int, int]]:
    """(epoch, node) of every `ledger_leadership held=true` logged, by epoch."""
    return sorted(
        (int(e["epoch"]), d.node_id)
        for d in daemons
        for e in d.events
        if e.get("event") == "ledger_leadership" and e.get("held") is True
    )


async def test_three_daemons_through_partitions_and_a_paused_leader(
    bitcoind: Bitcoind, tmp_path: Path
) -> None:
    """Each daemon's database connections go through a proxy of its own. The leader's is made
    a black hole (connections open, nothing forwarded), later another leader's resets every
    connection, and a third leader is paused (SIGSTOP) past its lease and resumed. Each time
    another daemon takes over within two leases; the old leader stops reporting itself leader
    before the new one starts; every takeover is logged once with its own epoch; and at the
    end every settled block equals the rule over the final ledger, nothing settled twice."""
    from tests.faults.proxy import CuttableProxy

    with fresh_pg_schema() as schema:
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
        proxies: dict[int, CuttableProxy] = {}
        daemons = []
        for node_id in (1, 2, 3):
            proxy = proxies[node_id] = CuttableProxy(("127.0.0.1", 5432))
            pport = await proxy.start()
            durl = f"postgresql+psycopg://postgres@127.0.0.1:{pport}/test?options=-csearch_path%3D{schema}"
            port = free_port()
            daemons.append(
                Daemon(node_id, write_config(tmp_path, node_id, port, bitcoind, durl, None), port)
            )
        miners: list[asyncio.subprocess.Process] = []
        sampler = Leaders(daemons)
        failovers: list[float] = []
        try:
            for d in daemons:
                await d.start()
                await wait_until(
                    lambda d=d: d.saw("api_listening"), PATIENCE_S, f"node {d.node_id}"
                )
            for d, account in zip(daemons, ("alice", "bob", "carol"), strict=True):
                miners.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "poold", "simulate",
                        "--url", f"stratum+tcp://127.0.0.1:{d.port}", "--miners", "2",
                        "--duration", "40", "--account", account,
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                    )
                )  # fmt: skip
            await wait_until(lambda: leading_now(daemons) is not None, PATIENCE_S, "a leader")
            sampler.start()
            for fault in ("black hole", "reset", "pause"):
                await asyncio.sleep(3)  # blocks found, settled by the leader
                old = leading_now(daemons)
                assert old is not None
                epochs = len(takeovers(daemons))
                began = time.monotonic()
                if fault == "black hole":
                    proxies[old.node_id].stall()
                elif fault == "reset":
                    proxies[old.node_id].cut()
                else:
                    assert old.proc is not None
                    old.proc.send_signal(signal.SIGSTOP)
                await wait_until(
                    lambda old=old, n=epochs: (
                        len(takeovers(daemons)) > n
                        and leading_now([d for d in daemons if d is not old]) is not None
                    ),
                    PATIENCE_S,
                    f"a takeover after the {fault}",
                )
                failovers.append(time.monotonic() - began)
                await asyncio.sleep(2 * LEASE_S)
                if fault == "pause":
                    assert old.proc is not None
                    old.proc.send_signal(signal.SIGCONT)
                else:
                    proxies[old.node_id].restore()
                await asyncio.sleep(LEASE_S)
            for m in miners:
                await m.wait()
            engine = sa.create_engine(url)
            minute_end = (int(time.time()) // 60 + 1) * 60

            def all_settled() -> bool:
                if time.time() < minute_end + 2:
                    return False
                with engine.connect() as conn:
                    accepted = set(
                        conn.execute(
                            sa.select(Block.hash).where(Block.accepted.is_(True))
                        ).scalars()
                    )
                    keys = set(conn.execute(sa.select(Settlement.key)).scalars())
                return bool(accepted) and all(f"pplns:{h}" in keys for h in accepted)

            await wait_until(all_settled, PATIENCE_S, "every accepted block settled")
        finally:
            await sampler.stop()
            for m in miners:
                if m.returncode is None:
                    m.kill()
            for d in daemons:
                if d.proc is not None and d.proc.returncode is None:
                    d.proc.send_signal(signal.SIGCONT)
                    d.proc.send_signal(signal.SIGTERM)
            for d in daemons:
                if d.proc is not None:
                    await asyncio.wait_for(d.proc.wait(), PATIENCE_S)
                if d.reader is not None:
                    await d.reader
            for proxy in proxies.values():
                await proxy.close()
        # Never two daemons reporting themselves leader at once.
        assert sampler.samples > 50 and sampler.both == [], sampler.both[:5]
        # Every change of leader logged once, with its own epoch, each a new one.
        changes = takeovers(daemons)
        assert len(changes) >= 4
        assert [e for e, _n in changes] == sorted({e for e, _n in changes}), changes
        print(f"failover after black hole, reset, pause: {[round(f, 2) for f in failovers]} s")
        # Every settled block once, and equal to the rule over the final ledger.
        with engine.connect() as conn:
            blocks = conn.execute(
                sa.select(Block.hash, Block.found_ms, Block.reward_sat).join(
                    Settlement, Settlement.key == "pplns:" + Block.hash
                )
            ).all()
            keys = list(conn.execute(sa.select(Settlement.key)).scalars())
            paid = list(conn.execute(sa.text("SELECT txid FROM payouts WHERE txid IS NOT NULL")))
        assert len(keys) == len(set(keys)) and len(blocks) >= 3
        assert len(paid) == len(set(paid))  # no payout twice
        for h, found_ms, reward in blocks:
            want = rule_over_final_ledger(engine, int(found_ms), FEE, int(reward), f"pplns:{h}")
            assert journal_credits(engine, h) == want, h
        engine.dispose()
        direct = write_config(tmp_path, 9, free_port(), bitcoind, url, None)  # no proxy
        ver = await asyncio.to_thread(poold, "ledger", "verify", "--config", str(direct))
        assert ver.returncode == 0, ver.stdout + ver.stderr
