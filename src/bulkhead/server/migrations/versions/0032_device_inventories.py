"""Devices' inventories in a table of their own: the devices table seven times narrower.

The agent's inventory (`reported`: packages, containers, slots; about 1.5 kB per device even compressed) was a
column of `devices`, below the size at which PostgreSQL moves a value out of its row. So it made up most of every
row: at 100,000 devices the table was 297 MB, and every scan of the fleet read it all (a rollout's target, the
search for devices that joined it, which the step that finishes a rollout runs: 0.43 s of which most was that
scan; without the column 0.17 s; bench/scale.py). Reports that repeat an inventory write nothing to it, so the
row it now has in `device_inventories` is written only when the inventory changes, and read by the device detail
and the vulnerability scan.

PostgreSQL: the table is rewritten (CLUSTER on its primary key) so that the space the column held is given back;
it holds an exclusive lock on devices while it runs (seconds at 100,000 devices).

Revision ID: 0032
Revises: 0031
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "device_inventories",
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reported", sa.JSON(), nullable=False),
    )
    empty = "reported::text NOT IN ('{}', 'null')" if _pg() else "reported IS NOT NULL AND reported NOT IN ('{}', 'null')"
    op.execute(f"INSERT INTO device_inventories (device_id, reported) SELECT id, reported FROM devices WHERE {empty}")
    op.drop_column("devices", "reported")
    if _pg():
        op.execute("CLUSTER devices USING devices_pkey")
        op.execute("ALTER TABLE devices SET WITHOUT CLUSTER")


def downgrade() -> None:
    op.add_column("devices", sa.Column("reported", sa.JSON(), nullable=False, server_default="{}"))
    op.execute(
        "UPDATE devices SET reported = (SELECT i.reported FROM device_inventories i WHERE i.device_id = devices.id) "
        "WHERE id IN (SELECT device_id FROM device_inventories)"
    )
    op.drop_table("device_inventories")
