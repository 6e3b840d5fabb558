"""Verifiable statements: each holder's secret salt, each settled token period's Merkle-sum
root, its published inputs and its link in the chain of commitments, and the commitment the
coinbase of each found block carries."""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holder_salts",
        sa.Column("holder", sa.String(128), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
    )
    op.create_table(
        "statement_roots",
        sa.Column("period_start", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("sums", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("previous", sa.String(64), nullable=False),
        sa.Column("commitment", sa.String(64), nullable=False, unique=True),
    )
    op.add_column("blocks", sa.Column("commitment", sa.String(64), nullable=True))
    op.execute(sa.text("UPDATE poold_schema SET version = '0009'"))


def downgrade() -> None:
    with op.batch_alter_table("blocks") as batch:
        batch.drop_column("commitment")
    op.drop_table("statement_roots")
    op.drop_table("holder_salts")
    op.execute(sa.text("UPDATE poold_schema SET version = '0008'"))
