"""Anchors with their evidence: `chain_anchors` keeps each transaction that carries the
commitment chains' heads (a found block's coinbase, or an anchor transaction the pool's wallet
sent) with its block header, its non-witness bytes and its merkle branch, so a proof can carry
what checks it offline; `chain_view` keeps the best block the leader saw and the pool's
anchoring identity. Blocks found before this revision get their evidence on the next ledger
pass (read back from bitcoind)."""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_anchors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("txid", sa.String(64), nullable=False, unique=True),
        sa.Column("statement", sa.String(64), nullable=True),
        sa.Column("credit", sa.String(64), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("block_hash", sa.String(64), nullable=True),
        sa.Column("height", sa.Integer, nullable=True),
        sa.Column("confirmations", sa.Integer, nullable=False),
        sa.Column("header", sa.String(160), nullable=True),
        sa.Column("tx", sa.Text, nullable=True),
        sa.Column("tx_index", sa.Integer, nullable=True),
        sa.Column("branch", sa.Text, nullable=True),
    )
    op.create_index("ix_chain_anchors_statement", "chain_anchors", ["statement"])
    op.create_index("ix_chain_anchors_credit", "chain_anchors", ["credit"])
    op.create_table(
        "chain_view",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("best_hash", sa.String(64), nullable=False),
        sa.Column("best_height", sa.Integer, nullable=False),
        sa.Column("seen_ms", sa.BigInteger, nullable=False),
        sa.Column("interval_s", sa.Integer, nullable=True),
        sa.Column("coinbase_scripts", sa.Text, nullable=False),
        sa.Column("anchor_scripts", sa.Text, nullable=False),
    )
    op.execute(sa.text("UPDATE poold_schema SET version = '0012'"))


def downgrade() -> None:
    op.drop_table("chain_view")
    op.drop_index("ix_chain_anchors_credit", "chain_anchors")
    op.drop_index("ix_chain_anchors_statement", "chain_anchors")
    op.drop_table("chain_anchors")
    op.execute(sa.text("UPDATE poold_schema SET version = '0011'"))
