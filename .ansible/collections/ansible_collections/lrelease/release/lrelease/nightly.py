"""``lrelease nightly``: what automation does to each environment on a cron or systemd timer run.

For each environment (all, or those asked for), in dependency order (an environment another one
``requires`` comes first), one :class:`Step`:

- **skip** when automation is off there (``environments.<env>.nightly``, default false), the
  environment is paused (``lrelease pause``), or its deploy window is closed now;
- **resume** its roll-out ``paused`` by a window that closed (any other unfinished roll-out:
  halted, interrupted, awaiting promotion... is a human's decision: skip);
- **deploy**, on an environment another one requires (Next): the newest build of the artifacts
  store not yet tried there; on an environment with ``requires:`` (production): the newest build
  proven on the required environment (:func:`lrelease.policies.next_evidence`) not yet tried there;
- **none** otherwise (up to date, nothing proven yet, or an environment neither requiring nor
  required: nightly only resumes there).

**Newest**: the builds of the artifacts store (source ``dir``: ``<app>-<build>.<format>`` with
its ``.sha256``; source ``url``: the ``.sha256`` files of ``checksums``) in version order
(``packaging.version``, PEP 440: ``1.10.0`` after ``1.9.0``, ``1.7.0rc1`` before ``1.7.0``) when
every build name parses as a version, else by the file's modification time (then the name).
**Tried**: a build whose deploy (or resume) on the environment ever ran (anything but refused).
Walking from the newest build down, the first build tried there ends the walk: nightly never goes
back to an older build, and never retries a build that failed or was rolled back there (a human
deploys it again).

Pure decisions over the config, the state store and a clock: no host is read, nothing is
written; the CLI (lrelease/cli/nightly.py) runs the steps through :class:`lrelease.rollout.Releaser`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from lrelease import policies
from lrelease.config import BUILD_RE, EnvironmentConfig, ProjectConfig
from lrelease.state import StateStore

__all__ = ["Step", "actor", "builds", "decide", "order"]

ACTOR = "nightly"


def actor() -> str:
    """Who nightly runs as: ``$LRELEASE_USER``, else ``nightly`` (the release captain rule applies to it)."""
    return os.environ.get("LRELEASE_USER", "").strip() or ACTOR


@dataclass(frozen=True)
class Step:
    """What nightly does (or would do) on one environment: ``action`` is ``deploy``, ``resume``,
    ``skip`` (``reason`` says which rule: automation_off, env_paused, window_closed, needs_human)
    or ``none`` (``reason``: up_to_date, not_proven, no_builds, ...); ``detail`` one line for a human."""

    env: str
    action: str
    reason: str
    detail: str
    build: str | None = None
    resumes: str | None = None  # the paused roll-out a resume continues
    evidence: dict[str, Any] = field(default_factory=dict)  # Next's evidence of the build deployed

    def to_dict(self) -> dict[str, Any]:
        out = {"env": self.env, "action": self.action, "reason": self.reason, "detail": self.detail,
               "build": self.build}
        if self.resumes:
            out["resumes"] = self.resumes
        if self.evidence:
            out["evidence"] = self.evidence
        return out


def order(project: ProjectConfig, only: tuple[str, ...] = ()) -> list[EnvironmentConfig]:
    """The environments (``only`` those named, each checked), an environment another one requires
    before it; otherwise in the order of lrelease.yml. (config.py refuses loops of ``requires``.)"""
    envs = [project.environment(name) for name in only] if only else list(project.environments)
    by_name = {e.name: e for e in project.environments}

    def depth(env: EnvironmentConfig) -> int:
        n = 0
        while env.requires is not None and n < len(by_name):
            env, n = by_name[env.requires.env], n + 1
        return n

    seen: set[str] = set()
    unique = [e for e in envs if not (e.name in seen or seen.add(e.name))]  # type: ignore[func-returns-value]
    return sorted(unique, key=depth)  # stable: the file's order within a depth


def builds(project: ProjectConfig) -> list[str]:
    """The builds of the artifacts store, newest first (see the module docstring); empty when the
    store cannot be listed (source ``url`` without ``checksums``, or a missing directory)."""
    src = project.artifacts
    folder, suffix = (src.path, "") if src.source == "dir" else (src.checksums, ".sha256")
    if folder is None or not folder.is_dir():
        return []
    prefix, tail = f"{project.app}-", src.file_name(project.app, "")[len(project.app) + 1:] + suffix
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(tail)) or not path.is_file():
            continue
        build = name[len(prefix):len(name) - len(tail)] if tail else name[len(prefix):]
        if not BUILD_RE.fullmatch(build) or (src.source == "dir" and not path.with_name(name + ".sha256").is_file()):
            continue
        found[build] = path
    return newest_first({b: p.stat().st_mtime for b, p in found.items()})


def newest_first(mtimes: dict[str, float]) -> list[str]:
    """Build names newest first: by version when every name is one (PEP 440), else by mtime, then name."""
    try:
        versions = {b: Version(b) for b in mtimes}
    except InvalidVersion:
        return sorted(mtimes, key=lambda b: (mtimes[b], b), reverse=True)
    return sorted(mtimes, key=lambda b: (versions[b], b), reverse=True)


def _tried(store: StateStore, env: str, build: str) -> str | None:
    """How the newest roll-out of ``build`` on ``env`` ended (None: never tried there)."""
    rows = [r for r in store.rollouts_from(env, build)
            if r.build == build and r.action in ("deploy", "resume") and r.status != "refused"]
    return rows[-1].status if rows else None


def decide(project: ProjectConfig, store: StateStore, env: EnvironmentConfig, now: datetime,
           candidates: list[str]) -> Step:
    """The step for ``env`` at ``now``; ``candidates``: :func:`builds` (newest first)."""
    name = env.name
    if not env.nightly:
        return Step(name, "skip", "automation_off",
                    f"nightly is off for {name} (environments.{name}.nightly: true turns it on)")
    paused = store.env_pause(name)
    if paused is not None:
        return Step(name, "skip", "env_paused", f"environment {name} is paused by {paused.paused_by} since "
                                                f"{policies.when(paused.paused_at)} ({paused.reason})")
    if env.window is not None and not env.window.is_open(now):
        opens = env.window.next_open(now)
        return Step(name, "skip", "window_closed",
                    f"{name}'s deploy window is closed at {env.window.local(now)} (window: {env.window.describe()})"
                    + (f"; it next opens {env.window.local(opens)}" if opens else ""))
    left = store.resumable(name)
    if left is not None and left.status == "paused":
        return Step(name, "resume", "paused_rollout", f"resume roll-out {left.id} of {left.build}, paused when "
                                                      "its window closed", build=left.build, resumes=left.id)
    if left is not None:
        return Step(name, "skip", "needs_human", f"roll-out {left.id} of {left.build} is {left.status}: a human "
                                                 f"decides (`lrelease status --env {name}`, then resume, promote, "
                                                 "abort or rollback)", build=left.build)
    required = any(e.requires is not None and e.requires.env == name for e in project.environments)
    if env.requires is None and not required:
        return Step(name, "none", "no_rule", f"{name} neither requires another environment nor is required by one: "
                                             "nightly only resumes a paused roll-out there")
    if not candidates:
        return Step(name, "none", "no_builds", "no build in the artifacts store")
    unproven: list[str] = []
    for build in candidates:
        status = _tried(store, name, build)
        if status is not None:
            detail = (f"{build} is already on {name}" if status == "succeeded"
                      else f"{build}'s last roll-out on {name} ended {status}; nightly does not retry it")
            if unproven:
                detail += f" (newer: {'; '.join(unproven)})"
            return Step(name, "none", "up_to_date" if status == "succeeded" else "not_retried", detail, build=build)
        if env.requires is None:
            return Step(name, "deploy", "newest_build", f"{build}: the newest build, not yet on {name}", build=build)
        evidence = policies.next_evidence(store, build, env.requires, now=now)
        if evidence.proven:
            return Step(name, "deploy", "proven", f"{build}: the newest build proven on {env.requires.env} "
                                                   f"({evidence.detail})", build=build, evidence=evidence.to_dict())
        unproven.append(evidence.detail)
    return Step(name, "none", "not_proven", f"no build proven on {env.requires.env} and not yet on {name}: "
                                            + "; ".join(unproven[:3]))

