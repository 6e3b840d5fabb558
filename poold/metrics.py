"""Process-wide counters and gauges, rendered in Prometheus text format.

Owned by the composition root and passed to whoever counts; no module-level state.
"""

from __future__ import annotations

from collections import Counter


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
        self.leader = 0  # 1 while this daemon holds the ledger's leadership
        # Every node of the ledger (as the leader last read them): id -> (status, seconds
        # its ingested shares lag behind now).
        self.nodes: dict[int, tuple[str, float]] = {}

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

    def render_prometheus(self) -> str:
        lines = [
            "# TYPE poold_shares_total counter",
            f'poold_shares_total{{result="accepted"}} {self.shares_accepted}',
        ]
        for reason, n in sorted(self.shares_rejected.items()):
            lines.append(f'poold_shares_total{{result="rejected",reason="{reason}"}} {n}')
        lines += [
            "# TYPE poold_blocks_total counter",
            f'poold_blocks_total{{status="found"}} {self.blocks_found}',
            f'poold_blocks_total{{status="accepted"}} {self.blocks_accepted}',
            f'poold_blocks_total{{status="rejected"}} {self.blocks_rejected}',
            "# TYPE poold_connections gauge",
            f"poold_connections {self.connections}",
            "# TYPE poold_jobs_total counter",
            f"poold_jobs_total {self.jobs}",
            "# TYPE poold_ingest_lag_shares gauge",
            f"poold_ingest_lag_shares {self.ingest_lag_shares}",
            "# TYPE poold_sharelog_failed_batches_total counter",
            f"poold_sharelog_failed_batches_total {self.sharelog_failed_batches}",
            "# TYPE poold_sharelog_ok gauge",
            f"poold_sharelog_ok {self.sharelog_ok}",
            "# TYPE poold_ledger_pass_failures_total counter",
            f"poold_ledger_pass_failures_total {self.ledger_pass_failures}",
            "# TYPE poold_settlements_total counter",
        ]
        for kind in ("block", "fpps", "tokens"):
            lines.append(f'poold_settlements_total{{kind="{kind}"}} {self.settlement_runs[kind]}')
        lines += ["# TYPE poold_leader gauge", f"poold_leader {self.leader}"]
        lines.append("# TYPE poold_node_ingest_lag_seconds gauge")
        for node_id, (status, lag) in sorted(self.nodes.items()):
            lines.append(
                f'poold_node_ingest_lag_seconds{{node="{node_id}",status="{status}"}} {lag:.3f}'
            )
        return "\n".join(lines) + "\n"
