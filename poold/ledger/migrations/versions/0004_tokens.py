"""Hashrate tokens: transfers, BTC/USD prices, settled periods and holders' statements;
HTTP API tokens (stored hashed)."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_transfers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ext_id", sa.String(160), nullable=False, unique=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("sender", sa.String(128), nullable=True),
        sa.Column("receiver", sa.String(128), nullable=True),
        sa.Column("amount", sa.String(80), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_token_transfers_ts", "token_transfers", ["ts"])
    op.create_index("ix_token_transfers_sender", "token_transfers", ["sender"])
    op.create_index("ix_token_transfers_receiver", "token_transfers", ["receiver"])
    op.create_table(
        "token_prices",
        sa.Column("period_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("btc_usd", sa.String(80), nullable=False),
    )
    op.create_table(
        "token_periods",
        sa.Column("period_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("period_end", sa.BigInteger, nullable=False),
        sa.Column("entry_id", sa.Integer, sa.ForeignKey("journal_entries.id"), nullable=False),
        sa.Column("btc_usd", sa.String(80), nullable=False),
        sa.Column("delivered_ths", sa.Text, nullable=False),
        sa.Column("nominal_th_s", sa.Text, nullable=False),
        sa.Column("delivery_ratio", sa.Text, nullable=False),
        sa.Column("earnings_sat", sa.BigInteger, nullable=False),
        sa.Column("holders_pot_sat", sa.BigInteger, nullable=False),
        sa.Column("operator_retained_sat", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "token_statements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column(
            "period_start",
            sa.BigInteger,
            sa.ForeignKey("token_periods.period_start"),
            nullable=False,
        ),
        sa.Column("token_seconds", sa.Text, nullable=False),
        *(
            sa.Column(c, sa.BigInteger, nullable=False)
            for c in (
                "gross_sat",
                "electricity_sat",
                "service_sat",
                "net_sat",
                "debt_in_sat",
                "paid_sat",
                "debt_out_sat",
                "written_off_sat",
            )
        ),
        sa.UniqueConstraint("holder", "period_start"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("scope", sa.String(160), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0004'"))


def downgrade() -> None:
    for table in (
        "api_tokens",
        "token_statements",
        "token_periods",
        "token_prices",
        "token_transfers",
    ):
        op.drop_table(table)
    op.execute(sa.text("UPDATE poold_schema SET version = '0003'"))
