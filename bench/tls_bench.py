"""Stratum over TLS vs plain TCP: validated shares/s at 1,000 connections, closed loop.

One `poold run` with both listeners (plain and stratum+ssl, a fresh self-signed P-256
certificate from the openssl CLI), pinned to CPU 0; bench/loadgen.py pinned to CPU 1 drives
first the plain port, then (after a restart, so no connection is left over) the TLS port.
Writes bench/results/tls.json with both rates, the ratio TLS / plain, and both sides' CPU.

    .venv/bin/python bench/tls_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stratum_bench import (
    PY,
    ROOT,
    free_port,
    loadgen,
    poold_config,
    raise_nofile,
    stop,
    wait_port,
)


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "pool.crt", directory / "pool.key"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=bench"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start(tmp: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, tls_port = free_port(), free_port()
    cfg = poold_config(tmp, port)
    text = cfg.read_text().replace(
        "[bitcoind]",
        f'tls_listen = "127.0.0.1:{tls_port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n[bitcoind]',
    )
    cfg.write_text(text)
    cmd = ["taskset", "-c", "0", PY, "-m", "poold", "run", "--config", str(cfg)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=raise_nofile
    )
    wait_port(port)
    wait_port(tls_port)
    time.sleep(0.5)
    return proc, port, tls_port


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--connections", type=int, default=1000)
    a = ap.parse_args()
    dur = 5.0 if a.quick else 10.0
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        cert, key = make_cert(tmp)
        for name, tls in (("plain", False), ("tls", True)):
            proc, port, tls_port = start(tmp, cert, key)
            try:
                results[name] = loadgen(
                    tls_port if tls else port,
                    proc.pid,
                    connections=a.connections,
                    mode="closed",
                    duration=dur,
                    tls=tls,
                )
                print(name, results[name], flush=True)
            finally:
                stop(proc)
    plain = results["plain"]["accepted_per_s"]
    results["tls_vs_plain"] = round(results["tls"]["accepted_per_s"] / plain, 3)
    out = ROOT / "bench" / "results" / "tls.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
