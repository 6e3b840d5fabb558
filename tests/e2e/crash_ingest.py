"""`poold run` that dies by SIGKILL inside its Nth ingest transaction: slices, blocks and the
new checkpoint are written but not committed. Usage: python crash_ingest.py N <poold args...>."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from poold import daemon

real_ingest = daemon.ingest
die_at = int(sys.argv.pop(1))
batches = 0


def kill_inside_transaction() -> None:
    global batches
    batches += 1
    if batches >= die_at:
        os.kill(os.getpid(), signal.SIGKILL)


def ingest_then_die(*args: Any, **kwargs: Any) -> Any:
    return real_ingest(*args, before_commit=kill_inside_transaction, **kwargs)


daemon.ingest = ingest_then_die  # type: ignore[assignment]

from poold.__main__ import main  # noqa: E402

main()
