"""Stratum over TLS (stratum+ssl://): a second listener with the operator's certificate, the
same sessions, limits and share log as the plain one; clear errors naming a bad file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from poold.config import ConfigError, parse_config
from poold.daemon import Daemon
from poold.shares.format import ShareFields
from poold.shares.log import LogPosition, scan_from
from poold.stratum.tls import TlsConfigError
from simulation.fleet import run_fleet
from tests.helpers import PATIENCE_S, StratumClient, make_config, regtest_address


def make_cert(directory: Path, name: str = "pool") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl CLI."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    return make_cert(tmp_path)


def tls_config(tmp_path: Path, cert: tuple[Path, Path], **stratum: Any) -> Any:
    """A test daemon's config with a TLS listener on any free port, besides the plain one."""
    crt, key = cert
    return make_config(
        tmp_path,
        stratum={"tls_listen": "127.0.0.1:0", "tls_cert": str(crt), "tls_key": str(key), **stratum},
    )


def client_context(cert: Path) -> ssl.SSLContext:
    """A miner that trusts only this certificate and checks the host name (127.0.0.1)."""
    return ssl.create_default_context(cafile=str(cert))


async def tls_client(address: tuple[str, int], cert: Path) -> StratumClient:
    reader, writer = await asyncio.open_connection(*address, ssl=client_context(cert))
    return StratumClient(reader, writer)


