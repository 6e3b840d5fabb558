"""`poold run` whose ledger process, inside its Nth ingest transaction, kills the daemon with
SIGKILL; the kernel then kills the ledger process too (PR_SET_PDEATHSIG), so slices, blocks and
the new checkpoint are written but never committed. It writes its pid to $CRASH_INGEST_PIDFILE
so the test can see it gone. Usage: python crash_ingest.py N <poold args...>.

The ledger process is spawned: it imports this file as a module (not as __main__), so only
`fault_init` runs there.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from poold.ledger import worker as ledger_worker

real_init = ledger_worker.init


def fault_init(url: str, parent_pid: int, nice: int, *rest: object) -> None:
    real_init(url, parent_pid, nice, *rest)  # type: ignore[arg-type]
    die_at = int(os.environ["CRASH_INGEST_AT"])
    Path(os.environ["CRASH_INGEST_PIDFILE"]).write_text(str(os.getpid()))
    batches = 0

    def kill_the_daemon() -> None:
        nonlocal batches
        batches += 1
        if batches >= die_at:
            os.kill(parent_pid, signal.SIGKILL)
            time.sleep(120)  # the parent-death signal ends this process long before
            os._exit(3)

    ledger_worker._before_commit = kill_the_daemon


if __name__ == "__main__":
    os.environ["CRASH_INGEST_AT"] = sys.argv.pop(1)
    ledger_worker.init = fault_init  # type: ignore[assignment]

    from poold.cli import main

    main()
