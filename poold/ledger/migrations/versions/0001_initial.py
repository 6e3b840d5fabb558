"""Initial ledger schema: accounts, workers, share slices, blocks, ingest checkpoints.

Written out explicitly (not from models.py), so later revisions can change the models."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table("poold_schema", sa.Column("version", sa.String(16), primary_key=True))
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.UniqueConstraint("account_id", "name"),
    )
    op.create_table(
        "share_slices",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("node_id", sa.Integer, nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("worker_id", sa.Integer, sa.ForeignKey("workers.id"), nullable=False),
        sa.Column("slice_start", sa.BigInteger, nullable=False),
        sa.Column("bits", sa.BigInteger, nullable=False),
        sa.Column("diff_num", sa.String(80), nullable=False),
        sa.Column("diff_den", sa.String(80), nullable=False),
        sa.Column("shares", sa.Integer, nullable=False),
        sa.Column("first_ms", sa.BigInteger, nullable=False),
        sa.Column("last_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_slices_account_start", "share_slices", ["account_id", "slice_start"])
    op.create_index("ix_slices_start", "share_slices", ["slice_start"])
    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("node_id", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("account_id", sa.Integer, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("worker_id", sa.Integer, sa.ForeignKey("workers.id"), nullable=False),
        sa.Column("reward_sat", sa.BigInteger, nullable=False),
        sa.Column("bits", sa.BigInteger, nullable=False),
        sa.Column("found_ms", sa.BigInteger, nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
    )
    op.create_table(
        "ingest_checkpoints",
        sa.Column("node_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("INSERT INTO poold_schema (version) VALUES ('0001')"))


def downgrade() -> None:
    for table in (
        "ingest_checkpoints",
        "blocks",
        "share_slices",
        "workers",
        "accounts",
        "poold_schema",
    ):
        op.drop_table(table)
