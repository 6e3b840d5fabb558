"""The network as the pool saw it over time (height, target bits, subsidy, mean fees of the
last blocks), so that the network's hashprice over any period can be known afterwards: each
token statement and the fleet's daily series are benchmarked against it. Periods before this
revision have no samples and show no benchmark."""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_samples",
        sa.Column("t_s", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("bits", sa.BigInteger(), nullable=False),
        sa.Column("subsidy_sat", sa.BigInteger(), nullable=False),
        sa.Column("avg_fees_sat", sa.Text(), nullable=False),
        sa.Column("fee_blocks", sa.Integer(), nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0014'"))


def downgrade() -> None:
    op.drop_table("network_samples")
    op.execute(sa.text("UPDATE poold_schema SET version = '0012'"))
