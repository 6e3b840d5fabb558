"""Two-phase block credits: a found block's entry is *pending* until its coinbase matures,
then *posted* (a `post` entry resolves it) or, on orphan, *voided* (a `void` entry). Whether
a credit is spendable is the entry's phase, not an account-name suffix: `miner:<a>:immature`
and `miner:<a>:spendable` become `miner:<a>`, `coinbase:<hash>` becomes `pool:wallet`.

Existing ledgers are converted in place: block settlements and re-credits become pending
entries, maturity entries `post` and reversals `void` the newest unresolved pending entry of
their block (their lines, now implied by the phase, are removed)."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PENDING_KINDS = ("pplns_block", "prop_block", "solo_block", "fpps_block")


def upgrade() -> None:
    # Plain ADD COLUMN and a unique index: SQLite would otherwise rebuild the table, which
    # the other tables' foreign keys forbid.
    op.add_column(
        "journal_entries",
        sa.Column("phase", sa.String(8), nullable=False, server_default="posted"),
    )
    op.add_column("journal_entries", sa.Column("pending_id", sa.Integer, nullable=True))
    op.create_index("uq_entries_pending_id", "journal_entries", ["pending_id"], unique=True)
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, kind, reference FROM journal_entries ORDER BY id")
    ).all()
    open_pending: dict[str, list[int]] = {}
    for entry_id, kind, reference in rows:
        if kind in PENDING_KINDS or kind == "block_recredit":
            conn.execute(
                sa.text("UPDATE journal_entries SET phase = 'pending' WHERE id = :i"),
                {"i": entry_id},
            )
            open_pending.setdefault(reference, []).append(entry_id)
        elif kind in ("maturity", "pplns_reversal"):
            stack = open_pending.get(reference) or []
            if not stack:
                continue  # nothing to resolve: left as it was (ledger verify will say so)
            target = stack.pop()
            conn.execute(
                sa.text("UPDATE journal_entries SET phase = :p, pending_id = :t WHERE id = :i"),
                {"p": "post" if kind == "maturity" else "void", "t": target, "i": entry_id},
            )
            conn.execute(sa.text("DELETE FROM journal_lines WHERE entry_id = :i"), {"i": entry_id})
    for suffix in (":immature", ":spendable"):
        conn.execute(
            sa.text(
                "UPDATE journal_lines SET account = substr(account, 1, length(account) - :n) "
                "WHERE account LIKE :pattern"
            ),
            {"n": len(suffix), "pattern": f"miner:%{suffix}"},
        )
    conn.execute(
        sa.text("UPDATE journal_lines SET account = 'pool:wallet' WHERE account LIKE 'coinbase:%'")
    )
    conn.execute(sa.text("UPDATE poold_schema SET version = '0007'"))


def downgrade() -> None:
    raise NotImplementedError("two-phase credits cannot be split back into suffixed accounts")
