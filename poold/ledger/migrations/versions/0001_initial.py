"""Initial ledger schema: accounts, workers, share slices, blocks, ingest checkpoints."""

import sqlalchemy as sa
from alembic import op

from poold.ledger.models import Base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The first revision creates the tables as models.py declares them; later revisions
    # change them explicitly.
    Base.metadata.create_all(op.get_bind())
    op.execute(sa.text("INSERT INTO poold_schema (version) VALUES ('0001')"))


def downgrade() -> None:
    Base.metadata.drop_all(op.get_bind())
