from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from poold.shares.log import read_log
from tests.bitcoind.conftest import free_port
from tests.e2e.test_durability import write_config
from tests.helpers import StratumClient

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_stops_by_itself(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poold", "demo", "--duration", "6", "--port", "0", "--miners", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "stratum on 127.0.0.1:" in out.stdout
    done = [line for line in out.stdout.splitlines() if line.startswith("poold demo: done.")]
    assert done and int(done[0].split()[3]) > 0, out.stdout  # shares accepted
    assert (tmp_path / "var" / "sharelog").is_dir()


@pytest.mark.parametrize("flag", ["--port", "--api-port"])
def test_demo_on_a_busy_port_says_so_and_exits(tmp_path: Path, flag: str) -> None:
    """It used to print nothing, bind nothing and ignore SIGTERM (only kill -9 ended it)."""
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        other = ["--api-port", "0"] if flag == "--port" else ["--port", "0"]
        out = subprocess.run(
            [sys.executable, "-m", "poold", "demo", "--duration", "30", flag, str(port), *other],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        busy.close()
    assert out.returncode == 1, out.stdout
    assert "poold: cannot start:" in out.stderr and "address already in use" in out.stderr


async def test_simulate_reports_accepted_and_latency(pool: Any) -> None:
    host, port = pool.address
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poold",
        "simulate",
        "--url",
        f"stratum+tcp://{host}:{port}",
        "--miners",
        "2",
        "--duration",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["accepted"] > 0 and report["latency_ms_p99"] > 0
    assert pool.daemon.metrics.shares_accepted >= report["accepted"]


def test_simulate_bad_url_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poold", "simulate", "--url", "http://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        out.returncode == 1 and "expected stratum+tcp:// or stratum+ssl://HOST:PORT" in out.stderr
    )


async def test_workers_share_one_port(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path, port=port, extra="workers = 2\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poold",
        "run",
        "--config",
        str(cfg),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert proc.stderr is not None
    listening = 0
    while listening < 2:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert line, "poold exited"
        listening += json.loads(line).get("event") == "stratum_listening"
    prefixes = set()
    clients = []
    for _ in range(24):
        c = await StratumClient.connect(("127.0.0.1", port))
        sub = await c.request("mining.subscribe", [])
        prefixes.add(bytes.fromhex(sub["result"][1])[0])
        clients.append(c)
    assert prefixes == {0, 1}  # both processes took connections on the same port
    for c in clients:
        await c.close()
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert (tmp_path / "sharelog" / "worker-0").is_dir()
    assert (tmp_path / "sharelog" / "worker-1").is_dir()


def test_help_imports_nothing_heavy() -> None:
    """`poold --help` (and any command's --help) loads no daemon, database or accounting
    code: the commands import what they need when they run."""
    probe = (
        "import sys\n"
        "from poold.cli import app\n"
        "for args in (['--help'], ['ledger', '--help'], ['run', '--help']):\n"
        "    try:\n"
        "        app(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = ('sqlalchemy', 'numba', 'numpy', 'aiohttp', 'poold.daemon', 'accounting',\n"
        "         'poold.ledger.db', 'uvloop')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


async def test_workers_with_the_api_and_a_ledger_survive_a_worker_kill(tmp_path: Path) -> None:
    """Defect 6: with the API on, the second worker died on the API port and nobody noticed;
    `poold ingest` and `poold replay` read no worker's log. Now worker 0 alone serves the
    API, a killed worker is started again, and ingest and replay cover every worker."""
    port = free_port()
    cfg = write_config(tmp_path, port=port, extra="workers = 2\n")
    ledger = tmp_path / "ledger.db"
    cfg.write_text(
        cfg.read_text()
        + f'\n[ledger]\nurl = "sqlite:///{ledger}"\ningest_interval_s = 0.2\n'
        + 'auto_migrate = true\n\n[api]\nlisten = "127.0.0.1:0"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poold", "run", "--config", str(cfg),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[str] = []
    api_port: list[int] = []

    async def until(event: str, count: int) -> None:
        while seen.count(event) < count:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)  # type: ignore[union-attr]
            assert line, f"poold exited: {seen}"
            if line.startswith(b"{"):
                record = json.loads(line)
                seen.append(record.get("event"))
                if record.get("event") == "api_listening":
                    api_port.append(int(record["port"]))
            else:
                seen.append(line.decode().strip())

    try:
        await until("stratum_listening", 2)
        await until("ledger_leadership", 1)
        assert seen.count("api_listening") == 1
        workers = _children(proc.pid)
        assert len(workers) == 2
        import os

        os.kill(max(workers), signal.SIGKILL)
        await until("stratum_listening", 3)  # started again
        assert any("starting it again" in s for s in seen if s)
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "poold", "simulate", "--url", f"stratum+tcp://127.0.0.1:{port}",
            "--miners", "12", "--duration", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(sim.communicate(), 60)
        assert sim.returncode == 0, err
        accepted = json.loads(out)["accepted"]
        assert accepted > 0
        # /metrics (served by worker 0) adds up both workers' counts: their state files are
        # written every second.
        import urllib.request

        def scrape() -> float:
            url = f"http://127.0.0.1:{api_port[0]}/metrics"
            with urllib.request.urlopen(url, timeout=10) as r:
                text = r.read().decode()
            line = next(x for x in text.splitlines() if x.startswith("poold_shares_total{"))
            return float(line.rsplit(" ", 1)[1])

        deadline = asyncio.get_running_loop().time() + 20
        while (total := await asyncio.to_thread(scrape)) < accepted:
            assert asyncio.get_running_loop().time() < deadline, (total, accepted)
            await asyncio.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    ingest = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poold", "ingest", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    replay = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poold", "replay", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    logged = [
        sum(1 for _p, r in read_log(tmp_path / "sharelog" / f"worker-{i}") if r["t"] == "share")
        for i in (0, 1)
    ]
    assert all(logged) and report["shares"] == sum(logged) and report["problems"] == 0


async def test_the_demo_shows_a_year_in_small_and_verify_py_passes(tmp_path: Path) -> None:
    """`poold demo` settles one-minute token periods with real costs (electricity with a
    discount, service), benchmarked against the network's hashprice; the fleet account is
    debited each period; holders are paid through the simnet's wallet, with a txid; the
    second period's price dip leaves them in debt. Alice's proof of the first period, fetched
    with the read token the demo prints, passes the standalone verifier; so does the demo
    miner's proof of an FPPS booking, fetched with its miner token."""
    import urllib.request

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poold", "demo", "--duration", "300", "--port", "0",
        "--api-port", "0", "--miners", "2",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    token = miner_token = ""
    api = ""
    printed: list[str] = []
    reader: asyncio.Task[None] | None = None
    try:
        while not token:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "the demo exited"
            if "read token: " in line:
                api = line.split("dashboard: ")[1].split("/ ")[0]
                token = line.split("read token: ")[1].split(";")[0].strip()
                miner_token = line.split("demo's token: ")[1].split(")")[0].strip()

        def get(path: str, auth: bool = False, bearer: str = "") -> bytes:
            req = urllib.request.Request(f"{api}{path}")
            if auth or bearer:
                req.add_header("Authorization", f"Bearer {bearer or token}")
            with urllib.request.urlopen(req, timeout=10) as r:
                return bytes(r.read())

        async def drain() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                printed.append(line.decode())

        reader = asyncio.create_task(drain())  # the demo prints as it goes: keep reading

        async def statements(n: int) -> list[dict[str, Any]]:
            """Alice's statements once n periods are settled, oldest first."""
            deadline = asyncio.get_running_loop().time() + 240
            while True:
                listed = json.loads(
                    await asyncio.to_thread(get, "/api/v1/holders/alice/statements", True)
                )
                if len(listed["items"]) >= n:
                    return list(reversed(listed["items"]))
                assert asyncio.get_running_loop().time() < deadline, f"{n} periods not settled"
                await asyncio.sleep(2)

        first = (await statements(1))[0]
        start = first["period_start"]
        assert first["period_end"] - start == 60  # a statement a minute
        assert first["electricity_sat"] > 0 and first["service_sat"] > 0
        assert first["rates"]["discount"]["exact"] == "0.1"
        assert Fraction(first["electricity_kwh"]["exact"]) > 0
        assert first["benchmark"] is not None and first["benchmark"]["covered_s"] > 0

        async def verify_py(proof: bytes, name: str) -> subprocess.CompletedProcess[str]:
            (tmp_path / name).write_bytes(proof)
            return await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(ROOT / "verify.py"), str(tmp_path / name)],
                capture_output=True,
                text=True,
                timeout=60,
            )

        proof = await asyncio.to_thread(get, f"/api/v1/holders/alice/proofs/{start}", True)
        out = await verify_py(proof, "proof.json")
        assert out.returncode == 0 and out.stdout.startswith("ok: alice's line"), out.stdout
        # The demo miner's FPPS credits: each booking's proof passes the same verifier; the
        # holders' share of each period is a debit of the same account.
        credits = json.loads(await asyncio.to_thread(get, "/api/v1/miners/demo/credits?limit=500"))
        booked = [c for c in credits["items"] if c["reason"] == "fpps_period"]
        assert booked, credits
        debits = [c for c in credits["items"] if c["reason"] == "token_period"]
        assert debits and all(c["amount_sat"] < 0 for c in debits)
        proof = await asyncio.to_thread(
            get, f"/api/v1/miners/demo/proofs/{booked[-1]['reference']}", bearer=miner_token
        )
        out = await verify_py(proof, "credit.json")
        assert out.returncode == 0 and out.stdout.startswith("ok: demo's credit of fpps:"), (
            out.stdout
        )
        # Alice was paid through the simnet's wallet: a txid, on the pool's payments too.
        paid = json.loads(await asyncio.to_thread(get, "/api/v1/holders/alice/payouts", True))
        [payout] = [p for p in paid["items"] if p["amount_sat"] == first["paid_sat"]]
        assert len(payout["txid"]) == 64 and payout["status"] in ("sent", "confirmed")
        payments = json.loads(await asyncio.to_thread(get, "/api/v1/pool/payments"))
        assert payout["txid"] in [p["txid"] for p in payments["items"]]
        # The second period's price is half: costs exceed gross, and the shortfall is debt.
        second = (await statements(2))[1]
        assert second["net_sat"] < 0 and second["paid_sat"] == 0
        assert second["debt_out_sat"] == second["debt_in_sat"] - second["net_sat"] > 0
        assert any("payout" in line and "txid" in line for line in printed)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 60)
        if reader is not None:
            reader.cancel()
