"""Process counters: what they keep and how much."""

from __future__ import annotations


def test_per_account_reject_counts_are_bounded() -> None:
    from poold.metrics import Metrics

    m = Metrics()
    m.MAX_ACCOUNTS = 2
    for name in ("a", "b", "c", "d"):
        m.reject_for(name, "duplicate")
    m.reject_for("a", "stale")
    assert m.rejected_by_account == {
        "a": {"duplicate": 1, "stale": 1},
        "b": {"duplicate": 1},
        "": {"duplicate": 2},
    }
