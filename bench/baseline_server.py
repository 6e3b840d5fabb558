"""The side-by-side reference: a minimal uvloop Stratum server doing only share validation.

Same parser library (orjson), same job and the same `validate_share` as poold, but no sessions,
vardiff, share log, metrics or limits. poold's number is compared with this one in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from fractions import Fraction

import orjson
import uvloop

from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from poold.node.simnet import SimNet
from poold.shares.difficulty import target_from_difficulty
from poold.shares.validate import Accepted, validate_share
from poold.stratum.protocol import encode_error, encode_notification, encode_true

TARGET = target_from_difficulty(Fraction(1, 2**32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cpu", type=int, default=None)
    a = ap.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    net = SimNet(difficulty=Fraction(1, 256))
    job = JobManager(CoinbaseSpec(b"\x51", b"/base/", 4, 4)).new_job(
        parse_template(net.template()), time.time()
    )
    notify = encode_notification("mining.set_difficulty", [1 / 2**32]) + encode_notification(
        "mining.notify", job.notify_params()
    )
    counter = iter(range(1, 1 << 24))

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""
            self.en1 = next(counter).to_bytes(4, "big")

        def data_received(self, data: bytes) -> None:
            *lines, self.buf = (self.buf + data).split(b"\n")
            out = []
            now = int(time.time())
            for line in lines:
                msg = orjson.loads(line)
                m, rid, p = msg["method"], msg["id"], msg["params"]
                if m == "mining.submit":
                    v = validate_share(
                        job,
                        extranonce1=self.en1,
                        extranonce2=bytes.fromhex(p[2]),
                        ntime=int(p[3], 16),
                        nonce=int(p[4], 16),
                        version_bits=None,
                        version_mask=0,
                        share_target=TARGET,
                        now=now,
                    )
                    out.append(
                        encode_true(rid)
                        if isinstance(v, Accepted)
                        else encode_error(rid, v.code, v.reason)
                    )
                elif m == "mining.subscribe":
                    out.append(
                        orjson.dumps({"id": rid, "result": [[], self.en1.hex(), 4], "error": None})
                        + b"\n"
                    )
                elif m == "mining.authorize":
                    out.append(encode_true(rid) + notify)
            self.t.write(b"".join(out))  # type: ignore[attr-defined]

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Conn, "127.0.0.1", a.port, backlog=4096)
        print("listening", srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
