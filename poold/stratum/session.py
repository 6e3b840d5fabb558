"""Per-miner Stratum policy: what a connection may do, and what we answer.

A `Session` consumes typed events from `protocol.py` with the time passed in, and produces
encoded messages in `outbox`. It validates shares (through `shares.validate`), hands accepted
ones to a `ShareSink`, runs vardiff, and decides when a peer must be closed or banned. It owns no
socket and never sleeps. Must not import asyncio.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from poold.chain.difficulty import format_difficulty, quantize, to_difficulty
from poold.chain.targets import target_from_difficulty
from poold.jobs.job import Job
from poold.metrics import Metrics
from poold.shares.accepted import AcceptedShare, ShareSink
from poold.shares.validate import Reject, Rejected, validate_share
from poold.stratum import protocol as p
from poold.stratum.extranonce import ExtranoncePool
from poold.stratum.vardiff import Vardiff, VardiffConfig

# fullmatch, never `^...$`: `$` also matches before a trailing newline ("victim\n").
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}").fullmatch
_WORKER_NAME = re.compile(r"[A-Za-z0-9_\-.]{0,64}").fullmatch


class JobSource(Protocol):
    def current(self) -> Job | None: ...
    def get(self, job_id: str, now: float) -> Job | None: ...


class WorkerQuota:
    """Worker names authorized from one address, across its connections (bounded memory)."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit  # None: this address is not limited (loopback, allowlist)
        self.count = 0

    def take(self) -> bool:
        if self.limit is not None and self.count >= self.limit:
            return False
        self.count += 1
        return True


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    start_difficulty: Fraction
    vardiff: VardiffConfig
    version_mask: int
    extranonce2_size: int
    junk_limit: int = 10
    invalid_window: int = 100
    invalid_ratio: float = 0.9
    invalid_min: int = 50
    max_workers: int = 256  # distinct worker names one connection may authorize


def parse_user(user: str) -> tuple[str, str] | None:
    """`account.worker` or `account` -> (account, worker); None if the name is unusable."""
    account, _, worker = user.partition(".")
    if not _ACCOUNT_NAME(account) or not _WORKER_NAME(worker):
        return None
    return account, worker or "default"


def parse_password_options(password: str) -> dict[str, str]:
    """`d=65536,x=y` (also space- or semicolon-separated) -> {"d": "65536", "x": "y"}."""
    out: dict[str, str] = {}
    for part in re.split(r"[,; ]+", password):
        key, sep, value = part.partition("=")
        if sep and key:
            out[key.strip().lower()] = value.strip()
    return out


