"""Rollouts at fleet scale: how many phases are open (actions of later phases exist from the start but are not
offered yet), which attempts a retry superseded, and an index over which the database counts a rollout's progress.

Existing rollouts are carried over: the phases up to the current one count as open for rollouts that started,
and every attempt but a device's newest is superseded. Devices of later phases that have no action yet are
placed by the next evaluation, as devices that joined the target.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as b:
        b.add_column(sa.Column("phases_started", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("actions") as b:
        b.add_column(sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_actions_rollout_progress", "actions", ["rollout_id", "phase", "superseded", "status", "active", "device_id"]
    )
    op.execute("UPDATE rollouts SET phases_started = current_phase + 1 WHERE status NOT IN ('waiting_approval', 'scheduled')")
    op.execute(
        "UPDATE actions SET superseded = true WHERE id NOT IN (SELECT MAX(id) FROM actions GROUP BY rollout_id, device_id)"
    )


def downgrade() -> None:
    op.drop_index("ix_actions_rollout_progress", table_name="actions")
    with op.batch_alter_table("actions") as b:
        b.drop_column("superseded")
    with op.batch_alter_table("rollouts") as b:
        b.drop_column("phases_started")
