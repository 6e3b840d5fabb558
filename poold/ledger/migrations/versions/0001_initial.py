"""Initial ledger schema: accounts, workers, share slices, blocks, ingest checkpoints."""

import sqlalchemy as sa
from alembic import op

from poold.ledger.models import Base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


TABLES = ("poold_schema", "accounts", "workers", "share_slices", "blocks", "ingest_checkpoints")


def upgrade() -> None:
    # The first revision creates its tables as models.py declares them; later revisions
    # add and change tables explicitly.
    Base.metadata.create_all(op.get_bind(), tables=[Base.metadata.tables[t] for t in TABLES])
    op.execute(sa.text("INSERT INTO poold_schema (version) VALUES ('0001')"))


def downgrade() -> None:
    Base.metadata.drop_all(op.get_bind(), tables=[Base.metadata.tables[t] for t in TABLES])