def logged_workers(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for _pos, rec in scan_from(path, LogPosition(1, 0)):
        if isinstance(rec, ShareFields):
            name = f"{rec.account.decode()}.{rec.worker.decode()}"
            out[name] = out.get(name, 0) + 1
    return out


async def test_plain_and_tls_miners_share_one_pool(
    start_daemon: Any, tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, _key = cert
    # One share difficulty: no vardiff retarget to race the miners' shares in flight (on a
    # busy machine a share solved before a retarget arrived after it, as low difficulty).
    one = "1/4294967296"
    cfg = tls_config(tmp_path, cert, start_difficulty=one, min_difficulty=one, max_difficulty=one)
    rd = await start_daemon(cfg)
    host, port = rd.address
    assert rd.daemon.tls_address is not None
    tls_host, tls_port = rd.daemon.tls_address
    assert tls_port != port
    plain, secure = await asyncio.gather(
        run_fleet(
            f"stratum+tcp://{host}:{port}",
            miners=2,
            duration_s=PATIENCE_S,
            account="plain",
            until=lambda s: s.accepted > 10,
        ),
        run_fleet(
            f"stratum+ssl://{tls_host}:{tls_port}",
            miners=2,
            duration_s=PATIENCE_S,
            account="secure",
            tls=client_context(crt),
            until=lambda s: s.accepted > 10,
        ),
    )
    assert plain.accepted > 10 and secure.accepted > 10 and not secure.rejected
    # A raw TLS client: the same Stratum, extranonce1 from the same pool of prefixes.
    c = await tls_client(rd.daemon.tls_address, crt)
    sub = await c.handshake("secure.raw")
    d = await StratumClient.connect(rd.address)
    sub2 = await d.handshake("plain.raw")
    assert sub["result"][1] != sub2["result"][1]
    assert sub["result"][1][:2] == sub2["result"][1][:2] == f"{cfg.stratum.node_id:02x}"
    await c.close()
    await d.close()
    await rd.shutdown()
    counts = logged_workers(cfg.sharelog.path)
    # Every share answered true is in the one share log; a few more may be, whose replies
    # were still on the way when the fleet stopped counting (at most 32 in flight a miner).
    for prefix, stats in (("secure.", secure), ("plain.", plain)):
        logged = sum(v for k, v in counts.items() if k.startswith(prefix))
        assert stats.accepted <= logged <= stats.accepted + 2 * 32, prefix


async def test_limits_count_tls_connections_too(
    start_daemon: Any, tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, _key = cert
    cfg = tls_config(tmp_path, cert, max_connections=3)
    rd = await start_daemon(cfg)
    held = [
        await StratumClient.connect(rd.address),
        await tls_client(rd.daemon.tls_address, crt),
        await tls_client(rd.daemon.tls_address, crt),
    ]
    for c in held:
        await c.handshake()
    extra = await tls_client(rd.daemon.tls_address, crt)  # the fourth: refused
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        reply = await extra.request("mining.subscribe", ["x"])
        pytest.fail(f"a fourth connection was served: {reply}")
    assert rd.daemon.metrics.connections_refused >= 1
    for c in [*held, extra]:
        await c.close()


async def test_tls_port_answers_no_plain_text_and_an_untrusted_cert_fails(
    start_daemon: Any, tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, _key = cert
    cfg = tls_config(tmp_path, cert)
    rd = await start_daemon(cfg)
    plain = await StratumClient.connect(rd.daemon.tls_address)
    await plain.send_raw(b'{"id":1,"method":"mining.subscribe","params":[]}\n')
    with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
        line = await asyncio.wait_for(plain.reader.readline(), PATIENCE_S)
        assert b"result" not in line  # a TLS alert or nothing, never a Stratum reply
    await plain.close()
    other, _ = make_cert(tmp_path, "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(*rd.daemon.tls_address, ssl=client_context(other))
    ok = await tls_client(rd.daemon.tls_address, crt)  # the listener still serves
    await ok.handshake()
    await ok.close()


def _tls(**stratum: Any) -> dict[str, Any]:
    return {"pool": {"network": "regtest", "payout_address": regtest_address()}, "stratum": stratum}


def test_an_unusable_file_is_named_before_anything_is_opened(tmp_path: Path) -> None:
    """Validating the config never reads a file; building the daemon reads the certificate
    and key and names the unusable one with its config key (as `poold config check` and
    `poold run` report it, exit 2)."""
    crt, key = make_cert(tmp_path)
    _other_crt, other_key = make_cert(tmp_path, "other")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    cases = [
        (
            {"tls_cert": str(tmp_path / "missing.crt"), "tls_key": str(key)},
            f"stratum.tls_cert: {tmp_path / 'missing.crt'} does not exist",
        ),
        (
            {"tls_cert": str(crt), "tls_key": str(tmp_path / "nokey.pem")},
            f"stratum.tls_key: {tmp_path / 'nokey.pem'} does not exist",
        ),
        ({"tls_cert": str(tmp_path), "tls_key": str(key)}, f"{tmp_path} is not a file"),
        (
            {"tls_cert": str(tmp_path / "junk.pem"), "tls_key": str(key)},
            f"stratum.tls_cert: {tmp_path / 'junk.pem'} holds no PEM certificate",
        ),
        (
            {"tls_cert": str(crt), "tls_key": str(crt)},
            f"stratum.tls_key: {crt} holds no PEM private key",
        ),
        (
            {"tls_cert": str(crt), "tls_key": str(other_key)},
            f"stratum.tls_key: the key in {other_key} does not match the certificate in {crt}",
        ),
    ]
    for extra, needle in cases:
        cfg = parse_config(_tls(tls_listen="127.0.0.1:3334", **extra), environ={})
        with pytest.raises(TlsConfigError) as err:
            Daemon(cfg)
        assert needle in str(err.value), (extra, str(err.value))
    toml = tmp_path / "bad.toml"
    toml.write_text(
        f'[pool]\nnetwork = "regtest"\npayout_address = "{regtest_address()}"\n'
        f'[stratum]\ntls_listen = "127.0.0.1:0"\ntls_cert = "{crt}"\ntls_key = "{other_key}"\n'
    )
    for command in (["config", "check", str(toml)], ["run", "--config", str(toml)]):
        done = subprocess.run(
            [sys.executable, "-m", "poold", *command],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )
        assert done.returncode == 2, (command, done.stderr)
        assert f"stratum.tls_key: the key in {other_key} does not match" in done.stderr


def test_config_checks_the_tls_keys_shape(tmp_path: Path) -> None:
    crt, key = make_cert(tmp_path)
    cases = [
        ({"tls_cert": str(crt)}, "tls_listen is set: tls_key (a PEM file) must be set too"),
        ({}, "tls_cert and tls_key (a PEM file) must be set too"),
    ]
    for extra, needle in cases:
        with pytest.raises(ConfigError) as err:
            parse_config(_tls(tls_listen="127.0.0.1:3334", **extra), environ={})
        assert needle in str(err.value), (extra, str(err.value))
    with pytest.raises(ConfigError, match="need tls_listen"):
        parse_config(_tls(tls_cert=str(crt), tls_key=str(key)), environ={})
    with pytest.raises(ConfigError, match="same port 3333"):
        parse_config(
            _tls(tls_listen="0.0.0.0:3333", tls_cert=str(crt), tls_key=str(key)), environ={}
        )
    with pytest.raises(ConfigError, match="tls_listen must be HOST:PORT"):
        parse_config(_tls(tls_listen="3334", tls_cert=str(crt), tls_key=str(key)), environ={})
    ok = parse_config(
        _tls(tls_listen="127.0.0.1:3334", tls_cert=str(crt), tls_key=str(key)), environ={}
    )
    assert (ok.stratum.tls_host, ok.stratum.tls_port) == ("127.0.0.1", 3334)


async def test_poold_simulate_mines_over_tls(
    start_daemon: Any, tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    crt, _key = cert
    cfg = tls_config(tmp_path, cert)
    rd = await start_daemon(cfg)
    host, port = rd.daemon.tls_address
    cmd = [sys.executable, "-m", "poold", "simulate", "--url", f"stratum+ssl://{host}:{port}"]
    cmd += ["--miners", "1", "--duration", "1", "--cafile", str(crt)]
    done = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=PATIENCE_S
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["accepted"] > 0
    untrusted = await asyncio.to_thread(
        subprocess.run, cmd[:-2], capture_output=True, text=True, timeout=PATIENCE_S
    )
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
