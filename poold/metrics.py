"""Process-wide counters, gauges and histograms, exposed through `prometheus_client`.

The hot path only adds to plain attributes (no lock, no label lookup per share); a custom
collector turns them into metric families with HELP and TYPE at scrape time. With
`[stratum] workers > 1` every worker writes its `snapshot_state()` to a file each few seconds
(`write_state`), and the worker serving the API adds the other workers' files to its own
(`merge`): counters and histograms summed, gauges summed or, where a sum means nothing
(leader, chain height), the maximum. Owned by the composition root and passed to whoever
counts; no module-level state. Imports prometheus_client only.
"""

from __future__ import annotations

import bisect
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry


class Histogram:
    """Cumulative-bucket histogram of seconds, observed without locks (one event loop)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        running, buckets = 0, []
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)

    def state(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}

    def add(self, state: dict[str, Any]) -> None:
        if len(state.get("counts", [])) == len(self.counts):
            self.counts = [a + int(b) for a, b in zip(self.counts, state["counts"], strict=True)]
            self.sum += float(state.get("sum", 0.0))


REPLY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BOUNDS = (1.0, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0)


class Metrics:
    def __init__(self) -> None:
        self.shares_accepted = 0
        self.shares_rejected: Counter[str] = Counter()
        self.blocks_found = 0
        self.blocks_accepted = 0
        self.blocks_rejected = 0
        self.connections = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.bans = 0
        self.jobs = 0
        self.ingest_lag_shares = 0  # accepted but not yet in the ledger
        self.sharelog_failed_batches = 0  # batches the share log refused (their shares got 20)
        self.sharelog_ok = 1  # 0 while the share log refuses writes
        # Rejected shares by account and reason since start (rejects never reach the ledger);
        # bounded: accounts past MAX_ACCOUNTS are counted together under "".
        self.rejected_by_account: dict[str, Counter[str]] = {}
        self.settlement_runs: Counter[str] = Counter()  # by kind: block, fpps, tokens
        self.ledger_pass_failures = 0  # ledger passes that failed (the next one retries)
        # Failures that were logged and survived, by where they happened (a cache refresh, a
        # stream check, housekeeping): none of them is ever swallowed unseen.
        self.errors: Counter[str] = Counter()
        self.anchors_sent = 0  # anchor transactions the wallet sent
        self.anchor_failures = 0  # anchor transactions the wallet refused or could not send
        self.api_cache_failures = 0  # API cache refreshes that failed (logged, in /readyz)
        self.leader = 0  # 1 while this daemon holds the ledger's leadership
        # Asked at each scrape when set (the scheduler's `leading()`): a leader whose lease ran
        # out while its loop was stopped or stuck is never shown leading.
        self.leading: Callable[[], bool] | None = None
        # Every node of the ledger (as the leader last read them): id -> (status, seconds
        # its ingested shares lag behind now).
        self.nodes: dict[int, tuple[str, float]] = {}
        self.chain_height = 0  # the height the current job builds
        self.chain_difficulty = 0.0  # its network difficulty
        self.token_periods_waiting = 0  # 1 while the next token period waits (e.g. a price)
        # Seconds from a miner's line arriving to its reply being written (per reply batch).
        self.reply_latency = Histogram(REPLY_BOUNDS)
        # Seconds this node's ingested shares lag behind now, at each ledger pass.
        self.ingest_lag = Histogram(LAG_BOUNDS)
        self.payouts: dict[str, int] = {}  # by status, read from the ledger at scrape time
        # The share stream (when [stream] url is set; stream_ok -1: no stream).
        self.stream_ok = -1  # 1 reachable and checked, 0 unreachable
        self.stream_shipped = (0, 0)  # (segment, offset) the stream stores up to
        self.stream_lag_s = 0.0  # how long the oldest record the stream lacks has waited
        self.stream_lag_bytes = 0
        self.stream_failures = 0  # shipping rounds that failed
        self.stream_outages = 0
        self.stream_rewinds = 0  # the stream held less than SHIPPED: re-filled from the log
        self.stream_refused_batches = 0  # share batches refused past [stream] max_lag_s
        self.stream_replicas = 0  # replicas the stream reports keeping
        self.hashrate_hs: dict[str, int] = {}  # by window, from the cached pool overview

    MAX_ACCOUNTS = 100_000

    def reject_for(self, account: str, reason: str) -> None:
        counts = self.rejected_by_account.get(account)
        if counts is None:
            if len(self.rejected_by_account) >= self.MAX_ACCOUNTS:
                account = ""
            counts = self.rejected_by_account.setdefault(account, Counter())
        counts[reason] += 1

    def snapshot(self) -> dict[str, object]:
        return {
            "shares_accepted": self.shares_accepted,
            "shares_rejected": dict(self.shares_rejected),
            "blocks_found": self.blocks_found,
            "blocks_accepted": self.blocks_accepted,
            "blocks_rejected": self.blocks_rejected,
            "connections": self.connections,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "bans": self.bans,
            "jobs": self.jobs,
        }

    # -- several worker processes ------------------------------------------------------------

    _SUMMED = (
        "shares_accepted",
        "blocks_found",
        "blocks_accepted",
        "blocks_rejected",
        "connections",
        "connections_total",
        "connections_refused",
        "bans",
        "jobs",
        "ingest_lag_shares",
        "sharelog_failed_batches",
        "ledger_pass_failures",
        "anchors_sent",
        "anchor_failures",
        "api_cache_failures",
    )
    _MAXED = ("leader", "chain_height", "chain_difficulty", "token_periods_waiting")

    def snapshot_state(self) -> dict[str, Any]:
        """What another worker's /metrics adds to its own (see the module docstring)."""
        if self.leading is not None:
            self.leader = int(self.leading())
        return {
            **{k: getattr(self, k) for k in (*self._SUMMED, *self._MAXED)},
            "sharelog_ok": self.sharelog_ok,
            "shares_rejected": dict(self.shares_rejected),
            "settlement_runs": dict(self.settlement_runs),
            "errors": dict(self.errors),
            "reply_latency": self.reply_latency.state(),
            "ingest_lag": self.ingest_lag.state(),
        }

    def write_state(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot_state()))
        os.replace(tmp, path)

    def merge(self, states: list[dict[str, Any]]) -> Metrics:
        """A copy of these metrics with other workers' states added."""
        out = Metrics()
        out.__dict__.update({k: v for k, v in self.__dict__.items()})
        if self.leading is not None:  # this worker's leadership as of now, then the others'
            out.leader, out.leading = int(self.leading()), None
        out.shares_rejected = Counter(self.shares_rejected)
        out.settlement_runs = Counter(self.settlement_runs)
        out.errors = Counter(self.errors)
        out.reply_latency = Histogram(REPLY_BOUNDS)
        out.reply_latency.add(self.reply_latency.state())
        out.ingest_lag = Histogram(LAG_BOUNDS)
        out.ingest_lag.add(self.ingest_lag.state())
        for st in states:
            for k in self._SUMMED:
                setattr(out, k, getattr(out, k) + int(st.get(k, 0)))
            for k in self._MAXED:
                setattr(out, k, max(getattr(out, k), st.get(k, 0)))
            out.sharelog_ok = min(out.sharelog_ok, int(st.get("sharelog_ok", 1)))
            out.shares_rejected.update(st.get("shares_rejected", {}))
            out.settlement_runs.update(st.get("settlement_runs", {}))
            out.errors.update(st.get("errors", {}))
            out.reply_latency.add(st.get("reply_latency", {}))
            out.ingest_lag.add(st.get("ingest_lag", {}))
        return out

    # -- exposition --------------------------------------------------------------------------

    def render_prometheus(self) -> str:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self))
        return generate_latest(registry).decode()


