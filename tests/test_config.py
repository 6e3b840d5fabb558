from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poold.chain.difficulty import is_quantized, quantize, share_difficulty
from poold.config import ConfigError, load_config, parse_config
from poold.shares.format import decode_share, encode_share
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
    assert cfg.stratum.port == 3333 and cfg.bitcoind.kind == "rpc"
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
        (minimal(bitcoind={"kind": "btcd"}), "bitcoind.kind"),
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
    from poold.cli.run import demo_config

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


@pytest.mark.parametrize(
    ("key", "value", "nearest"),
    [
        ("start_difficulty", 0.0001, '"1/16384"'),  # a TOML float: exactly 7378697629483821/2**66
        ("start_difficulty", "0.0012345678901234567890123", '"1/1024"'),
        ("min_difficulty", 0.00001, '"1/131072"'),
        ("max_difficulty", "1000.5", "1000 or 1001"),
    ],
)
def test_share_difficulty_must_fit_the_share_record(key: str, value: object, nearest: str) -> None:
    data = minimal(stratum={"min_difficulty": "1/4294967296", key: value})
    with pytest.raises(ConfigError) as exc:
        parse_config(data, environ={})
    assert f"stratum.{key}: {value!r} is not a difficulty poold can credit" in str(exc.value)
    assert nearest in str(exc.value)


@given(st.fractions(min_value=Fraction(1, 2**32), max_value=Fraction(2**60)))
def test_every_credited_difficulty_fits_the_record(d: Fraction) -> None:
    """Whatever a config or a miner asks for, what poold credits encodes and decodes exactly."""
    for credited in (quantize(d), *([d] if is_quantized(d) else [])):
        assert share_difficulty(str(credited)) == credited
        payload = encode_share(
            0, 0, "a", "w", "j", 1, 0x207FFFFF, credited.numerator, credited.denominator,
            bytes(4), bytes(4), 0, 0, 0, False,
        )  # fmt: skip
        rec = decode_share(payload)
        assert Fraction(rec.diff_num, rec.diff_den) == credited


def test_cli_config_check_refuses_a_float_difficulty(tmp_path: Path) -> None:
    cfg = tmp_path / "float.toml"
    cfg.write_text(
        f'[stratum]\nstart_difficulty = 0.0001\n[pool]\nnetwork = "regtest"\n'
        f'payout_address = "{regtest_address()}"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "poold", "config", "check", str(cfg)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "stratum.start_difficulty" in out.stderr


def test_config_dump_hides_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "secret.toml"
    cfg.write_text(
        '[bitcoind]\nkind = "rpc"\nurl = "http://rpc:hunter2@127.0.0.1:8332"\npassword = "s3cret"\n'
        f'[pool]\nnetwork = "regtest"\npayout_address = "{regtest_address()}"\n'
    )
    env = {
        **os.environ,
        "POOLD__LEDGER__URL": "postgresql://poold:pgpass@127.0.0.1/test?password=qpass&x=1",
        "POOLD__STREAM__URL": "nats://natsuser:natspass@127.0.0.1:4222,nats://natstok@h:4223",
    }
    cmd = [sys.executable, "-m", "poold", "config", "dump", str(cfg)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0
    secrets = ("hunter2", "s3cret", "pgpass", "qpass", "natspass", "natstok")
    for secret in secrets:
        assert secret not in out.stdout
    data = json.loads(out.stdout)
    assert data["bitcoind"]["password"] == "***"
    assert data["bitcoind"]["url"] == "http://rpc:***@127.0.0.1:8332"
    assert data["ledger"]["url"] == "postgresql://poold:***@127.0.0.1/test?password=***&x=1"
    assert data["stream"]["url"] == "nats://natsuser:***@127.0.0.1:4222,nats://***@h:4223"
    shown = subprocess.run([*cmd, "--show-secrets"], capture_output=True, text=True, env=env)
    assert all(secret in shown.stdout for secret in secrets)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://h/db?sslmode=require&password=pw",
            "postgresql+psycopg://h/db?sslmode=require&password=***",
        ),
        ("postgresql://role@h/db", "postgresql://role@h/db"),  # a role name is no secret
        ("postgresql://u:p@ss@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("nats://tok@h:4222", "nats://***@h:4222"),
        ("tls://u:pw@h:4222", "tls://u:***@h:4222"),
        ("http://h:8332/?token=t&a=b#frag", "http://h:8332/?token=***&a=b#frag"),
        ("sqlite:///var/ledger.db", "sqlite:///var/ledger.db"),
        ("sqlite:////srv/a@b/ledger.db", "sqlite:////srv/a@b/ledger.db"),
    ],
)
def test_redact_url_hides_every_credential(url: str, shown: str) -> None:
    from poold.config import redact_url

    assert redact_url(url) == shown


def test_example_states_the_true_defaults() -> None:
    """Every key in configs/example.toml has the value the code defaults to (only the payout
    address, which has no default, differs): an operator reading it reads the truth."""
    import tomllib

    from poold.config import Config, parse_config

    data = tomllib.loads((ROOT / "configs" / "example.toml").read_text())
    example = parse_config(data, environ={})
    pool = {"payout_address": data["pool"]["payout_address"]}
    defaults = parse_config({"pool": pool}, environ={})
    differ = []
    for section in Config.model_fields:
        for key in data.get(section, {}):
            if (section, key) == ("pool", "payout_address"):
                continue
            got = getattr(getattr(example, section), key)
            want = getattr(getattr(defaults, section), key)
            if got != want:
                differ.append(f"{section}.{key}: example {got!r}, code {want!r}")
    assert differ == []


def test_a_mainnet_config_without_a_real_node_is_refused(tmp_path: Path) -> None:
    from poold.config import ConfigError, parse_config

    address = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    cfg = parse_config({"pool": {"payout_address": address}}, environ={})
    assert cfg.bitcoind.kind == "rpc"  # no [bitcoind]: a real node, never a fake chain
    with pytest.raises(ConfigError, match='"simnet" is a fake chain and cannot mine mainnet'):
        parse_config(
            {"pool": {"payout_address": address}, "bitcoind": {"kind": "simnet"}}, environ={}
        )
