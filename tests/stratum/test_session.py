"""Session policy without sockets: the clock is an argument, the sink a list."""

from __future__ import annotations

from fractions import Fraction

import orjson
import pytest

from poold.bitcoind.simnet import SimNet
from poold.chain.targets import target_from_difficulty
from poold.jobs.job import Job
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from poold.metrics import Metrics
from poold.shares.accepted import AcceptedShare
from poold.stratum import protocol as p
from poold.stratum.extranonce import ExtranoncePool
from poold.stratum.session import (
    Session,
    SessionPolicy,
    parse_password_options,
    parse_user,
)
from poold.stratum.vardiff import VardiffConfig
from tests.helpers import pow_int

NOW = 1_800_000_000.0


class Sink:
    def __init__(self) -> None:
        self.shares: list[AcceptedShare] = []

    def share_accepted(self, share: AcceptedShare) -> None:
        self.shares.append(share)


@pytest.fixture
def jobs() -> JobManager:
    net = SimNet(difficulty=Fraction(1, 4), clock=lambda: NOW)
    mgr = JobManager(CoinbaseSpec(b"\x51", b"/t/", 4, 4))
    mgr.new_job(parse_template(net.template()), NOW)
    return mgr


def make_session(jobs: JobManager, sink: Sink, **policy: object) -> Session:
    pol = SessionPolicy(
        start_difficulty=Fraction(1, 2**16),
        vardiff=VardiffConfig(10, 60, 0.3, Fraction(1, 2**32), Fraction(2**20)),
        version_mask=0x1FFFE000,
        extranonce2_size=4,
        **policy,  # type: ignore[arg-type]
    )
    return Session(
        policy=pol,
        jobs=jobs,
        sink=sink,
        metrics=Metrics(),
        extranonces=ExtranoncePool(7),
        peer="t",
        now=NOW,
    )


def out(s: Session) -> list[dict]:
    msgs = [orjson.loads(m) for m in s.outbox]
    s.outbox.clear()
    return msgs


def nonce_for(job: Job, en1: bytes, diff: Fraction, *, above: Fraction | None = None) -> int:
    t, hard = target_from_difficulty(diff), target_from_difficulty(above) if above else -1
    for n in range(1 << 22):
        h = pow_int(job.header(en1, bytes(4), job.ntime, n, job.version))
        if h <= t and h > hard:
            return n
    raise AssertionError


def test_work_only_after_authorize_and_difficulty_first(jobs: JobManager) -> None:
    s = make_session(jobs, Sink())
    assert s.extranonce1[0] == 7  # node id prefix
    s.handle(p.Subscribe(1, "x", None), NOW)
    assert [m.get("id") for m in out(s)] == [1]
    s.handle(p.Authorize(2, "acct.w", ""), NOW)
    msgs = out(s)
    assert [m.get("method") for m in msgs] == [None, "mining.set_difficulty", "mining.notify"]
    # Another worker on the same connection does not resend work.
    s.handle(p.Authorize(3, "acct.w2", ""), NOW)
    assert len(out(s)) == 1


def test_share_in_flight_at_old_difficulty_stays_valid_after_retarget(jobs: JobManager) -> None:
    sink = Sink()
    s = make_session(jobs, sink)
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", ""), NOW)
    out(s)
    job = jobs.current()
    assert job is not None
    old = Fraction(1, 2**16)
    # Shares far too fast: vardiff raises the difficulty and re-sends the job.
    t = NOW
    while s.outbox == []:
        t += 0.001
        s.vardiff.on_share(t)  # counts as if accepted shares were streaming in
        if s.vardiff.difficulty != old:
            s._send_work(job, t)
    new = s.vardiff.difficulty
    assert new == old * 16
    msgs = out(s)
    assert msgs[0]["method"] == "mining.set_difficulty" and Fraction(msgs[0]["params"][0]) == new
    assert msgs[1]["method"] == "mining.notify"
    # A share meeting only the old target is still accepted, credited at the old difficulty.
    n_old = nonce_for(job, s.extranonce1, old, above=new)
    s.handle(p.Submit(9, "acct.w", job.job_id, bytes(4), job.ntime, n_old, None), t)
    assert out(s)[0]["result"] is True
    assert sink.shares[-1].difficulty == old
    n_new = nonce_for(job, s.extranonce1, new)
    s.handle(p.Submit(10, "acct.w", job.job_id, bytes(4), job.ntime, n_new, None), t)
    assert sink.shares[-1].difficulty == new


