"""What every benchmark reports beside its numbers: the machine it ran on (cores, CPU model,
load average at the start) and the median of repeated runs. Imports nothing of poold."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: Runs per measured figure unless a script is told otherwise; the median is reported.
RUNS = 5


def machine() -> dict[str, object]:
    """Cores, CPU model, Python and the 1-minute load average when the script started: a
    figure measured beside other work is slower, and the reader should know."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": sys.version.split()[0],
        "os": platform.system(),
        "load_at_start": round(os.getloadavg()[0], 2),
    }


def median_of(
    fn: Callable[[], T], runs: int = RUNS, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, list[float], T]:
    """Run `fn` `runs` times; the median time in seconds by `clock` (wall time by default,
    `time.process_time` for the CPU time of this process), every run's time, the last
    result."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    times: list[float] = []
    out: T
    for _ in range(runs):
        t = clock()
        out = fn()
        times.append(clock() - t)
    return statistics.median(times), times, out
