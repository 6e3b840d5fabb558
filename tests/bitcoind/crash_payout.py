"""`poold payout` that dies by SIGKILL just before or just after the wallet's send.

Usage: python crash_payout.py before|after <poold arguments...>. Used by test_payouts.py to
put a kill -9 exactly between the intent row, the wallet call and the ledger write."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping

from poold.bitcoind import rpc

real_send = rpc.RpcBitcoind.send_many
when = sys.argv.pop(1)


async def send_and_die(self: rpc.RpcBitcoind, outputs: Mapping[str, int], comment: str) -> str:
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    txid = await real_send(self, outputs, comment)
    os.kill(os.getpid(), signal.SIGKILL)
    return txid


rpc.RpcBitcoind.send_many = send_and_die  # type: ignore[method-assign]

from poold.cli import main  # noqa: E402

main()
