"""The leader's lease as a row with an epoch (replacing the session advisory lock, which a
half-open connection could hold for hours), and the epoch each payout intent was written in."""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leader_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("payouts") as batch:
        batch.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))
    op.execute(sa.text("UPDATE poold_schema SET version = '0016'"))


def downgrade() -> None:
    with op.batch_alter_table("payouts") as batch:
        batch.drop_column("epoch")
    op.drop_table("leader_lease")
    op.execute(sa.text("UPDATE poold_schema SET version = '0014'"))
