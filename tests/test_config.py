from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from poold.config import ConfigError, load_config, parse_config
from tests.helpers import regtest_address

ROOT = Path(__file__).resolve().parents[1]


def minimal(**extra: dict) -> dict:
    data: dict = {"pool": {"network": "regtest", "payout_address": regtest_address()}}
    for k, v in extra.items():
        data.setdefault(k, {}).update(v)
    return data


def test_defaults_and_exact_difficulties() -> None:
    cfg = parse_config(
        minimal(stratum={"min_difficulty": "1/4294967296", "start_difficulty": 0.5}), environ={}
    )
    assert cfg.stratum.min_difficulty == Fraction(1, 2**32)
    assert cfg.stratum.start_difficulty == Fraction(1, 2)
    assert cfg.stratum.port == 3333 and cfg.node.kind == "simnet"
    assert cfg.pool.payout_script[:2] == b"\x00\x14"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (minimal(stratum={"lisen": "x"}), "unknown key 'stratum.lisen' (did you mean 'listen'?)"),
        (minimal(stratm={"listen": "x"}), "unknown key 'stratm' (did you mean 'stratum'?)"),
        (minimal(stratum={"port": 3333}), "obsolete key 'stratum.port'"),
        (minimal(stratum={"listen": "3333"}), "stratum.listen: listen must be HOST:PORT"),
        (
            minimal(stratum={"min_difficulty": "0"}),
            "stratum.min_difficulty: difficulty must be > 0",
        ),
        (minimal(stratum={"start_difficulty": "1/2**40"}), "stratum.start_difficulty"),
        (minimal(stratum={"start_difficulty": 1, "max_difficulty": "1/2"}), "min_difficulty <="),
        (minimal(stratum={"version_mask": "xyz"}), "version_mask must be hex"),
        (minimal(node={"kind": "btcd"}), "node.kind"),
        (minimal(pool={"fee": 0.01}), "not a float"),
        (minimal(pool={"fee": "1.5"}), "must be in [0, 1)"),
        (minimal(pool={"payout_address": "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"}), "version byte"),
        ({"pool": {}}, "missing required key 'pool.payout_address'"),
        ({}, "missing required key 'pool'"),
    ],
)
def test_errors_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert needle in str(exc.value)


def test_env_overrides() -> None:
    env = {
        "POOLD__STRATUM__LISTEN": "127.0.0.1:4444",
        "POOLD__STRATUM__MAX_CONNECTIONS": "7",
        "POOLD__POOL__FEE": '"1/50"',
        "OTHER": "x",
    }
    cfg = parse_config(minimal(), environ=env)
    assert cfg.stratum.port == 4444 and cfg.stratum.max_connections == 7
    assert cfg.pool.fee == Fraction(1, 50)
    with pytest.raises(ConfigError, match="POOLD__SECTION__KEY"):
        parse_config(minimal(), environ={"POOLD__LISTEN": "x"})
    with pytest.raises(ConfigError, match=r"unknown key 'stratum\.nope'"):
        parse_config(minimal(), environ={"POOLD__STRATUM__NOPE": "1"})


@pytest.mark.parametrize("name", ["example.toml", "demo.toml", "regtest.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    load_config(ROOT / "configs" / name, environ={})


def test_demo_toml_is_what_poold_demo_runs() -> None:
    from poold.__main__ import demo_config

    shipped = load_config(ROOT / "configs" / "demo.toml", environ={})
    embedded = demo_config()
    assert shipped.model_dump(exclude={"log"}) == embedded.model_dump(exclude={"log"})


def test_example_documents_every_key() -> None:
    from poold.config import Config

    text = (ROOT / "configs" / "example.toml").read_text()
    for section, field in Config.model_fields.items():
        assert f"[{section}]" in text
        model = field.annotation
        for key in model.model_fields:  # type: ignore[union-attr]
            assert f"\n{key} =" in text or f"\n# {key} =" in text, f"{section}.{key} undocumented"


def test_cli_config_check(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "poold", "config", "check", str(ROOT / "configs" / "example.toml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "ok" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[pool]\npayout_address = "bcrt1qnope"\nnetwork = "regtest"\n')
    out = subprocess.run(
        [sys.executable, "-m", "poold", "config", "check", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "pool: Value error" not in out.stderr
    assert "payout address 'bcrt1qnope'" in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "poold", "config", "check", str(tmp_path / "none.toml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[pool\n")
    out = subprocess.run(
        [sys.executable, "-m", "poold", "config", "check", str(broken)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not valid TOML" in out.stderr
