"""Several daemons, one ledger: each node's registration (log identity, lease), how far its
share log is ingested (the heartbeat's `through` time, and whether that heartbeat was the
node's last before a clean stop), and the nodes a settlement was made without (with how far
each was ingested then, so the rule can be checked over the final ledger)."""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("log_id", sa.String(64), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("started_ms", sa.BigInteger, nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger, nullable=False),
    )
    op.add_column(
        "ingest_checkpoints",
        sa.Column("through_ms", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column(
        "ingest_checkpoints",
        sa.Column("beat_ms", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column(
        "ingest_checkpoints",
        sa.Column("final", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "settlement_exclusions",
        sa.Column("key", sa.String(120), primary_key=True),
        sa.Column("node_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("through_ms", sa.BigInteger, nullable=False),
        sa.Column("slice_id", sa.BigInteger, nullable=False),
        sa.Column("segment", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0008'"))


def downgrade() -> None:
    op.drop_table("settlement_exclusions")
    with op.batch_alter_table("ingest_checkpoints") as batch:
        batch.drop_column("final")
        batch.drop_column("beat_ms")
        batch.drop_column("through_ms")
    op.drop_table("nodes")
    op.execute(sa.text("UPDATE poold_schema SET version = '0007'"))
