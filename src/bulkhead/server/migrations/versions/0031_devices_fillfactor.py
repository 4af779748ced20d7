"""Room on the devices table's pages for the reports' updates (PostgreSQL: fillfactor 70).

Every report rewrites its device's row (last seen, report sequence, update status, inventory), and none of those
columns is indexed, so PostgreSQL can keep the new version on the same page and skip the table's eleven indexes (a
HOT update), but only when the page has room. Filled to 100 %, as a bulk load or a fleet that enrolled leaves it,
the first update of most rows moved them to another page and inserted into every index: at 100,000 devices 12 % of
the first pass's updates were HOT and 1,953 reports/s were taken; at fillfactor 70, 100 % and 2,345/s (bench/scale.py,
docs/architecture.md). The setting applies to pages written from now on; rows of an existing table get it as they
move, or at once with VACUUM FULL devices (which locks the table while it runs).

Revision ID: 0031
Revises: 0030
"""

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE devices SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE devices RESET (fillfactor)")
