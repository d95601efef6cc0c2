"""Orchestration: plan -> deploy.yml -> (on failure) rollback.yml -> record.

The playbooks do the work and hold the safety (waves, gate, block/rescue); this module
prepares their inputs, follows their events, decides what to roll back from those events,
and records every step in the state database. It never prints and never exits: callers get
an :class:`Outcome` (or a typed error) and the CLI renders it.
"""

from __future__ import annotations

import getpass
import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lrelease.apm.scrape import ReadingStore
from lrelease.config import ArtifactRef, EnvironmentConfig, ProjectConfig
from lrelease.errors import ExitCode, LreleaseError
from lrelease.fleet import write_inventories
from lrelease.plan import Plan, estimate_seconds, plan_waves, skip_done
from lrelease.runner import EventKind, ProgressEvent, RunResult, run_playbook
from lrelease.state import StateStore, new_rollout_id

EventSink = Callable[[ProgressEvent], None]

# Host phase recorded in the state database for each progress event.
_PHASES = {
    EventKind.HOST_STAGED: "staged",
    EventKind.HOST_SWITCHED: "switched",
    EventKind.HOST_REVERTED: "reverted",
    EventKind.GATE_PASSED: "gate_passed",
    EventKind.GATE_FAILED: "gate_failed",
    EventKind.HOST_ROLLED_BACK: "rolled_back",
    EventKind.HOST_UNREACHABLE: "unreachable",
    EventKind.HOST_FAILED: "failed",
}


class ChecksumMismatch(LreleaseError):
    """The artifact on the controller is not the build it claims to be; nothing was touched."""

    exit_code = ExitCode.USAGE


class NothingToResume(LreleaseError):
    exit_code = ExitCode.USAGE


class NoRollbackTarget(LreleaseError):
    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Outcome:
    """What a deploy, rollback or resume did; rendered as text or JSON by the CLI."""

    rollout_id: str
    env: str
    build: str
    action: str
    status: str
    exit_code: ExitCode
    message: str
    switched: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()
    gates: tuple[dict[str, Any], ...] = ()
    plan: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit_code"] = int(self.exit_code)
        return data


@dataclass(frozen=True)
class HostState:
    host: str
    build: str | None
    sha256: str | None
    previous: str | None


