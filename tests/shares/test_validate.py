from __future__ import annotations

from fractions import Fraction

import pytest

from poold.bitcoind.simnet import SimNet
from poold.chain.targets import target_from_difficulty
from poold.jobs.job import Job
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import parse_template
from poold.shares.validate import MAX_FUTURE_NTIME_S, Accepted, Reject, Rejected, validate_share
from tests.helpers import pow_int

EN1 = bytes.fromhex("00000001")
NOW = 1_800_000_000


@pytest.fixture
def job() -> Job:
    net = SimNet(difficulty=Fraction(1, 2**24), clock=lambda: NOW)  # 1 hash in 256 is a block
    return JobManager(CoinbaseSpec(b"\x51", b"/t/", 4, 4)).new_job(
        parse_template(net.template()), NOW
    )


def submit(
    job: Job,
    *,
    en2: bytes = bytes(4),
    ntime: int | None = None,
    nonce: int = 0,
    version_bits: int | None = None,
    mask: int = 0,
    diff: Fraction = Fraction(1, 2**32),
):
    return validate_share(
        job,
        extranonce1=EN1,
        extranonce2=en2,
        ntime=job.ntime if ntime is None else ntime,
        nonce=nonce,
        version_bits=version_bits,
        version_mask=mask,
        share_target=target_from_difficulty(diff),
        now=NOW,
    )


def find_nonce(job: Job, target: int, *, block: bool | None = None) -> int:
    for nonce in range(1 << 20):
        h = pow_int(job.header(EN1, bytes(4), job.ntime, nonce, job.version))
        if h <= target and (block is None or (h <= job.network_target) == block):
            return nonce
    raise AssertionError("no nonce found")


def test_stale_when_job_unknown() -> None:
    v = validate_share(
        None,
        extranonce1=EN1,
        extranonce2=bytes(4),
        ntime=NOW,
        nonce=0,
        version_bits=None,
        version_mask=0,
        share_target=1,
        now=NOW,
    )
    assert isinstance(v, Rejected) and v.code is Reject.STALE


def test_accept_then_duplicate(job: Job) -> None:
    nonce = find_nonce(job, target_from_difficulty(Fraction(1, 2**32)))
    first = submit(job, nonce=nonce)
    assert isinstance(first, Accepted)
    second = submit(job, nonce=nonce)
    assert isinstance(second, Rejected) and second.code is Reject.DUPLICATE
    # The same nonce with another extranonce2 is different work.
    assert isinstance(submit(job, nonce=nonce, en2=b"\x00\x00\x00\x01"), Accepted | Rejected)


def test_low_difficulty_is_judged_before_duplicate(job: Job) -> None:
    hard = Fraction(1, 2)
    nonce = find_nonce(job, target_from_difficulty(Fraction(1, 2**32)))
    while pow_int(
        job.header(EN1, bytes(4), job.ntime, nonce, job.version)
    ) <= target_from_difficulty(hard):
        nonce += 1
    v = submit(job, nonce=nonce, diff=hard)
    assert isinstance(v, Rejected) and v.code is Reject.LOW_DIFFICULTY
    assert not job.seen  # a rejected share does not poison the duplicate set


def test_block_detection_against_network_target(job: Job) -> None:
    nonce = find_nonce(job, job.network_target, block=True)
    v = submit(job, nonce=nonce)
    assert isinstance(v, Accepted) and v.is_block
    nonce2 = find_nonce(job, target_from_difficulty(Fraction(1, 2**32)), block=False)
    v2 = submit(job, nonce=nonce2)
    assert isinstance(v2, Accepted) and not v2.is_block


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"en2": bytes(3)}, "extranonce2 must be 4 bytes"),
        ({"ntime": 1}, "ntime too old"),
        ({"ntime": NOW + MAX_FUTURE_NTIME_S + 1}, "ntime too new"),
        ({"version_bits": 0x2000, "mask": 0}, "outside the negotiated mask"),
        ({"version_bits": 0x1, "mask": 0x1FFFE000}, "outside the negotiated mask"),
    ],
)
def test_other_rejections(job: Job, kwargs: dict, reason: str) -> None:
    v = submit(job, **kwargs)
    assert isinstance(v, Rejected) and v.code is Reject.OTHER and reason in v.reason


def test_version_rolling_inside_mask_changes_the_header(job: Job) -> None:
    mask = 0x1FFFE000
    v = submit(job, nonce=1, version_bits=0x2000, mask=mask)
    assert isinstance(v, Accepted) or v.code is Reject.LOW_DIFFICULTY
    if isinstance(v, Accepted):
        assert v.version == (job.version & ~mask) | 0x2000
        assert int.from_bytes(v.header[:4], "little") == v.version
