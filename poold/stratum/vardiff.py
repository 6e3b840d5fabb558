"""Per-connection variable difficulty: a pure controller, the clock passed in as `now` (seconds).

Aims for one share every `target_share_time_s`; retargets after `retarget_time_s` (or sooner when
shares arrive much too fast), tolerating `variance` (a fraction) around the target before it
moves. Difficulties are quantized (`shares.difficulty.quantize`: integers >= 1, or powers of
two below 1), so they stay exact, readable and fit the share record. Must not import asyncio
or read clocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from poold.chain.difficulty import quantize

MAX_STEP = 16  # never change difficulty by more than this factor in one retarget


@dataclass(frozen=True, slots=True)
class VardiffConfig:
    target_share_time_s: float
    retarget_time_s: float
    variance: float
    min_difficulty: Fraction
    max_difficulty: Fraction

    def clamp(self, difficulty: Fraction) -> Fraction:
        return max(self.min_difficulty, min(self.max_difficulty, difficulty))


class Vardiff:
    __slots__ = ("_count", "_deadline", "_fast_count", "_window_start", "cfg", "difficulty")

    def __init__(self, cfg: VardiffConfig, difficulty: Fraction, now: float) -> None:
        self.cfg = cfg
        self.difficulty = difficulty
        self._window_start = now
        self._deadline = now + cfg.retarget_time_s
        self._count = 0
        # Retarget early once this many shares arrived in one window (4x the expected count).
        self._fast_count = max(8, 4 * cfg.retarget_time_s / cfg.target_share_time_s)

    def reset(self, difficulty: Fraction, now: float) -> None:
        self.difficulty = difficulty
        self._window_start = now
        self._deadline = now + self.cfg.retarget_time_s
        self._count = 0

    def on_share(self, now: float) -> Fraction | None:
        """Count one accepted share; returns a new difficulty when it should change."""
        self._count += 1
        if now < self._deadline and (self._count < self._fast_count or now <= self._window_start):
            return None
        return self._retarget(max(now - self._window_start, 1e-3) / self._count, now)

    def on_tick(self, now: float) -> Fraction | None:
        """Periodic check: a miner that found nothing for a long time gets an easier target."""
        elapsed = now - self._window_start
        if self._count == 0 and elapsed >= 2 * self.cfg.retarget_time_s:
            return self._retarget(elapsed, now)
        return None

    def _retarget(self, avg_share_time: float, now: float) -> Fraction | None:
        cfg = self.cfg
        self._window_start, self._count = now, 0
        self._deadline = now + cfg.retarget_time_s
        lo = cfg.target_share_time_s * (1 - cfg.variance)
        hi = cfg.target_share_time_s * (1 + cfg.variance)
        if lo <= avg_share_time <= hi:
            return None
        # Already pinned at the bound it would move toward: nothing to compute (cheap and
        # common: a fixed-difficulty pool, or a miner far faster than max_difficulty allows).
        if avg_share_time < lo and self.difficulty >= cfg.max_difficulty:
            return None
        if avg_share_time > hi and self.difficulty <= cfg.min_difficulty:
            return None
        ratio = Fraction(cfg.target_share_time_s / avg_share_time).limit_denominator(1 << 20)
        ratio = max(Fraction(1, MAX_STEP), min(Fraction(MAX_STEP), ratio))
        new = cfg.clamp(quantize(self.difficulty * ratio))
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new
