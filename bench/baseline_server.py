"""The side-by-side reference: a minimal uvloop Stratum server doing only share validation.

Same job and the same `validate_share` as poold, but no sessions, authorization, vardiff, share
log, metrics or limits. Two request parsers:

- `--parser checked` (the reference poold is held to): poold's own `protocol.parse_line`, which
  checks every field's type, length and hex before the share is judged;
- `--parser raw`: orjson plus `bytes.fromhex`/`int(x, 16)` with no checks at all (a malformed
  request raises inside the protocol callback); reported alongside for transparency.
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

from poold.bitcoind.simnet import SimNet
from poold.chain.targets import target_from_difficulty
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from poold.shares.validate import Accepted, validate_share
from poold.stratum.protocol import (
    Authorize,
    StratumConnection,
    Submit,
    Subscribe,
    encode_error,
    encode_notification,
    encode_true,
)

TARGET = target_from_difficulty(Fraction(1, 2**32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--parser", choices=("checked", "raw"), default="checked")
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

    def reply(rid: object, v: object) -> bytes:
        if isinstance(v, Accepted):
            return encode_true(rid)  # type: ignore[arg-type]
        return encode_error(rid, v.code, v.reason)  # type: ignore[arg-type, attr-defined]

    class Raw(asyncio.Protocol):
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
                    out.append(reply(rid, v))
                elif m == "mining.subscribe":
                    out.append(
                        orjson.dumps({"id": rid, "result": [[], self.en1.hex(), 4], "error": None})
                        + b"\n"
                    )
                elif m == "mining.authorize":
                    out.append(encode_true(rid) + notify)
            self.t.write(b"".join(out))  # type: ignore[attr-defined]

    class Checked(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.conn = StratumConnection()
            self.en1 = next(counter).to_bytes(4, "big")

        def data_received(self, data: bytes) -> None:
            out = []
            now = int(time.time())
            for ev in self.conn.receive_data(data):
                if type(ev) is Submit:
                    v = validate_share(
                        job,
                        self.en1,
                        ev.extranonce2,
                        ev.ntime,
                        ev.nonce,
                        ev.version_bits,
                        0,
                        TARGET,
                        now,
                    )
                    out.append(reply(ev.req_id, v))
                elif type(ev) is Subscribe:
                    out.append(
                        orjson.dumps(
                            {"id": ev.req_id, "result": [[], self.en1.hex(), 4], "error": None}
                        )
                        + b"\n"
                    )
                elif type(ev) is Authorize:
                    out.append(encode_true(ev.req_id) + notify)
            self.t.write(b"".join(out))  # type: ignore[attr-defined]

    Conn = Checked if a.parser == "checked" else Raw

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Conn, "127.0.0.1", a.port, backlog=4096)
        print("listening", srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
