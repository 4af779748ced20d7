"""Rollouts of an app version: rollouts and actions point at a release or at an app.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("rollouts", "actions"):
        with op.batch_alter_table(table) as b:
            b.alter_column("release_id", existing_type=sa.Integer(), nullable=True)
            b.add_column(sa.Column("app_id", sa.Integer(), nullable=True))
            b.create_foreign_key(f"fk_{table}_app_id", "apps", ["app_id"], ["id"])
            b.create_check_constraint(f"ck_{table}_one_target", "(release_id IS NULL) <> (app_id IS NULL)")


def downgrade() -> None:
    for table in ("actions", "rollouts"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE release_id IS NULL"))
        with op.batch_alter_table(table) as b:
            b.drop_constraint(f"ck_{table}_one_target", type_="check")
            b.drop_constraint(f"fk_{table}_app_id", type_="foreignkey")
            b.drop_column("app_id")
            b.alter_column("release_id", existing_type=sa.Integer(), nullable=False)
