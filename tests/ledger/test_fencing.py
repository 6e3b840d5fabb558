"""Fencing: a leader paused mid-pass (after it read, before it wrote) while another daemon
takes over has its write refused when it resumes, and nothing is settled twice. On both
backends; the pause is a SQLAlchemy hook on the paused leader's engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, func, select

from poold.ledger.db import Deposed, LedgerError, Timeouts, fence_set, make_engine, migrate
from poold.ledger.ingest import ingest
from poold.ledger.leader import Leadership
from poold.ledger.models import Settlement
from poold.ledger.settle import settle_pending, verify
from tests.helpers import PATIENCE_S
from tests.ledger.test_settle import mine


class Pause:
    """Holds the first write statement of an engine until `resume()`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        event.listen(engine, "before_cursor_execute", self._before)

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE") and not self.reached.is_set():
            self.reached.set()
            self.go.wait(PATIENCE_S)

    def resume(self) -> None:
        self.go.set()


@pytest.fixture
def two(ledger_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    # Daemon a's sessions as the daemon sets them up: one idle inside a transaction (its
    # process paused, its socket half-open) is ended by the server, so the locks it took
    # (the slice fold's) hold a new leader back for that long, not for ever.
    a = make_engine(ledger_url, Timeouts(idle_s=3))
    b = make_engine(ledger_url)
    migrate(a)
    yield a, b
    a.dispose()
    b.dispose()


def _leaders(a: sa.Engine, b: sa.Engine) -> tuple[Leadership, Leadership, list[float]]:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    return (
        Leadership(a, holder="daemon a", lease_s=10, clock=clock, monotonic=clock),
        Leadership(b, holder="daemon b", lease_s=10, clock=clock, monotonic=clock),
        now,
    )


def _settlements(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Settlement)).scalar() or 0)


@pytest.mark.parametrize("b_settles_first", [False, True])
def test_a_deposed_leaders_write_is_refused_and_nothing_doubles(
    two: tuple[sa.Engine, sa.Engine], tmp_path: Path, b_settles_first: bool
) -> None:
    engine_a, engine_b = two
    mine(tmp_path / "log", 30, {20: True})
    ingest(engine_a, tmp_path / "log", 0)
    a, b, now = _leaders(engine_a, engine_b)
    assert a.hold() and not b.hold()
    pause = Pause(engine_a)
    outcome: dict[str, object] = {}

    def a_pass() -> None:  # the leader's pass, fenced with the epoch it began in
        try:
            with fence_set(a.fence()):
                outcome["a"] = settle_pending(engine_a, scheme="pplns")
        except LedgerError as exc:
            outcome["a"] = exc

    runner = threading.Thread(target=a_pass)
    runner.start()
    assert pause.reached.wait(PATIENCE_S), "leader a never reached its first write"
    # Paused (a partition, a SIGSTOP): its lease ends, it has stopped leading by itself, and
    # daemon b takes over with the next epoch.
    now[0] += 11
    assert not a.leading()
    assert b.hold() and b.epoch == 2
    if b_settles_first:
        with fence_set(b.fence()):
            assert len(settle_pending(engine_b, scheme="pplns")) == 1
    pause.resume()
    runner.join(PATIENCE_S)
    assert not runner.is_alive()
    if b_settles_first:
        # Refused (by the fence, or by what b wrote first) or found settled already: either
        # way nothing of a's was written.
        assert outcome["a"] == [] or isinstance(outcome["a"], LedgerError), outcome
    else:
        assert isinstance(outcome["a"], Deposed), outcome  # its write refused
        assert _settlements(engine_a) == 0  # wholly: nothing of its transaction kept
        with fence_set(b.fence()):
            assert len(settle_pending(engine_b, scheme="pplns")) == 1
    assert _settlements(engine_a) == 1
    assert verify(engine_a) == []
    # And the old leader cannot come back with its epoch: it is told another leads.
    assert a.hold() is False and a.epoch is None


def test_an_unfenced_write_goes_through_a_fenced_one_needs_its_epoch(
    two: tuple[sa.Engine, sa.Engine], tmp_path: Path
) -> None:
    """`poold settle` (no fence) writes as before; a fence with an epoch the lease row does not
    carry is refused before anything commits."""
    from poold.ledger.db import Fence

    engine_a, _engine_b = two
    mine(tmp_path / "log", 30, {20: True})
    ingest(engine_a, tmp_path / "log", 0)
    with pytest.raises(Deposed), fence_set(Fence(7)):
        settle_pending(engine_a, scheme="pplns")
    assert _settlements(engine_a) == 0
    assert len(settle_pending(engine_a, scheme="pplns")) == 1


class _Wallet:
    """A wallet that has sent nothing; it records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def send_many(self, outputs: Any, comment: str) -> str:
        self.asked.append(f"send {comment}")
        raise AssertionError("nothing may be sent here")

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        self.asked.append(f"find {comment}")
        return None

    async def wallet_tx(self, txid: str) -> Any:
        raise AssertionError("no transaction exists")


async def test_an_older_epochs_payout_intent_waits_until_its_leader_cannot_be_sending(
    two: tuple[sa.Engine, sa.Engine],
) -> None:
    """The intent is committed with its epoch before the wallet is called. A new leader
    reconciles an older epoch's intent only once that leader's lease (and a send it may have
    begun just before it ended) is over: before, the send may still land."""
    from poold.ledger.db import Fence
    from poold.ledger.models import Payout
    from poold.ledger.payouts import Payment, _write_intent, reconcile

    engine_a, engine_b = two
    a, b, now = _leaders(engine_a, engine_b)
    assert a.hold()
    payout_id = _write_intent(engine_a, [Payment("m0", "bcrt1qexample", 1000)], a.fence())
    with engine_a.connect() as conn:
        assert conn.execute(select(Payout.epoch).where(Payout.id == payout_id)).scalar() == 1
    now[0] += 11
    assert b.hold() and b.epoch == 2
    wallet = _Wallet()
    changes = await reconcile(engine_b, wallet, fence=b.fence(), lease_ms=3_600_000)
    assert changes == [] and wallet.asked == []  # not yet: epoch 1 might still be sending
    changes = await reconcile(engine_b, wallet, fence=b.fence(), lease_ms=0)
    assert changes == [(payout_id, "failed")] and wallet.asked == [f"find poold-payout:{payout_id}"]
    # And a deposed leader cannot even write its intent.
    with pytest.raises(Deposed):
        _write_intent(engine_a, [Payment("m1", "bcrt1qexample", 1000)], Fence(1))
