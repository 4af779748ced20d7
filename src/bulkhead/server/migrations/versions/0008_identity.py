"""Device identity: a credential epoch (carried by signed URLs), an operator's one-time re-enrollment allowance, and
the credential a device held before its last rotation (valid until it uses the new one).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.add_column(sa.Column("credential_epoch", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("reenroll_allowed", sa.Boolean(), nullable=False, server_default=sa.false()))
        b.add_column(sa.Column("previous_credential_hash", sa.String(64)))
        b.create_index("ix_devices_previous_credential_hash", ["previous_credential_hash"])


def downgrade() -> None:
    with op.batch_alter_table("devices") as b:
        b.drop_index("ix_devices_previous_credential_hash")
        b.drop_column("previous_credential_hash")
        b.drop_column("reenroll_allowed")
        b.drop_column("credential_epoch")
