"""Action references checked once per statement on PostgreSQL, not once per row.

A rollout to 100,000 devices inserts 100,000 action rows in one statement; the foreign keys of `device_id` and
`rollout_id` each ran a locking lookup per row (1.3 s of a 2.5 s insert on the development machine). They are
replaced by triggers with the same guarantees, set-based:

- after an INSERT into `actions`, one anti-join refuses the statement (SQLSTATE 23503, foreign_key_violation) if a
  referenced device or rollout is missing. Instead of a row lock per referenced device (locking 100,000 device rows
  alone took 0.5 s: each lock writes its row), an advisory lock orders it against deletes: inserts take it shared,
  the delete triggers below exclusive, so either the insert sees the device gone or the delete sees the new actions;
- `device_id` and `rollout_id` of an action cannot change (no code changes them; a row trigger refuses it);
- after a DELETE from `devices` or `rollouts`, one statement deletes their actions (ON DELETE CASCADE), under the
  exclusive advisory lock.

SQLite keeps its foreign keys (the embedded database is not the one at scale).

Revision ID: 0026
Revises: 0025
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

# The advisory lock that orders inserts of actions (shared) against deletes of devices and rollouts (exclusive).
ACTION_REFS_LOCK = 0x42484B01  # "BHK" 1

_UP = """
CREATE FUNCTION bulkhead_actions_check_refs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing integer;
BEGIN
    -- Shared: inserts of actions do not wait for each other, only for a delete of devices or rollouts in progress.
    PERFORM pg_advisory_xact_lock_shared(%(key)d);
    SELECT count(*) INTO missing FROM (SELECT DISTINCT device_id FROM new_actions) n
        WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = n.device_id);
    IF missing > 0 THEN
        RAISE EXCEPTION 'insert on table "actions" violates foreign key: % device(s) do not exist', missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'actions', COLUMN = 'device_id';
    END IF;
    SELECT count(*) INTO missing FROM (SELECT DISTINCT rollout_id FROM new_actions) n
        WHERE NOT EXISTS (SELECT 1 FROM rollouts r WHERE r.id = n.rollout_id);
    IF missing > 0 THEN
        RAISE EXCEPTION 'insert on table "actions" violates foreign key: % rollout(s) do not exist', missing
            USING ERRCODE = 'foreign_key_violation', TABLE = 'actions', COLUMN = 'rollout_id';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER actions_check_refs AFTER INSERT ON actions
    REFERENCING NEW TABLE AS new_actions FOR EACH STATEMENT EXECUTE FUNCTION bulkhead_actions_check_refs();

CREATE FUNCTION bulkhead_actions_keep_refs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.device_id IS DISTINCT FROM OLD.device_id OR NEW.rollout_id IS DISTINCT FROM OLD.rollout_id THEN
        RAISE EXCEPTION 'an action''s device_id and rollout_id do not change' USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER actions_keep_refs BEFORE UPDATE OF device_id, rollout_id ON actions
    FOR EACH ROW EXECUTE FUNCTION bulkhead_actions_keep_refs();

""".replace("%(key)d", str(ACTION_REFS_LOCK))

# The cascade of a delete from `devices` (column device_id) or `rollouts` (rollout_id). Exclusive lock: an insert of
# actions that checked its references before this delete committed has committed by now, and the DELETE's snapshot
# sees its rows; one that checks later sees the rows gone. Nothing deleted: no lock (it would be held to the end of
# the deleting transaction).
_CASCADE = """
CREATE FUNCTION bulkhead_{one}_actions_cascade() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM gone) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({key});
    DELETE FROM actions WHERE {one}_id IN (SELECT id FROM gone);
    RETURN NULL;
END $$;

CREATE TRIGGER {table}_delete_actions AFTER DELETE ON {table}
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION bulkhead_{one}_actions_cascade();
"""
_CASCADES = {"device": "devices", "rollout": "rollouts"}

_DOWN = """
DROP TRIGGER rollouts_delete_actions ON rollouts;
DROP TRIGGER devices_delete_actions ON devices;
DROP TRIGGER actions_keep_refs ON actions;
DROP TRIGGER actions_check_refs ON actions;
DROP FUNCTION bulkhead_rollout_actions_cascade();
DROP FUNCTION bulkhead_device_actions_cascade();
DROP FUNCTION bulkhead_actions_keep_refs();
DROP FUNCTION bulkhead_actions_check_refs();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE actions DROP CONSTRAINT IF EXISTS actions_device_id_fkey")
    op.execute("ALTER TABLE actions DROP CONSTRAINT IF EXISTS actions_rollout_id_fkey")
    op.execute(_UP)
    for one, table in _CASCADES.items():
        op.execute(_CASCADE.format(one=one, table=table, key=ACTION_REFS_LOCK))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_DOWN)
    op.create_foreign_key("actions_device_id_fkey", "actions", "devices", ["device_id"], ["id"], ondelete="CASCADE")
    op.create_foreign_key("actions_rollout_id_fkey", "actions", "rollouts", ["rollout_id"], ["id"], ondelete="CASCADE")
