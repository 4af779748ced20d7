"""Indexes for the paginated lists: keyset pages of devices by filter, rollout actions and the audit log, and (on
PostgreSQL) GIN indexes on the device tag and group arrays as `jsonb`, which the list's tag and group filters use.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_BTREE = {
    "ix_devices_tenant_status_id": ("devices", ["tenant_id", "status", "id"]),
    "ix_devices_tenant_compatible_id": ("devices", ["tenant_id", "compatible", "id"]),
    "ix_devices_tenant_os_version_id": ("devices", ["tenant_id", "os_version", "id"]),
    "ix_actions_rollout_id_id": ("actions", ["rollout_id", "id"]),
    "ix_audit_events_tenant_id_id": ("audit_events", ["tenant_id", "id"]),
}
# The expressions the device list's filters use (services/device_list.py): CAST(tags AS JSONB) @> '["x"]'.
_GIN = {"ix_devices_tags_jsonb": "tags", "ix_devices_groups_jsonb": "groups"}
_PATTERN = "ix_devices_tenant_name_pattern"


def upgrade() -> None:
    for name, (table, cols) in _BTREE.items():
        op.create_index(name, table, cols)
    if op.get_bind().dialect.name == "postgresql":
        for name, col in _GIN.items():
            op.create_index(name, "devices", [sa.text(f"(({col})::jsonb) jsonb_path_ops")], postgresql_using="gin")
        # The name-prefix filter (LIKE 'prefix%'): an ordinary index serves LIKE only in the C collation.
        op.create_index(_PATTERN, "devices", ["tenant_id", sa.text("name varchar_pattern_ops")])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in (*_GIN, _PATTERN):
            op.drop_index(name, table_name="devices")
    for name, (table, _cols) in _BTREE.items():
        op.drop_index(name, table_name=table)
