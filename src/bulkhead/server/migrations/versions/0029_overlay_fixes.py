"""The CVE ids an overlay package's changelog entry names as fixed (services/overlay_fixes.py).

Revision ID: 0029
Revises: 0028
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("overlay_packages") as batch:
        batch.add_column(sa.Column("fixes", sa.JSON, nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("overlay_packages") as batch:
        batch.drop_column("fixes")
