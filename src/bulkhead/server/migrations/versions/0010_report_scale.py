"""Device reports at fleet scale: the fingerprint of the inventory a device last reported, so a repeat writes nothing.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.add_column(sa.Column("reported_sha256", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.drop_column("reported_sha256")
