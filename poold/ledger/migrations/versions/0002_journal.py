"""Double-entry journal and settlements."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "journal_lines",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("entry_id", sa.Integer, sa.ForeignKey("journal_entries.id"), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("amount_sat", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_lines_account", "journal_lines", ["account"])
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(160), nullable=False, unique=True),
        sa.Column("entry_id", sa.Integer, sa.ForeignKey("journal_entries.id"), nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0002'"))


def downgrade() -> None:
    op.drop_table("settlements")
    op.drop_index("ix_lines_account", "journal_lines")
    op.drop_table("journal_lines")
    op.drop_table("journal_entries")
    op.execute(sa.text("UPDATE poold_schema SET version = '0001'"))
