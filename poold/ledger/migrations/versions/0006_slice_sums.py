"""Slice sums per aligned time block and account: a PPLNS window over millions of slices reads
thousands of these instead. Empty at first: the first fold (the next settlement, or the
daemon after its next ingest) counts every existing slice once."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slice_sums",
        sa.Column("span", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("bits", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("diff_den", sa.String(80), primary_key=True),
        sa.Column("diff_num", sa.String(80), nullable=False),
        sa.Column("shares", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "slice_rollup",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("folded_id", sa.BigInteger, nullable=False),
    )
    op.execute(sa.text("INSERT INTO slice_rollup (id, folded_id) VALUES (1, 0)"))
    op.execute(sa.text("UPDATE poold_schema SET version = '0006'"))


def downgrade() -> None:
    op.drop_table("slice_rollup")
    op.drop_table("slice_sums")
    op.execute(sa.text("UPDATE poold_schema SET version = '0005'"))
