"""What miners see and can check: each worker's user agent, best share (as its hash: the
smallest is the best) and when the pool last heard of it; each block's round effort
(exact, written when the block settles); the Merkle-sum roots of every PPLNS block and FPPS
booking with their chain of commitments, and which credit commitment a found block's
coinbase carries; rejected shares per account and reason, added up from every node's log."""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("user_agent", sa.String(128), nullable=True))
    op.add_column("workers", sa.Column("best_hash", sa.String(64), nullable=True))
    op.add_column("workers", sa.Column("seen_ms", sa.BigInteger, nullable=True))
    op.add_column("blocks", sa.Column("effort_num", sa.String(80), nullable=True))
    op.add_column("blocks", sa.Column("effort_den", sa.String(80), nullable=True))
    op.add_column("blocks", sa.Column("credit_commitment", sa.String(64), nullable=True))
    op.create_table(
        "credit_roots",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(128), nullable=False, unique=True),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("sums", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("lines", sa.Text, nullable=False),
        sa.Column("previous", sa.String(64), nullable=False, unique=True),
        sa.Column("commitment", sa.String(64), nullable=False, unique=True),
    )
    op.create_table(
        "reject_counts",
        sa.Column("account", sa.String(128), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0010'"))


def downgrade() -> None:
    op.drop_table("reject_counts")
    op.drop_table("credit_roots")
    with op.batch_alter_table("blocks") as batch:
        for name in ("credit_commitment", "effort_den", "effort_num"):
            batch.drop_column(name)
    with op.batch_alter_table("workers") as batch:
        for name in ("seen_ms", "best_hash", "user_agent"):
            batch.drop_column(name)
    op.execute(sa.text("UPDATE poold_schema SET version = '0009'"))
