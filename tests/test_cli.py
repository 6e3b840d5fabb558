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
from tests.e2e.test_durability import write_config
from tests.helpers import PATIENCE_S, StratumClient, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


async def test_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    """The demo mines and reports as it goes; Ctrl-C ends it with its summary and a ledger
    that verifies."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poold", "demo", "--port", "0", "--api-port", "0", "--miners", "2",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []

    async def mining() -> bool:
        line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
        assert line, f"the demo exited: {lines}"
        lines.append(line)
        return "shares accepted=" in line and int(line.split("shares accepted=")[1].split()[0]) > 0

    await wait_for(mining, "the demo's miners to get a share accepted", every_s=0)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), PATIENCE_S)
    assert proc.returncode == 0, err
    text = "".join(lines) + out.decode()
    assert "stratum on 127.0.0.1:" in text
    done = [line for line in text.splitlines() if line.startswith("poold demo: done.")]
    assert done and int(done[0].split()[3]) > 0, text  # shares accepted
    assert "ledger verify: ok" in text
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
            timeout=PATIENCE_S,
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
    stdout, stderr = await asyncio.wait_for(proc.communicate(), PATIENCE_S)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["accepted"] > 0 and report["latency_ms_p99"] > 0
    assert pool.daemon.metrics.shares_accepted >= report["accepted"]


def test_simulate_bad_url_is_a_clear_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poold", "simulate", "--url", "http://x"],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )
    assert (
        out.returncode == 1 and "expected stratum+tcp:// or stratum+ssl://HOST:PORT" in out.stderr
    )


async def listening_port(proc: asyncio.subprocess.Process, count: int) -> int:
    """The Stratum port `count` processes of `poold run` report listening on (one for all)."""
    assert proc.stderr is not None
    ports: list[int] = []
    while len(ports) < count:
        line = await asyncio.wait_for(proc.stderr.readline(), PATIENCE_S)
        assert line, "poold exited"
        if line.startswith(b"{") and json.loads(line).get("event") == "stratum_listening":
            ports.append(int(json.loads(line)["port"]))
    assert len(set(ports)) == 1, ports
    return ports[0]


async def test_workers_share_one_port(tmp_path: Path) -> None:
    """With `workers = 2` and port 0, the supervisor binds one port for both workers (held
    until they stop, so nothing can take it in between) and each worker listens on it."""
    cfg = write_config(tmp_path, port=0, extra="workers = 2\n")
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
    port = await listening_port(proc, 2)
    assert port != 0
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
    await asyncio.wait_for(proc.communicate(), PATIENCE_S)
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
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        check=True,
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
    cfg = write_config(tmp_path, port=0, extra="workers = 2\n")
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
    stratum_port: list[int] = []

    async def until(event: str, count: int) -> None:
        while seen.count(event) < count:
            line = await asyncio.wait_for(proc.stderr.readline(), PATIENCE_S)  # type: ignore[union-attr]
            assert line, f"poold exited: {seen}"
            if line.startswith(b"{"):
                record = json.loads(line)
                seen.append(record.get("event"))
                if record.get("event") == "api_listening":
                    api_port.append(int(record["port"]))
                if record.get("event") == "stratum_listening":
                    stratum_port.append(int(record["port"]))
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
        assert len(set(stratum_port)) == 1  # the restarted worker took the same port
        port = stratum_port[0]
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "poold", "simulate", "--url", f"stratum+tcp://127.0.0.1:{port}",
            "--miners", "12", "--duration", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(sim.communicate(), PATIENCE_S)
        assert sim.returncode == 0, err
        accepted = json.loads(out)["accepted"]
        assert accepted > 0
        # /metrics (served by worker 0) adds up both workers' counts: their state files are
        # written every second.
        import urllib.request

        def scrape() -> float:
            url = f"http://127.0.0.1:{api_port[0]}/metrics"
            with urllib.request.urlopen(url, timeout=PATIENCE_S) as r:
                text = r.read().decode()
            line = next(x for x in text.splitlines() if x.startswith("poold_shares_total{"))
            return float(line.rsplit(" ", 1)[1])

        async def added_up() -> bool:
            return await asyncio.to_thread(scrape) >= accepted

        await wait_for(added_up, "/metrics to add up both workers' shares", every_s=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), PATIENCE_S)
    assert proc.returncode == 0
    ingest = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poold", "ingest", "--config", str(cfg)],
        capture_output=True, text=True, timeout=PATIENCE_S,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    replay = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "poold", "replay", "--config", str(cfg)],
        capture_output=True, text=True, timeout=PATIENCE_S,
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
    with the read token the demo prints, passes the standalone verifier, anchored in a block's
    coinbase; so does the demo miner's proof of an FPPS booking, fetched with its miner token,
    anchored by an anchor transaction and by coinbases."""
    import urllib.request

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "poold", "demo", "--port", "0", "--api-port", "0", "--miners", "2",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    token = miner_token = ""
    api = ""
    printed: list[str] = []
    reader: asyncio.Task[None] | None = None
    try:
        while not token:
            line = (await asyncio.wait_for(proc.stdout.readline(), PATIENCE_S)).decode()
            assert line, "the demo exited"
            if "read token: " in line:
                api = line.split("dashboard: ")[1].split("/ ")[0]
                token = line.split("read token: ")[1].split(";")[0].strip()
                miner_token = line.split("demo's token: ")[1].split(")")[0].strip()

        def get(path: str, auth: bool = False, bearer: str = "") -> bytes:
            req = urllib.request.Request(f"{api}{path}")
            if auth or bearer:
                req.add_header("Authorization", f"Bearer {bearer or token}")
            with urllib.request.urlopen(req, timeout=PATIENCE_S) as r:
                return bytes(r.read())

        async def drain() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                printed.append(line.decode())

        reader = asyncio.create_task(drain())  # the demo prints as it goes: keep reading

        async def statements(n: int) -> list[dict[str, Any]]:
            """Alice's statements once n periods are settled, oldest first."""
            listed: list[dict[str, Any]] = []

            async def settled() -> bool:
                got = json.loads(
                    await asyncio.to_thread(get, "/api/v1/holders/alice/statements", True)
                )
                listed[:] = list(reversed(got["items"]))
                return len(listed) >= n

            await wait_for(settled, f"{n} token periods settled by the demo", every_s=1)
            return listed

        first = (await statements(1))[0]
        start = first["period_start"]
        assert first["period_end"] - start == 60  # a statement a minute
        assert first["electricity_sat"] > 0 and first["service_sat"] > 0
        assert first["rates"]["discount"]["exact"] == "0.1"
        assert Fraction(first["electricity_kwh"]["exact"]) > 0
        assert first["benchmark"] is not None and first["benchmark"]["covered_s"] > 0

        async def verify_py(
            proof: bytes, name: str, *args: str
        ) -> subprocess.CompletedProcess[str]:
            (tmp_path / name).write_bytes(proof)
            return await asyncio.to_thread(
                subprocess.run,
                [sys.executable, str(ROOT / "verify.py"), str(tmp_path / name), *args],
                capture_output=True,
                text=True,
                timeout=PATIENCE_S,
            )

        async def anchored(path: str, bearer: str, want: set[str]) -> bytes:
            """The proof at `path` once its anchors include every kind in `want` (the
            anchoring pass reads them back a pass after their block is found)."""
            got: list[bytes] = []

            async def ready() -> bool:
                got[:] = [await asyncio.to_thread(get, path, bearer=bearer)]
                return want <= {a["type"] for a in json.loads(got[0])["anchors"]}

            await wait_for(ready, f"{path} anchored by {sorted(want)}", every_s=1)
            return got[0]

        proof = await anchored(f"/api/v1/holders/alice/proofs/{start}", token, {"coinbase"})
        out = await verify_py(proof, "proof.json")
        assert out.returncode == 0 and out.stdout.startswith("ok: alice's line"), out.stdout
        # The simnet's work is trivial: the verdict says what that establishes, nothing more.
        assert "\nproof of work trivial (test chain)" in out.stdout, out.stdout
        assert "\nanchored" not in out.stdout
        # The demo miner's FPPS credits: each booking's proof passes the same verifier; the
        # holders' share of each period is a debit of the same account. The first booking's
        # head went out in an anchor transaction at once (nothing carried it), and blocks found
        # later carry its successors in their coinbases.
        credits = json.loads(await asyncio.to_thread(get, "/api/v1/miners/demo/credits?limit=500"))
        booked = [c for c in credits["items"] if c["reason"] == "fpps_period"]
        assert booked, credits
        debits = [c for c in credits["items"] if c["reason"] == "token_period"]
        assert debits and all(c["amount_sat"] < 0 for c in debits)
        proof = await anchored(
            f"/api/v1/miners/demo/proofs/{booked[-1]['reference']}",
            miner_token,
            {"coinbase", "transaction"},
        )
        out = await verify_py(proof, "credit.json", "--min-work", "1")
        assert out.returncode == 0 and out.stdout.startswith("ok: demo's credit of fpps:"), (
            out.stdout
        )
        lines = out.stdout.splitlines()
        assert any(x.startswith("anchored:") and "in its coinbase" in x for x in lines), lines
        assert any(x.startswith("anchored:") and "in transaction" in x for x in lines), lines
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
        await asyncio.wait_for(proc.wait(), PATIENCE_S)
        if reader is not None:
            reader.cancel()