class Session:
    """Policy state of one miner connection (slotted: 10,000 of these must stay small)."""

    __slots__ = (
        "_history",
        "_history_len",
        "_job_diffs",
        "_junk",
        "_middle",
        "accepted",
        "agent",
        "ban",
        "close_reason",
        "difficulty_sent",
        "extranonce1",
        "extranonce_subscribed",
        "extranonces",
        "jobs",
        "log_event",
        "metrics",
        "min_difficulty",
        "outbox",
        "peer",
        "policy",
        "quota",
        "rejected",
        "sink",
        "subscribed",
        "vardiff",
        "version_mask",
        "workers",
    )

    def __init__(
        self,
        *,
        policy: SessionPolicy,
        jobs: JobSource,
        sink: ShareSink,
        metrics: Metrics,
        extranonces: ExtranoncePool,
        peer: str,
        now: float,
        on_log: Callable[..., None] | None = None,
        quota: WorkerQuota | None = None,
    ) -> None:
        self.policy = policy
        self.quota = quota
        self.jobs = jobs
        self.sink = sink
        self.metrics = metrics
        self.extranonces = extranonces
        self.extranonce1 = extranonces.allocate()
        self.peer = peer
        self.outbox: list[bytes] = []
        self.close_reason: str | None = None
        self.ban = False
        self.subscribed = False
        self.extranonce_subscribed = False
        self.agent = ""
        self.workers: dict[str, tuple[str, str]] = {}  # full user -> (account, worker)
        self.version_mask = 0
        self.min_difficulty = policy.vardiff.min_difficulty
        self.vardiff = Vardiff(policy.vardiff, policy.start_difficulty, now)
        self.difficulty_sent: Fraction | None = None
        # job id -> ((difficulty, share target), ...) this connection was given for that job,
        # oldest first, at most two: shares in flight at the previous difficulty stay valid.
        self._job_diffs: dict[str, tuple[tuple[Fraction, int], ...]] = {}
        self._junk = 0
        # (job id, extranonce1, extranonce2, header middle) of the last share: the next share
        # of the same job and extranonces skips the merkle fold (job ids are never reused).
        self._middle: tuple[str, bytes, bytes, bytes] = ("", b"", b"", b"")
        # Validity of the last `invalid_window` judged shares as bits (1 = invalid), newest lowest.
        self._history = 0
        self._history_len = 0
        self.log_event = on_log
        self.accepted = 0
        self.rejected = 0

    # -- events --------------------------------------------------------------------------------

    def handle(self, event: p.Event, now: float) -> None:
        match event:
            case p.Submit():
                self.submit(event, now)
            case p.Subscribe():
                self._subscribe(event, now)
            case p.Authorize():
                self._authorize(event, now)
            case p.Configure():
                self._configure(event)
            case p.SuggestDifficulty():
                self._suggest(event, now)
            case p.ExtranonceSubscribe():
                self.extranonce_subscribed = True
                self.outbox.append(p.encode_result(event.req_id, True))
            case p.UnknownMethod():
                self.outbox.append(
                    p.encode_error(event.req_id, Reject.OTHER, f"unknown method {event.method}")
                )
            case p.InvalidRequest():
                self.outbox.append(p.encode_error(event.req_id, Reject.OTHER, event.reason))
                if event.junk:
                    self._junk += 1
                    if self._junk >= self.policy.junk_limit:
                        self._close("too many malformed lines", ban=True)
            case p.PeerResponse():
                pass

    def _subscribe(self, ev: p.Subscribe, now: float) -> None:
        if ev.session_id and not self.subscribed:
            self.extranonce1 = self.extranonces.resume(ev.session_id, self.extranonce1, now)
        self.subscribed = True
        self.agent = ev.agent
        sid = self.extranonce1.hex()
        self.outbox.append(
            p.encode_result(
                ev.req_id,
                [
                    [["mining.set_difficulty", sid], ["mining.notify", sid]],
                    sid,
                    self.policy.extranonce2_size,
                ],
            )
        )

    def _authorize(self, ev: p.Authorize, now: float) -> None:
        parsed = parse_user(ev.user)
        if parsed is None:
            self.outbox.append(
                p.encode_error(
                    ev.req_id,
                    Reject.UNAUTHORIZED,
                    "worker name must be account[.worker] using letters, digits, _ - .",
                )
            )
            return
        first = not self.workers
        if ev.user not in self.workers:
            if len(self.workers) >= self.policy.max_workers:
                why = f"at most {self.policy.max_workers} workers per connection"
                self.outbox.append(p.encode_error(ev.req_id, Reject.UNAUTHORIZED, why))
                return
            if self.quota is not None and not self.quota.take():
                why = f"at most {self.quota.limit} workers per address"
                self.outbox.append(p.encode_error(ev.req_id, Reject.UNAUTHORIZED, why))
                return
            self.workers[ev.user] = parsed
        options = parse_password_options(ev.password)
        if "d" in options:
            try:
                wanted = to_difficulty(options["d"], field="d")
            except (ValueError, TypeError) as exc:
                self.outbox.append(p.encode_error(ev.req_id, Reject.OTHER, str(exc)))
                return
            # d= is the start difficulty and this connection's floor for vardiff.
            self.min_difficulty = self._from_miner(wanted)
            self.vardiff.reset(self.min_difficulty, now)
        self.outbox.append(p.encode_result(ev.req_id, True))
        if first and self.subscribed:
            self._send_work(self.jobs.current(), now)

    def _configure(self, ev: p.Configure) -> None:
        result: dict[str, object] = {}
        for ext in ev.extensions:
            if ext == "version-rolling":
                miner_mask = self.policy.version_mask
                raw = ev.params.get("version-rolling.mask")
                if isinstance(raw, str):
                    try:
                        miner_mask = int(raw, 16) & 0xFFFFFFFF
                    except ValueError:
                        self.outbox.append(
                            p.encode_error(
                                ev.req_id, Reject.OTHER, "version-rolling.mask is not hex"
                            )
                        )
                        return
                self.version_mask = self.policy.version_mask & miner_mask
                result["version-rolling"] = True
                result["version-rolling.mask"] = f"{self.version_mask:08x}"
            elif ext == "minimum-difficulty":
                raw_min = ev.params.get("minimum-difficulty.value")
                try:
                    wanted = to_difficulty(raw_min, field="minimum-difficulty.value")
                except (ValueError, TypeError):
                    result["minimum-difficulty"] = False
                    continue
                self.min_difficulty = self._from_miner(wanted)
                result["minimum-difficulty"] = True
            elif ext == "subscribe-extranonce":
                self.extranonce_subscribed = True
                result["subscribe-extranonce"] = True
            else:
                result[ext] = False
        self.outbox.append(p.encode_result(ev.req_id, result))

    def _suggest(self, ev: p.SuggestDifficulty, now: float) -> None:
        wanted = max(self.min_difficulty, self._from_miner(ev.difficulty))
        self.vardiff.reset(wanted, now)
        self.outbox.append(p.encode_result(ev.req_id, True))
        if self.workers and self.difficulty_sent is not None and wanted != self.difficulty_sent:
            self._send_work(self.jobs.current(), now)

    # -- work ------------------------------------------------------------------------------------

    def _from_miner(self, difficulty: Fraction) -> Fraction:
        """A miner's number (often a float) made exact, readable and within config bounds."""
        return self.policy.vardiff.clamp(quantize(difficulty))

    def _effective_difficulty(self) -> Fraction:
        return max(self.min_difficulty, self.vardiff.difficulty)

    def _send_work(self, job: Job | None, now: float, notify: bytes | None = None) -> None:
        """set_difficulty (when it changed) strictly before the notify it applies to."""
        if job is None:
            return
        diff = self._effective_difficulty()
        if diff != self.difficulty_sent:
            self.outbox.append(
                p.encode_notification("mining.set_difficulty", [format_difficulty(diff)])
            )
            self.difficulty_sent = diff
        previous = self._job_diffs.get(job.job_id, ())
        if all(d != diff for d, _t in previous):
            # Shares already in flight for this job at the earlier difficulty stay valid.
            entry = (diff, target_from_difficulty(diff))
            self._job_diffs[job.job_id] = (*previous[-1:], entry)
        if len(self._job_diffs) > 64:
            for stale in list(self._job_diffs)[: len(self._job_diffs) - 64]:
                del self._job_diffs[stale]
        self.outbox.append(notify or p.encode_notification("mining.notify", job.notify_params()))

    def on_new_job(self, job: Job, notify: bytes, now: float) -> None:
        """A new job was published (notify is pre-encoded once for all sessions)."""
        if self.subscribed and self.workers:
            self._send_work(job, now, notify)

    def on_tick(self, now: float) -> None:
        if self.workers and self.vardiff.on_tick(now) is not None:
            self._send_work(self.jobs.current(), now)

    def submit(self, ev: p.Submit, now: float) -> None:
        """`mining.submit`: the per-share hot path (the server calls it without `handle`)."""
        names = self.workers.get(ev.worker)
        if names is None or not self.subscribed:
            if not self.subscribed:
                self._reject(ev.req_id, Rejected(Reject.NOT_SUBSCRIBED, "not subscribed"))
            else:
                self._reject(ev.req_id, Rejected(Reject.UNAUTHORIZED, "unauthorized worker"))
            return
        job_id = ev.job_id
        job = self.jobs.get(job_id, now)
        if job is None:
            self._reject(ev.req_id, Rejected(Reject.STALE, "job not found"), names[0])
            return
        diffs = self._job_diffs.get(job_id)
        if diffs is None:
            # A job this connection never saw (sent before a reconnect): judged at today's diff.
            d = self._effective_difficulty()
            diffs = ((d, target_from_difficulty(d)),)
        if len(diffs) == 1:
            credited, easiest = diffs[0]
        else:
            easiest = max(diffs[0][1], diffs[1][1])
        en1, en2 = self.extranonce1, ev.extranonce2
        kept = self._middle
        if kept[0] == job_id and kept[2] == en2 and kept[1] == en1:
            middle = kept[3]
        else:
            middle = job.header_middle(en1, en2)
            self._middle = (job_id, en1, en2, middle)
        verdict = validate_share(  # positional: this is the per-share hot path
            job,
            en1,
            en2,
            ev.ntime,
            ev.nonce,
            ev.version_bits,
            self.version_mask,
            easiest,
            int(now),
            middle,
        )
        if isinstance(verdict, Rejected):
            self._reject(ev.req_id, verdict, names[0])
            return
        if len(diffs) > 1:
            # Credit the highest difficulty (smallest target) this share meets; it meets one.
            credited, best = diffs[0][0], -1
            for d, t in diffs:
                if verdict.hash_int <= t and (best < 0 or t < best):
                    credited, best = d, t
        outbox = self.outbox
        outbox.append(p.encode_true(ev.req_id))
        self.sink.share_accepted(
            AcceptedShare(
                names[0],
                names[1],
                job,
                credited,
                self.extranonce1,
                ev.extranonce2,
                ev.ntime,
                ev.nonce,
                verdict,
                now,
                self.peer,
                self,
                len(outbox) - 1,
                ev.req_id,
            )
        )
        self.accepted += 1
        if self._history:  # all-valid history stays 0: nothing to shift (the common case)
            self._remember(invalid=False)
        elif self._history_len < self.policy.invalid_window:
            self._history_len += 1
        self.metrics.shares_accepted += 1
        if self.vardiff.on_share(now) is not None:
            self._send_work(self.jobs.current(), now)

    def _reject(self, req_id: p.RequestId, verdict: Rejected, account: str | None = None) -> None:
        self.rejected += 1
        self.metrics.shares_rejected[verdict.label] += 1
        if account is not None:
            self.metrics.reject_for(account, verdict.label)
        self.outbox.append(p.encode_error(req_id, verdict.code, verdict.reason))
        if self.log_event is not None:
            self.log_event("share_rejected", reason=verdict.label, detail=verdict.reason)
        if verdict.code in (Reject.STALE, Reject.DUPLICATE):
            return  # stale work and retransmits are normal miner life, not abuse
        self._remember(invalid=True)
        n = self._history_len
        if (
            n >= self.policy.invalid_min
            and self._history.bit_count() / n >= self.policy.invalid_ratio
        ):
            self._close("invalid share ratio too high", ban=True)

    def revoke(self, share: AcceptedShare, reason: str) -> None:
        """The share log could not take `share`: its `true` (still unsent) becomes an error.

        Only the share writer calls this, before the replies of its batch are sent."""
        self.outbox[share.reply_index] = p.encode_error(share.req_id, Reject.OTHER, reason)
        self.accepted -= 1
        self.rejected += 1
        self.metrics.shares_accepted -= 1
        self.metrics.shares_rejected["not_logged"] += 1

    def _remember(self, *, invalid: bool) -> None:
        window = self.policy.invalid_window
        self._history = ((self._history << 1) | invalid) & ((1 << window) - 1)
        if self._history_len < window:
            self._history_len += 1

    def _close(self, reason: str, *, ban: bool) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self.ban = ban

    def release(self, now: float) -> None:
        """The connection is gone: free the extranonce1 (resumable for a while) and its
        workers' places in the address quota."""
        self.extranonces.release(self.extranonce1, now)
        if self.quota is not None:
            self.quota.count -= len(self.workers)
            self.workers.clear()

    def set_extranonce(self, extranonce1: bytes) -> bool:
        """Move the session to a new extranonce1 (only for miners that subscribed to it)."""
        if not self.extranonce_subscribed:
            return False
        self.extranonce1 = extranonce1
        self.outbox.append(
            p.encode_notification(
                "mining.set_extranonce", [extranonce1.hex(), self.policy.extranonce2_size]
            )
        )
        return True
