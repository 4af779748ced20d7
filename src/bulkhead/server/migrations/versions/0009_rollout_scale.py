"""Rollouts at fleet scale: each device's place in a rollout (`rollout_devices`), how many phases have been opened,
which attempts a retry superseded, and an index over which the database counts a rollout's progress.

Existing rollouts are carried over: the devices that have actions are placed in their actions' phases, the phases
up to the current one count as opened (for rollouts that started), and every attempt but a device's newest is
superseded.

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
    op.create_table(
        "rollout_devices",
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["rollout_id"], ["rollouts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rollout_id", "device_id"),
    )
    op.create_index("ix_rollout_devices_rollout_phase", "rollout_devices", ["rollout_id", "phase"])
    op.create_index("ix_rollout_devices_device_id", "rollout_devices", ["device_id"])
    with op.batch_alter_table("rollouts") as b:
        b.add_column(sa.Column("phases_started", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("actions") as b:
        b.add_column(sa.Column("superseded", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_actions_rollout_progress", "actions", ["rollout_id", "phase", "superseded", "status", "active"])
    op.execute(
        "INSERT INTO rollout_devices (rollout_id, device_id, phase) "
        "SELECT rollout_id, device_id, MIN(phase) FROM actions GROUP BY rollout_id, device_id"
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
    op.drop_index("ix_rollout_devices_device_id", table_name="rollout_devices")
    op.drop_index("ix_rollout_devices_rollout_phase", table_name="rollout_devices")
    op.drop_table("rollout_devices")
