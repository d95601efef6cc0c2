"""Build records in the state database (``lrelease build``; lrelease/builds.py makes them), mixed
into :class:`~lrelease.state.StateStore` as the release policies' records are.

One row per build version, never rewritten: its artifact's sha256 and its provenance (repository,
branch, commit, tags, the branch point, the commits cherry-picked and reverted on the branch since,
who built it and when). Times are ISO 8601 UTC, as everywhere in the store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lrelease import secrets
from lrelease.statedb import StateError, builds as builds_t


@dataclass(frozen=True)
class BuildRecord:
    version: str
    sha256: str
    artifact: str  # the artifact's file name in the artifacts store
    repository: str
    branch: str | None
    commit: str
    kind: str = "release"  # release, or feature (a feature branch's build, `deploy --branch`)
    tags: tuple[str, ...] = ()
    branch_point: str | None = None  # where the branch left the integration branch
    picks: tuple[dict[str, str], ...] = ()  # {commit, from, subject}: cherry-picked (-x) since the branch point
    reverts: tuple[dict[str, str], ...] = ()  # {commit, reverts, subject}: reverts since the branch point
    built_by: str = ""
    built_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sha256": self.sha256, "artifact": self.artifact,
                "repository": self.repository, "branch": self.branch, "commit": self.commit, "kind": self.kind,
                "tags": list(self.tags), "branch_point": self.branch_point, "picks": [dict(p) for p in self.picks],
                "reverts": [dict(r) for r in self.reverts], "built_by": self.built_by, "built_at": self.built_at}


class BuildRecords:
    """Builds; a mixin of StateStore (its connection, writes and clock)."""

    def record_build(self, build: BuildRecord) -> BuildRecord:
        """Register ``build`` (built now, by ``build.built_by``); a version recorded before is a
        StateError (exit 2): a build id names one artifact for good."""
        try:
            with self._write() as db:  # type: ignore[attr-defined]
                db.execute(sa.insert(builds_t).values(
                    version=build.version, sha256=build.sha256, artifact=build.artifact,
                    repository=build.repository, branch=build.branch, commit_sha=build.commit, kind=build.kind,
                    tags=json.dumps(list(build.tags)), branch_point=build.branch_point,
                    picks=json.dumps([dict(p) for p in build.picks]),
                    reverts=json.dumps([dict(r) for r in build.reverts]),
                    built_by=secrets.scrub(build.built_by), built_at=self.now()))  # type: ignore[attr-defined]
        except IntegrityError:
            raise StateError(f"build {build.version} is recorded already; give another --version") from None
        found = self.build_record(build.version)
        assert found is not None
        return found

    def build_record(self, version: str) -> BuildRecord | None:
        row = self._db.execute(sa.select(builds_t).where(builds_t.c.version == version)).fetchone()  # type: ignore[attr-defined]
        return _record(row) if row is not None else None

    def build_records(self, limit: int = 50) -> list[BuildRecord]:
        """The newest builds first."""
        rows = self._db.execute(sa.select(builds_t).order_by(builds_t.c.seq.desc()).limit(limit))  # type: ignore[attr-defined]
        return [_record(r) for r in rows]


def _record(row: Any) -> BuildRecord:
    return BuildRecord(version=row.version, sha256=row.sha256, artifact=row.artifact, repository=row.repository,
                       branch=row.branch, commit=row.commit_sha, kind=row.kind, tags=tuple(json.loads(row.tags)),
                       branch_point=row.branch_point, picks=tuple(json.loads(row.picks)),
                       reverts=tuple(json.loads(row.reverts)), built_by=row.built_by, built_at=row.built_at)
