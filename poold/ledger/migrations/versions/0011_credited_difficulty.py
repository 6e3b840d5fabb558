"""FPPS caps every share at its block's network difficulty: each share slice keeps its
credited difficulty (the sum of its shares' difficulties, each capped) beside its plain
difficulty, NULL where no share of it was over the network difficulty (then they are equal).

Slices written before this revision have lost their single shares, so the exact cap cannot
be recovered for them: those FPPS has not booked yet are bounded instead by their share
count (min(difficulty, shares x network difficulty): no share worth more than a block on
average); slices already booked are history and keep NULL (`replay` shows such a slice as
differing from its log, which is the truth about how it was booked)."""

from fractions import Fraction

import sqlalchemy as sa
from alembic import op

from poold.chain.targets import network_difficulty

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("share_slices", sa.Column("credit_num", sa.String(80), nullable=True))
    op.add_column("share_slices", sa.Column("credit_den", sa.String(80), nullable=True))
    conn = op.get_bind()
    cursors: dict[int, int] = {
        int(n): int(c)
        for n, c in conn.execute(sa.text("SELECT node_id, slice_id FROM fpps_cursors"))
    }
    rows = conn.execute(
        sa.text("SELECT id, node_id, bits, diff_num, diff_den, shares FROM share_slices")
    )
    nets: dict[int, Fraction | None] = {}
    updates = []
    for sid, node_id, bits, num, den, shares in rows:
        if sid <= cursors.get(node_id, 0):
            continue  # booked already
        if bits not in nets:
            try:
                nets[bits] = network_difficulty(int(bits))
            except ValueError:  # not a target a chain can have: nothing to cap against
                nets[bits] = None
        nd = nets[bits]
        if nd is None:
            continue
        diff, bound = Fraction(int(num), int(den)), nd * int(shares)
        if diff > nd and diff > bound:
            updates.append({"id": sid, "n": str(bound.numerator), "d": str(bound.denominator)})
    if updates:
        conn.execute(
            sa.text("UPDATE share_slices SET credit_num = :n, credit_den = :d WHERE id = :id"),
            updates,
        )
    op.execute(sa.text("UPDATE poold_schema SET version = '0011'"))


def downgrade() -> None:
    with op.batch_alter_table("share_slices") as batch:
        batch.drop_column("credit_den")
        batch.drop_column("credit_num")
    op.execute(sa.text("UPDATE poold_schema SET version = '0010'"))
