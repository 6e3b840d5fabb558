"""The one place a node client is built from the config: `rpc_node` for the JSON-RPC
client (the daemon's node, `poold settle`, the payout wallet), `make_node` for whichever
`[node] kind` says. Imports the config and the node clients only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from poold.config import NodeConfig
from poold.node.base import Node
from poold.node.rpc import RpcNode
from poold.node.simnet import SimNet


def rpc_node(cfg: NodeConfig) -> RpcNode:
    return RpcNode(cfg.url, cfg.user, cfg.password, timeout_s=cfg.timeout_s)


def make_node(cfg: NodeConfig, clock: Callable[[], float] = time.time) -> Node:
    if cfg.kind == "simnet":
        return SimNet(difficulty=cfg.simnet_difficulty, tx_count=cfg.simnet_tx_count, clock=clock)
    return rpc_node(cfg)
