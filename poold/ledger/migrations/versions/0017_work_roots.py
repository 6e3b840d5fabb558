"""Proof of delivered hashrate: each token period's work-proof root (the Merkle-sum tree over
the fleet's shares, sorted by header hash), the salt of its account tags, and the published
sample once its beacon block is mined. Periods settled before this revision have none. And
each statement's make-good (the shortfall under the delivery threshold, posted to holders
when `[tokens] make_good` is on; 0 otherwise and before)."""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_roots",
        sa.Column("period_start", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("work", sa.Text(), nullable=False),
        sa.Column("leaves", sa.BigInteger(), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("beacon_block", sa.String(64), nullable=True),
        sa.Column("proof", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("token_statements") as batch:
        batch.add_column(
            sa.Column("make_good_sat", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.execute(sa.text("UPDATE poold_schema SET version = '0017'"))


def downgrade() -> None:
    op.drop_table("work_roots")
    with op.batch_alter_table("token_statements") as batch:
        batch.drop_column("make_good_sat")
    op.execute(sa.text("UPDATE poold_schema SET version = '0016'"))
