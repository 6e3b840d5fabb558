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


def test_several_workers_add_up_and_histograms_observe() -> None:
    """Each worker's state (written to a file) is added by the worker serving /metrics:
    counters and histograms summed, the leader and node height the maximum."""
    from poold.metrics import Metrics

    a, b = Metrics(), Metrics()
    a.shares_accepted, b.shares_accepted = 10, 32
    a.shares_rejected["stale"], b.shares_rejected["stale"] = 1, 2
    a.leader, b.leader = 0, 1
    a.chain_height, b.chain_height = 100, 101
    for v in (0.0004, 0.003, 2.0, 9.0):
        a.reply_latency.observe(v)
    b.reply_latency.observe(0.003)
    merged = a.merge([b.snapshot_state()])
    assert merged.shares_accepted == 42 and merged.shares_rejected["stale"] == 3
    assert (merged.leader, merged.chain_height) == (1, 101)
    assert a.shares_accepted == 10  # the merge is a copy
    text = merged.render_prometheus()
    assert 'poold_reply_latency_seconds_bucket{le="0.0005"} 1.0' in text
    assert 'poold_reply_latency_seconds_bucket{le="0.005"} 3.0' in text
    assert 'poold_reply_latency_seconds_bucket{le="+Inf"} 5.0' in text
    assert "poold_reply_latency_seconds_count 5.0" in text
