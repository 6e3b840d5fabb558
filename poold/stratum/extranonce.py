"""Extranonce1 allocation: unique per live connection, `node_id` as the first byte (so several
daemons can share one ledger), and resumable for a short while after a disconnect."""

from __future__ import annotations

from collections import OrderedDict

EXTRANONCE1_SIZE = 4
_SPACE = 1 << 24


class ExtranoncePool:
    def __init__(self, node_id: int, *, resume_window_s: float = 600.0, start: int = 0) -> None:
        if not 0 <= node_id <= 255:
            raise ValueError("node_id must be 0..255")
        self.node_id = node_id
        self.resume_window_s = resume_window_s
        self._next = start % _SPACE
        self._in_use: set[bytes] = set()
        self._released: OrderedDict[bytes, float] = OrderedDict()

    def _make(self, n: int) -> bytes:
        return bytes([self.node_id]) + n.to_bytes(3, "big")

    def allocate(self) -> bytes:
        for _ in range(_SPACE):
            en1 = self._make(self._next)
            self._next = (self._next + 1) % _SPACE
            if en1 not in self._in_use and en1 not in self._released:
                self._in_use.add(en1)
                return en1
        raise RuntimeError("extranonce1 space exhausted")

    def release(self, en1: bytes, now: float) -> None:
        if en1 in self._in_use:
            self._in_use.discard(en1)
            self._released[en1] = now
            self._released.move_to_end(en1)
            self._expire(now)

    def resume(self, requested_hex: str, current: bytes, now: float) -> bytes:
        """Give back `requested_hex` if it is ours, recently released and free; else `current`."""
        self._expire(now)
        try:
            wanted = bytes.fromhex(requested_hex)
        except ValueError:
            return current
        if wanted == current or wanted not in self._released:
            return current
        del self._released[wanted]
        self._in_use.add(wanted)
        self._in_use.discard(current)
        self._released[current] = now
        return wanted

    def _expire(self, now: float) -> None:
        while self._released:
            en1, t = next(iter(self._released.items()))
            if now - t <= self.resume_window_s:
                break
            del self._released[en1]

    def __len__(self) -> int:
        return len(self._in_use)
