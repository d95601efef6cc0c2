"""Two roll-out statuses (schema_version 5): ``paused`` (its deploy window closed; `resume` goes on
in the next one) and ``awaiting_promotion`` (a `pause` of its waves; `promote` goes on, `abort`
rolls back). See lrelease/window.py and docs/design.md, "Release policies".

``rollouts.status`` has a CHECK constraint listing the statuses. PostgreSQL drops and adds it;
SQLite cannot alter a constraint, so the table is rebuilt from its own CREATE statement with the
new list (created aside, copied, dropped, renamed; the caller has turned foreign keys off and
legacy renames on, so the other tables' references stay as they are), and its index and the
``seq`` trigger of 0002 are made again.

Revision ID: 0004_rollout_pauses
Revises: 0003_release_policies
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0004_rollout_pauses"
down_revision = "0003_release_policies"
branch_labels = None
depends_on = None

# Frozen copies: later revisions change these, never this one.
OLD_STATUSES = ("running", "succeeded", "rolled_back", "rollback_failed", "halted", "interrupted", "refused",
                "crashed", "lock_lost")
STATUSES = (*OLD_STATUSES, "paused", "awaiting_promotion")
_STATUS_CHECK = re.compile(r"status\s+IN\s*\(([^)]*)\)", re.IGNORECASE)


def _check(values: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        create = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'rollouts'").scalar()
        found = _STATUS_CHECK.findall(create)
        if len(found) != 1 or {v.strip().strip("'") for v in found[0].split(",")} != set(OLD_STATUSES):
            raise RuntimeError(f"rollouts: the status constraint is not the one expected ({_check(OLD_STATUSES)})")
        columns = ", ".join(r[1] for r in bind.exec_driver_sql("PRAGMA table_info(rollouts)"))
        aside = _STATUS_CHECK.sub(_check(STATUSES), create)
        aside = re.sub(r"CREATE TABLE\s+\"?rollouts\"?", "CREATE TABLE rollouts_0004", aside, count=1)
        op.execute(aside)
        op.execute(f"INSERT INTO rollouts_0004 ({columns}) SELECT {columns} FROM rollouts")
        op.execute("DROP TABLE rollouts")
        op.execute("ALTER TABLE rollouts_0004 RENAME TO rollouts")
        op.create_index("rollouts_by_env", "rollouts", ["env", "started_at"])
        op.execute("CREATE TRIGGER rollouts_seq AFTER INSERT ON rollouts WHEN NEW.seq IS NULL"
                   " BEGIN UPDATE rollouts SET seq = NEW.rowid WHERE rowid = NEW.rowid; END")
    else:
        names = bind.execute(sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'rollouts'::regclass AND contype = 'c'"
            " AND pg_get_constraintdef(oid) LIKE '%status%'")).scalars().all()
        for name in names:
            op.drop_constraint(name, "rollouts", type_="check")
        op.create_check_constraint("rollouts_status_check", "rollouts", _check(STATUSES))
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("lrelease does not downgrade its state database: restore a backup")
