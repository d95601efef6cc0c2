"""Builds with provenance (schema_version 6): each build ``lrelease build`` made, with its
artifact's sha256 and where it came from (repository, branch, commit, tags, the branch point, the
commits cherry-picked and reverted on the branch since, who built it and when). A deploy of a
build whose artifact no longer has the recorded sha256 is refused. See lrelease/builds.py.

Revision ID: 0005_builds
Revises: 0004_rollout_pauses
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_builds"
down_revision = "0004_rollout_pauses"
branch_labels = None
depends_on = None


def text(name: str, nullable: bool = True, default: str | None = None) -> sa.Column:
    return sa.Column(name, sa.Text, nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        text("version", False), text("sha256", False), text("artifact", False), text("repository", False),
        text("branch"), text("commit_sha", False), text("tags", False, "[]"), text("branch_point"),
        text("picks", False, "[]"), text("reverts", False, "[]"), text("kind", False, "release"),
        text("built_by", False), text("built_at", False),
        sa.UniqueConstraint("version", name="builds_version_unique"),
        sqlite_autoincrement=True,
    )
    op.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def downgrade() -> None:
    raise NotImplementedError("lrelease does not downgrade its state database: restore a backup")
