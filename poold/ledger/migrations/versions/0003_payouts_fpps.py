"""Payouts (intents, items, per-account settings, a lease), FPPS bookkeeping, and the
confirmations of found blocks."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blocks") as batch:  # SQLite needs batch mode to add columns safely
        batch.add_column(sa.Column("confirmations", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "payout_settings",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("address", sa.String(100), nullable=True),
        sa.Column("min_payout_sat", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "payouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("total_sat", sa.BigInteger, nullable=False),
        sa.Column("txid", sa.String(64), nullable=True, unique=True),
        sa.Column("fee_sat", sa.BigInteger, nullable=True),
        sa.Column("entry_id", sa.Integer, sa.ForeignKey("journal_entries.id"), nullable=True),
        sa.Column("confirmations", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(300), nullable=True),
    )
    op.create_table(
        "payout_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payout_id", sa.Integer, sa.ForeignKey("payouts.id"), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("address", sa.String(100), nullable=False),
        sa.Column("amount_sat", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_payout_items_account", "payout_items", ["account"])
    op.create_table(
        "ledger_locks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fpps_cursors",
        sa.Column("node_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("slice_id", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fpps_carry",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "chain_fees",
        sa.Column("height", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("block_hash", sa.String(64), nullable=False),
        sa.Column("fees_sat", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0003'"))


def downgrade() -> None:
    for table in (
        "chain_fees",
        "fpps_carry",
        "fpps_cursors",
        "ledger_locks",
        "payout_items",
        "payouts",
        "payout_settings",
    ):
        op.drop_table(table)
    with op.batch_alter_table("blocks") as batch:
        batch.drop_column("confirmations")
    op.execute(sa.text("UPDATE poold_schema SET version = '0002'"))
