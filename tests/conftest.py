from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from poold.config import Config
from poold.daemon import Daemon
from tests.helpers import PATIENCE_S, make_config


class RunningDaemon:
    def __init__(self, daemon: Daemon, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
        self.daemon, self.stop, self.task = daemon, stop, task

    @property
    def address(self) -> tuple[str, int]:
        assert self.daemon.address is not None
        return self.daemon.address

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, PATIENCE_S)


@pytest.fixture(autouse=True)
def _structlog_restored() -> Any:
    """Each test starts from the logging setup the last left: a test (or an in-process
    `poold sim`) that quiets structlog must not hide the events a later test captures."""
    before = structlog.get_config()
    yield
    structlog.configure(**before)


@pytest.fixture
def config_factory(tmp_path: Path) -> Callable[..., Config]:
    def factory(**sections: dict[str, Any]) -> Config:
        return make_config(tmp_path, **sections)

    return factory


@pytest.fixture
async def start_daemon() -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningDaemon] = []

    async def start(cfg: Config, **kwargs: Any) -> RunningDaemon:
        daemon = Daemon(cfg, **kwargs)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        waiter = asyncio.create_task(daemon.listening.wait())
        # Until it listens, or its run ends (a start-up error, raised here): a busy machine
        # makes a start slow, never wrong.
        done, _ = await asyncio.wait(
            {waiter, task}, timeout=PATIENCE_S, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            waiter.cancel()
            task.result()
        assert waiter in done, "daemon did not start listening"
        rd = RunningDaemon(daemon, stop, task)
        running.append(rd)
        return rd

    yield start
    for rd in running:
        if not rd.task.done():
            with contextlib.suppress(Exception):
                await rd.shutdown()


@pytest.fixture
async def pool(start_daemon: Callable[..., Any], config_factory: Callable[..., Config]) -> Any:
    return await start_daemon(config_factory())
