"""The one place a bitcoind client is built from the config: `rpc_bitcoind` for the JSON-RPC
client (the daemon's, `poold settle`, the payout wallet), `make_bitcoind` for whichever
`[bitcoind] kind` says. Imports the config and bitcoind clients only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from poold.bitcoind.client import Bitcoind
from poold.bitcoind.rpc import RpcBitcoind
from poold.bitcoind.simnet import SimNet
from poold.config import BitcoindConfig


def rpc_bitcoind(cfg: BitcoindConfig) -> RpcBitcoind:
    return RpcBitcoind(cfg.url, cfg.user, cfg.password, timeout_s=cfg.timeout_s)


def make_bitcoind(cfg: BitcoindConfig, clock: Callable[[], float] = time.time) -> Bitcoind:
    if cfg.kind == "simnet":
        return SimNet(difficulty=cfg.simnet_difficulty, tx_count=cfg.simnet_tx_count, clock=clock)
    return rpc_bitcoind(cfg)
