"""The devices table on PostgreSQL: room on its pages for the reports' updates, tags and groups stored as jsonb.

Fillfactor 70: every report rewrites its device's row (last seen, report sequence, update status, inventory), and
none of those columns is indexed, so PostgreSQL can keep the new version on the same page and skip the table's
eleven indexes (a HOT update), but only when the page has room. Filled to 100 %, as a bulk load or a fleet that
enrolled leaves it, the first update of most rows moved them to another page and inserted into every index: at
100,000 devices 12 % of a first pass's updates were HOT and 1,953 reports/s were taken; at fillfactor 70, 100 % and
2,345/s (bench/scale.py).

tags and groups as jsonb: the list filters (`?tag=`, `?group=`, rollout targets) test `tags @> '["x"]'`. Stored
as json, every row the planner chose to filter (walking the id index for the first page of a list, its usual plan)
had its text parsed into jsonb first: 19 ms for a tag 1 % of 100,000 devices carry. The GIN indexes are now on the
columns themselves.

Changing the columns' type rewrites the table, which also gives every existing row the new fillfactor; it holds
an exclusive lock on devices while it runs (seconds at 100,000 devices).

Revision ID: 0031
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

FILLFACTOR = 70
_GIN = {"ix_devices_tags_jsonb": "tags", "ix_devices_groups_jsonb": "groups"}


def _columns(kind: str, index_on: str) -> None:
    for name in _GIN:
        op.drop_index(name, table_name="devices")
    op.execute(
        f"ALTER TABLE devices ALTER COLUMN tags TYPE {kind} USING tags::{kind}, "
        f"ALTER COLUMN groups TYPE {kind} USING groups::{kind}"
    )
    for name, col in _GIN.items():
        op.create_index(name, "devices", [sa.text(index_on.format(col=col))], postgresql_using="gin")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE devices SET (fillfactor = {FILLFACTOR})")
        _columns("jsonb", "{col} jsonb_path_ops")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _columns("json", "(({col})::jsonb) jsonb_path_ops")
        op.execute("ALTER TABLE devices RESET (fillfactor)")
