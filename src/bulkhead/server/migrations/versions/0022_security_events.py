"""The device security log (CRA Annex I): partial indexes on the device events of kind `security`, so the security
event lists (a tenant's, a device's) and their counts read only those rows.

Security events are rows of `device_events` (kind `security`, their kind in details.event): the report path's
batched insert writes them like every other event, so this migration adds no table and no column.

Revision ID: 0022
Revises: 0021
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_WHERE = sa.text("kind = 'security'")
_INDEXES = {
    "ix_device_events_security_tenant": ["tenant_id", "id"],
    "ix_device_events_security_device": ["device_id", "id"],
}


def upgrade() -> None:
    for name, cols in _INDEXES.items():
        op.create_index(name, "device_events", cols, postgresql_where=_WHERE, sqlite_where=_WHERE)


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="device_events")
