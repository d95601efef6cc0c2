"""rollouts.seq: an explicit insertion order (schema_version 3).

Roll-outs that started in the same millisecond were ordered by SQLite's rowid; PostgreSQL has
none. ``seq`` is set by the database on insert (an identity column on PostgreSQL; on SQLite the
row's rowid, by a trigger), and existing rows keep their order.

Revision ID: 0002_rollout_seq
Revises: 0001_baseline
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_rollout_seq"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.add_column("rollouts", sa.Column("seq", sa.BigInteger))
        op.execute("UPDATE rollouts SET seq = rowid")
        op.execute("CREATE TRIGGER rollouts_seq AFTER INSERT ON rollouts WHEN NEW.seq IS NULL"
                   " BEGIN UPDATE rollouts SET seq = NEW.rowid WHERE rowid = NEW.rowid; END")
    else:
        op.add_column("rollouts", sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False))
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("lrelease does not downgrade its state database: restore a backup")
