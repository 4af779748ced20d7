"""VEX statements name the component version they were triaged against (carried forward while it is unchanged) and
who made them (a person, or the SBOM: Yocto CVE_STATUS); device mappings keep the device's member state.

- vex_statements: `component_version` ("" = any version, as before), `purl`, `origin` ("user" or "sbom"); the
  unique key becomes (tenant, compatible, cve, component, component_version), so one component can carry a
  statement per version.
- vuln_device_profiles: `country` (the device attribute `country`, ISO 3166-1 alpha-2, "" when absent), so fleet
  exposure is counted per member state over the mapping table.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_OLD_KEY = ("tenant_id", "compatible", "cve", "component")
_NEW_KEY = "uq_vex_statements_key"
# SQLite reflects the 0013 key without a name: batch mode names it by this convention so that it can be dropped.
_SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_key_name() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "uq_vex_statements_tenant_id"
    return "vex_statements_tenant_id_compatible_cve_component_key"  # PostgreSQL's default name


def upgrade() -> None:
    with op.batch_alter_table("vex_statements", naming_convention=_SQLITE_NAMES) as b:
        b.add_column(sa.Column("component_version", sa.String(256), nullable=False, server_default=""))
        b.add_column(sa.Column("purl", sa.Text()))
        b.add_column(sa.Column("origin", sa.String(16), nullable=False, server_default="user"))
        b.drop_constraint(_old_key_name(), type_="unique")
        b.create_unique_constraint(_NEW_KEY, [*_OLD_KEY, "component_version"])
    with op.batch_alter_table("vuln_device_profiles") as b:
        b.add_column(sa.Column("country", sa.String(16), nullable=False, server_default=""))
    # Devices are mapped again at the next scan (a device whose mapped country differs from its attribute is stale).


def downgrade() -> None:
    with op.batch_alter_table("vuln_device_profiles") as b:
        b.drop_column("country")
    op.execute("DELETE FROM vex_statements WHERE origin = 'sbom' OR component_version <> ''")
    with op.batch_alter_table("vex_statements") as b:
        b.drop_constraint(_NEW_KEY, type_="unique")
        b.create_unique_constraint(_old_key_name(), list(_OLD_KEY))
        b.drop_column("origin")
        b.drop_column("purl")
        b.drop_column("component_version")