@dataclass(frozen=True)
class FleetStatus:
    env: str
    hosts: tuple[HostState, ...]
    unreachable: tuple[str, ...]
    consistent: bool
    interrupted: tuple[dict[str, Any], ...]
    last: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_actor() -> str:
    return os.environ.get("LRELEASE_ACTOR") or getpass.getuser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Releaser:
    """Deploys, rolls back and resumes one project's environments."""

    def __init__(self, project: ProjectConfig, *, actor: str | None = None, on_event: EventSink | None = None,
                 cancel: Callable[[], bool] | None = None) -> None:
        self.project = project
        self.actor = actor or default_actor()
        self.on_event = on_event
        self.cancel = cancel
        self.store = StateStore(project.db_path)

    # -- inputs --------------------------------------------------------------------------
    def inventory(self, env: EnvironmentConfig) -> Path:
        """The environment's inventory: its own source, or one generated from the fleet file."""
        if env.inventory is not None:
            return env.inventory
        fleet = self.project.load_fleet()
        write_inventories(fleet, self.project.state_dir / "inventories")
        return self.project.state_dir / "inventories" / f"{env.name}.yml"

    def plan(self, env_name: str, *, done: tuple[str, ...] = ()) -> tuple[Plan, float]:
        env = self.project.environment(env_name)
        hosts = self.project.load_fleet().hosts(env.name)
        if not hosts:
            raise LreleaseError(f"{self.project.fleet}: no nodes in environment {env.name!r}")
        plan = plan_waves(hosts, env.waves)
        if done:
            plan = skip_done(plan, done)
        return plan, estimate_seconds(plan, env.bake_seconds)

    def artifact(self, build: str, sha256: str | None = None) -> ArtifactRef:
        """The build's artifact, its checksum verified on the controller before anything runs."""
        ref = self.project.artifact_for(build, sha256)
        if ref.path is not None:
            actual = sha256_of(ref.path)
            if actual != ref.sha256:
                raise ChecksumMismatch(f"{ref.path}: sha256 is {actual}, expected {ref.sha256}; "
                                       "refused before any host changed")
        return ref

    # -- deploy --------------------------------------------------------------------------
    def deploy(self, env_name: str, build: str, *, reason: str = "", sha256: str | None = None,
               resumes: str | None = None, done: tuple[str, ...] = ()) -> Outcome:
        # The scrape gate's readings of the hosts, shared by the gate tasks of this roll-out and
        # handed on to its resume (the last wave's baseline may lie before the halt); removed
        # once the roll-out has ended.
        rid = new_rollout_id()
        readings = self.readings_path(resumes or rid)
        outcome = self._deploy(env_name, build, rid, reason=reason, sha256=sha256, resumes=resumes, done=done,
                               readings=readings)
        if outcome.status in ("halted", "interrupted") and readings.exists():
            readings.replace(self.readings_path(rid))  # the same file unless this was a resume
        self.prune_readings()
        return outcome

    def readings_path(self, rollout_id: str) -> Path:
        return self.project.state_dir / "gate" / f"readings-{rollout_id}.json"

    def prune_readings(self) -> list[str]:
        """Remove the gate readings of every roll-out that can no longer be resumed (it ended,
        or a later roll-out or rollback of its environment superseded it); returns their ids."""
        gone = []
        for path in sorted((self.project.state_dir / "gate").glob("readings-*.json")):
            rid = path.stem[len("readings-"):]
            try:
                env = self.store.rollout(rid).env
            except LreleaseError:  # not in this database: not ours to keep
                env = None
            current = self.store.resumable(env) if env else None
            if current is None or current.id != rid:
                ReadingStore.discard(path)
                gone.append(rid)
        return gone

    def _deploy(self, env_name: str, build: str, rid: str, *, reason: str, sha256: str | None,
                resumes: str | None, done: tuple[str, ...], readings: Path) -> Outcome:
        env = self.project.environment(env_name)
        ref = self.artifact(build, sha256)
        plan, _ = self.plan(env.name, done=done)
        inventory = self.inventory(env)
        last = self.store.last_rollout(env.name, status="succeeded")
        action = "resume" if resumes else "deploy"
        with self.store.acquire_lock(env.name, rid):
            self.store.start_rollout(env.name, build, action, self.actor, reason=reason, rollout_id=rid,
                                     previous_build=last.build if last else None, plan=plan.to_dict(), resumes=resumes)
            if not plan.waves:
                return self._finish(rid, env.name, build, action, "succeeded", ExitCode.OK,
                                    "every host is already on this build", RunResult(), plan)
            extravars = {
                **env.playbook_vars(), **ref.playbook_vars(),
                "lrelease_waves": list(plan.serial), "lrelease_hosts": env.name,
                "lrelease_rollout_id": rid, "lrelease_actor": self.actor,
            }
            if env.gate is not None:
                extravars["lrelease_gate_readings"] = str(readings)
            result = run_playbook("deploy.yml", inventory, extravars, limit=",".join(plan.hosts),
                                  on_event=self._recorder(rid), cancel=self.cancel)
            if result.ok:
                return self._finish(rid, env.name, build, action, "succeeded", ExitCode.OK,
                                    f"{build} is live on {len(plan.hosts)} host(s)", result, plan)
            if result.canceled:
                return self._finish(rid, env.name, build, action, "interrupted", ExitCode.INTERRUPTED,
                                    "interrupted: every host is on a complete build; `lrelease resume` continues",
                                    result, plan)
            if _halted(result):
                hosts = sorted(g["host"] for g in result.gates if g.get("verdict") == "inconclusive")
                return self._finish(rid, env.name, build, action, "halted", ExitCode.HALTED,
                                    f"halted for a human: the gate could not decide on {', '.join(hosts)} "
                                    "(every host is on a complete build; `lrelease resume` continues, "
                                    "`lrelease rollback` undoes)", result, plan)
            return self._roll_back_after_failure(rid, env, inventory, build, action, result, plan)

    def _roll_back_after_failure(self, rid: str, env: EnvironmentConfig, inventory: Path, build: str, action: str,
                                 result: RunResult, plan: Plan) -> Outcome:
        why = _failure_summary(result)
        live = sorted(result.live_on_new_build)
        if not live:
            return self._finish(rid, env.name, build, action, "rolled_back", ExitCode.ROLLED_BACK,
                                f"roll-out failed before any host switched ({why}); nothing to roll back",
                                result, plan)
        extravars = {**env.playbook_vars(), "lrelease_rollback_build": build, "lrelease_hosts": env.name,
                     "lrelease_rollout_id": rid, "lrelease_actor": self.actor}
        rb = run_playbook("rollback.yml", inventory, extravars, limit=",".join(live), on_event=self._recorder(rid))
        merged = RunResult(status=result.status, switched=result.switched, reverted=result.reverted,
                           failed=result.failed | rb.failed, unreachable=result.unreachable | rb.unreachable,
                           rolled_back=rb.rolled_back, gates=result.gates)
        if rb.ok:
            return self._finish(rid, env.name, build, action, "rolled_back", ExitCode.ROLLED_BACK,
                                f"roll-out failed ({why}); rolled back {', '.join(live)}", merged, plan)
        return self._finish(rid, env.name, build, action, "rollback_failed", ExitCode.ROLLBACK_FAILED,
                            f"roll-out failed ({why}) and the rollback failed too ({_failure_summary(rb)}): "
                            "a human is needed", merged, plan)

    def resume(self, env_name: str, *, reason: str = "") -> Outcome:
        env = self.project.environment(env_name)
        old = self.store.resumable(env.name)
        if old is None:
            raise NothingToResume(f"nothing to resume in {env.name}: no interrupted or halted roll-out")
        # Hosts that passed their gate are done; a host switched but not yet judged goes
        # through the gate again (the switch role leaves a host already on the build alone).
        done = tuple(self.store.hosts_in_phase(old.id, "gate_passed"))
        if old.status == "running":  # its process died: say so in the history
            self.store.finish_rollout(old.id, "interrupted", int(ExitCode.INTERRUPTED))
        return self.deploy(env.name, old.build, reason=reason or f"resume of {old.id}", resumes=old.id, done=done)

    # -- rollback ------------------------------------------------------------------------
    def rollback(self, env_name: str, *, to: str | None = None, reason: str = "") -> Outcome:
        """Every host of the environment back to its previous build (or to ``to``), in parallel
        unless the environment asks for serial rollbacks."""
        outcome = self._rollback(env_name, to=to, reason=reason)
        self.prune_readings()  # a halted roll-out undone: its gate readings are of no more use
        return outcome

    def _rollback(self, env_name: str, *, to: str | None, reason: str) -> Outcome:
        env = self.project.environment(env_name)
        inventory = self.inventory(env)
        extravars: dict[str, Any] = {**env.playbook_vars(), "lrelease_hosts": env.name, "lrelease_actor": self.actor}
        if to:
            extravars["lrelease_rollback_to"] = to
            last = self.store.last_rollout(env.name, status="succeeded")
            failed_build = last.build if last else ""
        else:
            failed_build = self._latest_build(env.name)
            if failed_build is None:
                raise NoRollbackTarget(f"no successful roll-out of {env.name} is recorded; "
                                       "say which build to go back to with --to BUILD")
            extravars["lrelease_rollback_build"] = failed_build
        rid = new_rollout_id()
        with self.store.acquire_lock(env.name, rid):
            self.store.start_rollout(env.name, to or failed_build, "rollback", self.actor, reason=reason,
                                     rollout_id=rid, previous_build=failed_build)
            extravars["lrelease_rollout_id"] = rid
            result = run_playbook("rollback.yml", inventory, extravars, on_event=self._recorder(rid), cancel=self.cancel)
            build = to or failed_build
            if result.ok:
                moved = sorted(result.rolled_back)
                msg = f"rolled back {', '.join(moved)}" if moved else "no host was on that build; nothing to do"
                return self._finish(rid, env.name, build, "rollback", "succeeded", ExitCode.OK, msg, result, None)
            if result.canceled:
                return self._finish(rid, env.name, build, "rollback", "interrupted", ExitCode.INTERRUPTED,
                                    "rollback interrupted", result, None)
            return self._finish(rid, env.name, build, "rollback", "rollback_failed", ExitCode.ROLLBACK_FAILED,
                                f"rollback failed ({_failure_summary(result)}): a human is needed", result, None)

    def _latest_build(self, env: str) -> str | None:
        """The build the environment was last deployed with (what a rollback undoes)."""
        last = self.store.last_rollout(env, status="succeeded")
        if last is not None and last.action == "rollback":
            raise NoRollbackTarget(f"the last change to {env} was already a rollback (to {last.build}); "
                                   "say which build to go to with --to BUILD")
        return last.build if last else None

    # -- status --------------------------------------------------------------------------
    def status(self, env_name: str) -> FleetStatus:
        env = self.project.environment(env_name)
        result = run_playbook("status.yml", self.inventory(env), {**env.playbook_vars(), "lrelease_hosts": env.name},
                              cancel=self.cancel)
        hosts = tuple(HostState(h, s.get("build"), s.get("sha256"), s.get("previous"))
                      for h, s in sorted(result.host_status.items()))
        builds = {(h.build, h.sha256) for h in hosts}
        last = self.store.last_rollout(env.name)
        return FleetStatus(
            env=env.name, hosts=hosts, unreachable=tuple(sorted(result.unreachable)),
            consistent=len(builds) == 1 and not result.unreachable,
            interrupted=tuple(r.to_dict() for r in self.store.interrupted(env.name)),
            last=last.to_dict() if last else None,
        )

    # -- recording -----------------------------------------------------------------------
    def _recorder(self, rid: str) -> EventSink:
        def record(event: ProgressEvent) -> None:
            phase = _PHASES.get(event.kind)
            if phase and event.host:
                if event.kind in (EventKind.GATE_PASSED, EventKind.GATE_FAILED):
                    self.store.record_gate(rid, event.wave or 0, event.host, str(event.detail.get("verdict")),
                                           dict(event.detail.get("evidence") or {}))
                self.store.record_host(rid, event.host, phase, dict(event.detail))
            if self.on_event is not None:
                self.on_event(event)
        return record

    def _finish(self, rid: str, env: str, build: str, action: str, status: str, code: ExitCode, message: str,
                result: RunResult, plan: Plan | None) -> Outcome:
        self.store.finish_rollout(rid, status, int(code))
        return Outcome(
            rollout_id=rid, env=env, build=build, action=action, status=status, exit_code=code, message=message,
            switched=tuple(sorted(result.switched)), rolled_back=tuple(sorted(result.rolled_back)),
            failed=tuple(sorted(result.failed)), unreachable=tuple(sorted(result.unreachable)),
            gates=tuple(result.gates), plan=plan.to_dict() if plan else {},
        )


def _halted(result: RunResult) -> bool:
    """The gate could not decide (and its policy says halt) and nothing else went wrong."""
    verdicts = {g.get("verdict") for g in result.gates}
    judged = {g["host"] for g in result.gates}
    return "inconclusive" in verdicts and "fail" not in verdicts and not (result.failed - judged) and not result.unreachable


def _failure_summary(result: RunResult) -> str:
    parts = []
    failed_gates = [g["host"] for g in result.gates if g.get("verdict") != "pass"]
    if failed_gates:
        parts.append(f"gate failed on {', '.join(sorted(set(failed_gates)))}")
    others = sorted(result.failed - set(failed_gates))
    if others:
        parts.append(f"failed on {', '.join(others)}")
    if result.unreachable:
        parts.append(f"unreachable: {', '.join(sorted(result.unreachable))}")
    if result.stats is None:
        parts.append("the playbook ended without its final stats" + (f": {result.error}" if result.error else ""))
    return "; ".join(parts) or f"ansible-runner status {result.status}"
