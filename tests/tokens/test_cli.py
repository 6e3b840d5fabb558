"""`poold tokens import | price | settle` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_durability import write_config
from tests.helpers import PATIENCE_S

pytestmark = pytest.mark.slow


def test_import_price_settle(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(
        cfg.read_text()
        + f'\n[ledger]\nurl = "sqlite:///{tmp_path / "l.db"}"\n'
        + '\n[tokens]\nenabled = true\nfleet_accounts = ["fleet"]\nw_per_th = "20"\n'
    )

    def poold(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "poold", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )

    assert poold("migrate").returncode == 0
    transfers = tmp_path / "t.csv"
    transfers.write_text(
        "id,ts,from,to,amount\n"
        "0xaa:0,2026-01-01T00:00:00Z,,alice,10\n"
        "0xbb:3,2026-01-01T12:00:00Z,alice,bob,4\n"
    )
    first = poold("tokens", "import", str(transfers))
    assert first.returncode == 0 and json.loads(first.stdout) == {"added": 2, "unchanged": 0}
    assert json.loads(poold("tokens", "import", str(transfers)).stdout)["unchanged"] == 2

    bad = tmp_path / "bad.csv"
    bad.write_text("id,ts,from,to,amount\n0xcc:0,2026-01-01T13:00:00Z,bob,carol,5\n")
    refused = poold("tokens", "import", str(bad))
    assert refused.returncode == 1 and "would leave 'bob' with -1 tokens" in refused.stderr

    waits = poold("tokens", "settle")
    assert waits.returncode == 0 and "no BTC/USD price" in waits.stdout
    assert "0 period(s) settled" in waits.stdout
    price = poold("tokens", "price", "2026-01-01", "65432.10")
    assert price.returncode == 0, price.stderr
    assert json.loads(price.stdout)["period_start"] == 1_767_225_600  # 2026-01-01T00:00Z
    assert "give unix seconds or a date" in poold("tokens", "price", "Jan 1", "1").stderr
    prices = tmp_path / "prices.csv"
    prices.write_text("period,btc_usd\n2026-01-02,66000\n2026-01-01,1\n")
    first = poold("tokens", "prices", str(prices))  # 01-01 is not settled yet: accepted
    assert first.returncode == 0, first.stderr
    prices.write_text("period,btc_usd\n2026-01-01,65432.10\n2026-01-03,abc\n")
    bad_price = poold("tokens", "prices", str(prices))
    assert bad_price.returncode == 1 and "line 3: 'abc' is not a number" in bad_price.stderr
    prices.write_text("period,btc_usd\n2026-01-01,65432.10\n")
    assert poold("tokens", "prices", str(prices)).returncode == 0
    settled = poold("tokens", "settle")
    assert settled.returncode == 0, settled.stderr
    line = json.loads(settled.stdout.splitlines()[0])
    assert line["period_start"] == 1_767_225_600 and line["holders"] == 2
    assert settled.stdout.count('"holders": 2') == 2  # 01-02 had its price from the file too
    assert "no BTC/USD price for the period starting 1767398400" in settled.stdout
    assert poold("ledger", "verify").returncode == 0
