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
from poold.chain.address import Network
from poold.config import BitcoindConfig


def rpc_bitcoind(cfg: BitcoindConfig) -> RpcBitcoind:
    return RpcBitcoind(cfg.url, cfg.user, cfg.password, timeout_s=cfg.timeout_s)


def make_bitcoind(
    cfg: BitcoindConfig,
    clock: Callable[[], float] = time.time,
    network: Network = Network.REGTEST,
) -> Bitcoind:
    """The block source `[bitcoind] kind` names; a simnet's wallet pays `network`'s
    addresses (the pool's)."""
    if cfg.kind == "simnet":
        return SimNet(
            difficulty=cfg.simnet_difficulty,
            tx_count=cfg.simnet_tx_count,
            clock=clock,
            network=network,
        )
    return rpc_bitcoind(cfg)
