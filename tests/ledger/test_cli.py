from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_durability import write_config
from tests.helpers import PATIENCE_S
from tests.ledger.test_ingest import write_shares

pytestmark = pytest.mark.slow


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poold", *args], capture_output=True, text=True, timeout=PATIENCE_S
    )


def test_migrate_then_ingest_twice(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + f'\n[ledger]\nurl = "sqlite:///{tmp_path / "l.db"}"\n')
    write_shares(tmp_path / "sharelog", 1500)
    before = run("ingest", "--config", str(cfg))
    assert before.returncode == 2 and "run `poold migrate`" in before.stderr
    assert run("migrate", "--config", str(cfg)).returncode == 0
    first = run("ingest", "--config", str(cfg))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["shares"] == 1500
    second = run("ingest", "--config", str(cfg))
    assert json.loads(second.stdout)["records"] == 0
    settled = run("settle", "--config", str(cfg))
    assert settled.returncode == 0 and "block(s) settled" in settled.stdout, settled.stderr
    n = int(settled.stdout.strip().splitlines()[-1].split()[0])
    assert n == 1  # write_shares logs 2 blocks under 1500 shares, one accepted (i = 0)
    assert run("settle", "--config", str(cfg)).stdout.strip().endswith("0 block(s) settled")
    ok = run("ledger", "verify", "--config", str(cfg))
    assert ok.returncode == 0 and "every posting balances" in ok.stdout
    refold = run("ledger", "refold", "--config", str(cfg))
    assert refold.returncode == 0 and "rebuilt" in refold.stdout, refold.stderr
    assert run("ledger", "verify", "--config", str(cfg)).returncode == 0


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text() + '\n[ledger]\nurl = "postgresql://u:pw@127.0.0.1:9/x"\n')
    out = run("migrate", "--config", str(cfg))
    assert out.returncode == 2 and "cannot connect to the ledger" in out.stderr
    assert "pw" not in out.stderr