def test_invalid_ratio_bans_but_stale_does_not(jobs: JobManager) -> None:
    s = make_session(jobs, Sink(), invalid_min=10, invalid_ratio=0.9)
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", ""), NOW)
    for i in range(50):
        s.handle(p.Submit(i, "acct.w", "nope", bytes(4), 0, i, None), NOW)
    assert s.close_reason is None  # stale work is not abuse
    job = jobs.current()
    assert job is not None
    for i in range(10):
        s.handle(p.Submit(i, "acct.w", job.job_id, bytes(3), job.ntime, i, None), NOW)
    assert s.close_reason == "invalid share ratio too high" and s.ban


def test_user_and_password_parsing() -> None:
    assert parse_user("bc1qabc.rig-1") == ("bc1qabc", "rig-1")
    assert parse_user("acct") == ("acct", "default")
    assert parse_user("a b.c") is None and parse_user(".w") is None
    assert parse_password_options("x,d=1024; foo=bar") == {"d": "1024", "foo": "bar"}


def test_bad_d_option_is_an_error(jobs: JobManager) -> None:
    s = make_session(jobs, Sink())
    s.handle(p.Subscribe(1, "x", None), NOW)
    s.handle(p.Authorize(2, "acct.w", "d=-5"), NOW)
    msgs = out(s)
    assert msgs[-1]["error"][0] == 20 and "> 0" in msgs[-1]["error"][1]


def test_set_extranonce_only_when_subscribed(jobs: JobManager) -> None:
    s = make_session(jobs, Sink())
    assert not s.set_extranonce(b"\x07\x00\x00\x99")
    s.handle(p.ExtranonceSubscribe(1), NOW)
    out(s)
    assert s.set_extranonce(b"\x07\x00\x00\x99")
    msg = out(s)[0]
    assert msg["method"] == "mining.set_extranonce" and msg["params"] == ["07000099", 4]


def test_kept_header_middle_follows_job_and_extranonces(jobs: JobManager) -> None:
    """A session keeps the last share's prev-hash + merkle root; every share's header must
    still be the one its own job and extranonces give (a stale root would credit work done
    on another coinbase)."""
    sink = Sink()
    s = make_session(jobs, sink)
    s.handle(p.ExtranonceSubscribe(0), NOW)
    s.handle(p.Subscribe(1, "t", None), NOW)
    s.handle(p.Authorize(2, "acct.w", ""), NOW)
    s.handle(p.SuggestDifficulty(3, Fraction(1, 2**32)), NOW)
    first = jobs.current()
    assert first is not None
    # Same template, another job: another key in the coinbase, so another merkle root.
    second = jobs.new_job(first.template, NOW + 1)
    steps = [
        (first, bytes(4)),
        (first, bytes(4)),  # kept middle
        (first, b"\x00\x00\x00\x01"),  # another extranonce2
        (second, b"\x00\x00\x00\x01"),  # another job, same extranonce2
        ("new en1", b"\x00\x00\x00\x01"),  # the session moved to another extranonce1
        (second, b"\x00\x00\x00\x01"),
        (first, b"\x00\x00\x00\x01"),
    ]
    rid = 10
    for job, en2 in steps:
        if job == "new en1":
            assert s.set_extranonce(b"\xaa\xbb\xcc\xdd")
            continue
        assert isinstance(job, Job)
        rid += 1
        s.submit(p.Submit(rid, "acct.w", job.job_id, en2, job.ntime, rid, None), NOW + 2)
        share = sink.shares[-1]
        assert share.req_id == rid, out(s)
        assert share.verdict.header == job.header(s.extranonce1, en2, job.ntime, rid, job.version)
    assert len(sink.shares) == 6
