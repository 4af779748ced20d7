"""Package rollouts: a rollout carries a package set (rollouts.packages) as it carries a release or an app version.

Revision ID: 0030
Revises: 0029
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

ONE_SUBJECT = (
    "(CASE WHEN release_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN app_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN packages IS NULL THEN 0 ELSE 1 END) = 1"
)


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as b:
        b.add_column(sa.Column("packages", sa.JSON, nullable=True))
        b.drop_constraint("ck_rollouts_one_target", type_="check")
        b.create_check_constraint("ck_rollouts_one_target", ONE_SUBJECT)
    with op.batch_alter_table("actions") as b:
        b.drop_constraint("ck_actions_one_target", type_="check")
        b.create_check_constraint("ck_actions_one_target", "release_id IS NULL OR app_id IS NULL")


def downgrade() -> None:
    for table in ("actions", "rollouts"):  # package rollouts cannot be expressed before this revision
        op.execute(sa.text(f"DELETE FROM {table} WHERE release_id IS NULL AND app_id IS NULL"))
    with op.batch_alter_table("actions") as b:
        b.drop_constraint("ck_actions_one_target", type_="check")
        b.create_check_constraint("ck_actions_one_target", "(release_id IS NULL) <> (app_id IS NULL)")
    with op.batch_alter_table("rollouts") as b:
        b.drop_constraint("ck_rollouts_one_target", type_="check")
        b.create_check_constraint("ck_rollouts_one_target", "(release_id IS NULL) <> (app_id IS NULL)")
        b.drop_column("packages")