class _Families(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        shares = CounterMetricFamily(
            "poold_shares",
            "Shares answered, by result and reject reason",
            labels=["result", "reason"],
        )
        shares.add_metric(["accepted", ""], m.shares_accepted)
        for reason, n in sorted(m.shares_rejected.items()):
            shares.add_metric(["rejected", reason], n)
        yield shares
        blocks = CounterMetricFamily(
            "poold_blocks", "Blocks found and bitcoind's answer", labels=["status"]
        )
        for status, n in (
            ("found", m.blocks_found),
            ("accepted", m.blocks_accepted),
            ("rejected", m.blocks_rejected),
        ):
            blocks.add_metric([status], n)
        yield blocks
        yield GaugeMetricFamily(
            "poold_connections", "Miner connections open now", value=m.connections
        )
        yield CounterMetricFamily(
            "poold_connections_refused",
            "Connections refused (limits, bans)",
            value=m.connections_refused,
        )
        yield CounterMetricFamily("poold_jobs", "Jobs published to miners", value=m.jobs)
        yield GaugeMetricFamily(
            "poold_ingest_lag_shares",
            "Accepted shares not yet in the ledger",
            value=m.ingest_lag_shares,
        )
        yield m.ingest_lag.family(
            "poold_ingest_lag_seconds",
            "How far this node's ingested shares lag behind now, at each ledger pass",
        )
        yield m.reply_latency.family(
            "poold_reply_latency_seconds", "From a miner's line arriving to its reply being written"
        )
        yield CounterMetricFamily(
            "poold_sharelog_failed_batches",
            "Share batches the share log refused (their shares got an error)",
            value=m.sharelog_failed_batches,
        )
        yield GaugeMetricFamily(
            "poold_sharelog_ok", "0 while the share log refuses writes", value=m.sharelog_ok
        )
        errors = CounterMetricFamily(
            "poold_errors",
            "Failures that were logged and survived, by where (the log names each)",
            labels=["where"],
        )
        for where, n in sorted(m.errors.items()):
            errors.add_metric([where], n)
        yield errors
        yield CounterMetricFamily(
            "poold_ledger_pass_failures",
            "Ledger passes that failed (the next retries)",
            value=m.ledger_pass_failures,
        )
        yield CounterMetricFamily(
            "poold_anchor_transactions",
            "Anchor transactions (the commitment chains' heads on chain) the wallet sent",
            value=m.anchors_sent,
        )
        yield CounterMetricFamily(
            "poold_anchor_failures",
            "Anchor transactions the wallet refused or could not send (asked again a minute later)",
            value=m.anchor_failures,
        )
        yield CounterMetricFamily(
            "poold_api_cache_failures",
            "Refreshes of the API's cached pool views that failed (logged; /readyz says which)",
            value=m.api_cache_failures,
        )
        runs = CounterMetricFamily(
            "poold_settlements", "Settlements made by this process", labels=["kind"]
        )
        for kind in ("block", "fpps", "tokens"):
            runs.add_metric([kind], m.settlement_runs[kind])
        yield runs
        yield GaugeMetricFamily(
            "poold_leader",
            "1 while this daemon holds the ledger's leadership",
            value=int(m.leading()) if m.leading is not None else m.leader,
        )
        lag = GaugeMetricFamily(
            "poold_node_ingest_lag_seconds",
            "How far each node's ingested shares lag behind now",
            labels=["node", "status"],
        )
        for node_id, (status, seconds) in sorted(m.nodes.items()):
            lag.add_metric([str(node_id), status], round(seconds, 3))
        yield lag
        yield GaugeMetricFamily(
            "poold_chain_height", "Height of the block the current job builds", value=m.chain_height
        )
        yield GaugeMetricFamily(
            "poold_chain_difficulty",
            "Network difficulty of the current job",
            value=m.chain_difficulty,
        )
        yield GaugeMetricFamily(
            "poold_token_periods_waiting",
            "1 while the next token period waits (for a price, a block, a node)",
            value=m.token_periods_waiting,
        )
        if m.stream_ok >= 0:
            yield GaugeMetricFamily(
                "poold_stream_ok",
                "1 while the share stream is reachable and checked",
                value=m.stream_ok,
            )
            shipped = GaugeMetricFamily(
                "poold_stream_shipped",
                "How far the stream stores this node's share log",
                labels=["part"],
            )
            shipped.add_metric(["segment"], m.stream_shipped[0])
            shipped.add_metric(["offset"], m.stream_shipped[1])
            yield shipped
            yield GaugeMetricFamily(
                "poold_stream_lag_seconds",
                "How long the oldest record the stream does not store yet has waited",
                value=m.stream_lag_s,
            )
            yield GaugeMetricFamily(
                "poold_stream_lag_bytes",
                "Share-log bytes written but not stored by the stream",
                value=m.stream_lag_bytes,
            )
            yield CounterMetricFamily(
                "poold_stream_failures", "Shipping rounds that failed", value=m.stream_failures
            )
            yield CounterMetricFamily(
                "poold_stream_outages", "Stream outages (one event each)", value=m.stream_outages
            )
            yield CounterMetricFamily(
                "poold_stream_rewinds",
                "Times the stream held less than shipped and was re-filled from the log",
                value=m.stream_rewinds,
            )
            yield CounterMetricFamily(
                "poold_stream_refused_batches",
                "Share batches refused (error 20) while the stream lagged past max_lag_s",
                value=m.stream_refused_batches,
            )
            yield GaugeMetricFamily(
                "poold_stream_replicas",
                "Replicas the stream reports keeping",
                value=m.stream_replicas,
            )
        if m.hashrate_hs:
            hs = GaugeMetricFamily(
                "poold_hashrate_hs", "Pool hashrate by window (H/s)", labels=["window"]
            )
            for window, value in m.hashrate_hs.items():
                hs.add_metric([window], value)
            yield hs
        if m.payouts:
            pay = CounterMetricFamily("poold_payouts", "Payout sends, by status", labels=["status"])
            for status, n in sorted(m.payouts.items()):
                pay.add_metric([status], n)
            yield pay
