"""A NATS server with JetStream of a test's own: its own port and store directory, killed
with SIGKILL and restarted on the same store or an empty one (the system NATS on 4222 is
never touched). The port is chosen by the server at first start (read back from its ports
file) and kept across restarts, as a real server's address is."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for_sync

NATS_SERVER = "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store"
        self.port = -1  # the server picks one at first start
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start on the store as it is (and the port of the first start)."""
        assert self.proc is None, "already running"
        ports = self.root / "ports"
        shutil.rmtree(ports, ignore_errors=True)
        ports.mkdir(parents=True)
        self.store.mkdir(parents=True, exist_ok=True)
        with open(self.root / "server.log", "ab") as errors:
            self.proc = subprocess.Popen(
                [
                    NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                    "-sd", str(self.store), "--ports_file_dir", str(ports),
                ],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )  # fmt: skip
        pid = self.proc.pid
        wait_for_sync(lambda: any(ports.glob(f"*_{pid}.ports")), "nats-server wrote its ports")
        info = json.loads(next(ports.glob(f"*_{pid}.ports")).read_text())
        port = int(info["nats"][0].rsplit(":", 1)[1])
        assert self.port in (-1, port), f"nats-server came back on {port}, not {self.port}"
        self.port = port
        return self

    def kill(self) -> None:
        """kill -9: what it had not written to its store is gone."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def wipe(self) -> None:
        """The store is lost (a new disk): the next start is empty."""
        assert self.proc is None
        shutil.rmtree(self.store, ignore_errors=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()
