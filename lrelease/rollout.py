"""Orchestration: plan -> deploy.yml -> (on failure) rollback.yml -> record.

The playbooks do the work and hold the safety (waves, gate, block/rescue); this module
prepares their inputs, follows their events, decides what to roll back from those events,
and records every step in the state database. It never prints and never exits: callers get
an :class:`Outcome` (or a typed error) and the CLI renders it.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from lrelease import builds, policies, policystep, series
from lrelease.apm.scrape import ReadingStore, ScrapeSettings
from lrelease.config import BUILD_RE, ArtifactRef, EnvironmentConfig, ProjectConfig
from lrelease.errors import ConfigError, ExitCode, InternalError, LreleaseError
from lrelease.fleet import write_inventories
from lrelease.gate.wave import WaveBoard
from lrelease.notify import GATE, HALT, PAUSE, PAUSED_STATUSES, ROLLBACK, WAVE, Delivery, Notifier
from lrelease.plan import Estimate, GateTiming, Pace, Plan, estimate, plan_waves, skip_done
from lrelease.runner import EventKind, ProgressEvent, RunResult, StopRequest, run_playbook
from lrelease.state import LockHandle, LockLost, Rollout, StateStore, new_rollout_id, project_state
from lrelease.statedb import StateError

EventSink = Callable[[ProgressEvent], None]
log = logging.getLogger(__name__)

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


# Phases of a host that a roll-out moved onto its build (whatever happened to it afterwards).
_MOVED = ("switched", "gate_passed", "gate_failed")


class _Stop(StopRequest):
    """What a run polls: the caller's stop request (Ctrl-C, SIGTERM), and a stop at the next safe
    point once the lock is lost, so a holder that was paused past its TTL touches no new host.
    Each is the wrapper's stop file (``lrelease_stop_file``): no further wave starts, every host
    is on a complete build. The deploy window's close and a pause of the plan need no request:
    deploy.yml's check before each wave stops the run there itself (``lrelease_lock.closes_at``,
    ``lrelease_pause_before``), however late the wrapper reads its output, and says why
    (:func:`_window_closed`, :func:`_at_pause`)."""

    def __init__(self, caller: Callable[[], bool] | StopRequest | None, lock: LockHandle) -> None:
        self.caller, self.lock = caller, lock

    @property
    def caller_level(self) -> int:
        if isinstance(self.caller, StopRequest):
            return self.caller.level
        return self.CANCEL if self.caller is not None and self.caller() else 0

    @property  # type: ignore[override]
    def level(self) -> int:
        return max(self.caller_level, self.STOP if self.lock.lost is not None else 0)


# How deploy.yml's stop check names a stop at a pause of the waves (``lrelease_pause_before``).
PAUSE_STOP = "awaiting promotion:"


def _at_pause(result: RunResult) -> bool:
    """The run ended at a pause of its waves (deploy.yml's stop check said so)."""
    return result.stopped and result.stop_reason.startswith(PAUSE_STOP)


def _window_closed(result: RunResult) -> bool:
    """The run ended at a wave boundary because its deploy window closed (the check said so)."""
    return result.stopped and result.stop_reason.startswith(policystep.WINDOW_CLOSED)


def _pause_before(plan: Plan) -> list[str]:
    """The hosts after the plan's first pause (none: no pause): deploy.yml's
    ``lrelease_pause_before``, so the run ends before the first wave holding any of them."""
    return [h for wave in plan.waves[plan.pauses[0]:] for h in wave.hosts] if plan.pauses else []


def check_to(to: str | None) -> None:
    """A rollback target given by a user (--to) must be a build id: one line, exit 2."""
    if to is not None and not BUILD_RE.fullmatch(to):
        raise ConfigError("--to", "build", f"a build id (letters, digits, '.', '_', '+', '-'), got {to!r}")


def _still_held(lock: LockHandle) -> LockLost | None:
    """After a run: ask the store now (the heartbeat thread may not have beaten since a pause);
    returns the loss (also kept in ``lock.lost``), or None while the lock is ours."""
    if lock.lost is None:
        try:
            lock.heartbeat()
        except LockLost:
            pass  # heartbeat() kept it in lock.lost
    return lock.lost


def _test_crash(point: str) -> None:
    """Test-only: $LRELEASE_TEST_CRASH_AT names a point where the wrapper raises, to prove that a
    crash exits 70 and is recorded (tests/rollout/test_failure_paths.py). Unset in real use."""
    if os.environ.get("LRELEASE_TEST_CRASH_AT") == point:
        raise RuntimeError(f"test crash injected at {point}")


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
    app_stopped: tuple[str, ...] = ()  # first installs undone: nothing to go back to, app stopped, drained
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
    """Who runs it: $LRELEASE_ACTOR, else $LRELEASE_USER (the name the playbooks' policy step and
    `lrelease nightly` read too), else the login name."""
    return os.environ.get("LRELEASE_ACTOR") or os.environ.get("LRELEASE_USER") or getpass.getuser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Releaser:
    """Deploys, rolls back and resumes one project's environments."""

    def __init__(self, project: ProjectConfig, *, actor: str | None = None, on_event: EventSink | None = None,
                 cancel: Callable[[], bool] | None = None, verbosity: int = 0,
                 on_output: Callable[[str], None] | None = None, force_reason: str = "",
                 skip_next_reason: str = "", hotfix_reason: str = "") -> None:
        self.project = project
        # The release policies' overrides (lrelease/policies.py): --force, --skip-next and
        # --hotfix, each with the --reason it was given; empty: not asked for.
        self.force_reason, self.skip_next_reason = force_reason, skip_next_reason
        self.hotfix_reason = hotfix_reason
        # Ansible's -v count, and where its own output goes (nowhere by default): every playbook run
        self.ansible = {"verbosity": verbosity, "on_output": on_output}
        self.actor = actor or default_actor()
        self.on_event = on_event
        self.cancel = cancel
        self.state_problem = ""  # why the state database could not be read, when plan went on without it
        self.notifier: Notifier | None = None  # the operation's notifications (lrelease.notify), while it runs
        self.delivery = Delivery()  # what the last operation's notifications became

    @contextmanager
    def _notifying(self) -> Iterator[None]:
        """Notifications for one operation (deploy, rollback, resume; the outermost when they nest):
        channels read from the environment first (an unset variable: exit 2, nothing ran), then at
        the end a bounded wait for delivery (notify.DRAIN_SECONDS)."""
        if self.notifier is not None:
            yield
            return
        self.notifier = Notifier(self.project.notifications, where=str(self.project.path))
        try:
            yield
        except KeyboardInterrupt:  # the user wants out: a second, not the full wait
            self.notifier.drain_seconds = min(self.notifier.drain_seconds, 1.0)
            raise
        finally:
            notifier, self.notifier = self.notifier, None
            self.delivery = notifier.close()

    def _notify(self, kind: str, **fields: Any) -> None:
        if self.notifier is not None:
            self.notifier.send(kind, **fields)

    def _notify_begin(self, rid: str, env: str, build: str, action: str, reason: str) -> None:
        if self.notifier is not None:
            self.notifier.begin(rollout_id=rid, env=env, build=build, actor=self.actor, action=action, reason=reason)

    @cached_property
    def store(self) -> StateStore:
        """The state database, opened on first use: ``plan`` reads no host and needs no history,
        so a corrupt database stops it no more than it stops ``inventory generate``."""
        return StateStore(project_state(self.project.db_path))

    def readable_store(self) -> StateStore | None:
        """The state database, or None when it cannot be used (the reason in ``state_problem``)."""
        try:
            return self.store
        except StateError as exc:
            self.state_problem = str(exc)
            return None

    # -- inputs --------------------------------------------------------------------------
    def inventory(self, env: EnvironmentConfig) -> Path:
        """The environment's inventory: its own source, or one generated from the fleet file."""
        if env.inventory is not None:
            return env.inventory
        fleet = self.project.load_fleet()
        write_inventories(fleet, self.project.state_dir / "inventories")
        return self.project.state_dir / "inventories" / f"{env.name}.yml"

    def plan(self, env_name: str, *, done: tuple[str, ...] = ()) -> tuple[Plan, Estimate]:
        env = self.project.environment(env_name)
        hosts = self.project.load_fleet().hosts(env.name)
        if not hosts:
            raise LreleaseError(f"{self.project.fleet}: no nodes in environment {env.name!r}")
        plan = plan_waves(hosts, env.waves, env.pauses)
        if done:
            plan = skip_done(plan, done)
        store = self.readable_store()
        gate = GateTiming.for_environment(env, store.gate_history(env.name) if store else [])
        return plan, estimate(plan, gate, Pace.from_runs(store.recent_runs(env.name) if store else []))

    def artifact(self, build: str, sha256: str | None = None) -> ArtifactRef:
        """The build's artifact, its checksum verified on the controller before anything runs:
        against its ``.sha256`` (or ``sha256``), and against the record `lrelease build` made of it."""
        ref = self.project.artifact_for(build, sha256)
        actual = ref.sha256
        if ref.path is not None:
            actual = sha256_of(ref.path)
            if actual != ref.sha256:
                raise ChecksumMismatch(f"{ref.path}: sha256 is {actual}, expected {ref.sha256}; "
                                       "refused before any host changed")
        store = self.readable_store()  # (a dry run goes on without it; a deploy stops when it opens it)
        record = store.build_record(build) if store is not None else None
        if record is not None and record.sha256 != actual:
            raise ChecksumMismatch(f"{ref.path or ref.url}: sha256 is {actual}, but build {build} was recorded with "
                                   f"{record.sha256} (commit {record.commit[:12]}, built by {record.built_by} at "
                                   f"{record.built_at}); refused before any host changed")
        return ref

    # -- deploy --------------------------------------------------------------------------
    def deploy(self, env_name: str, build: str, *, reason: str = "", sha256: str | None = None,
               resumes: str | None = None, done: tuple[str, ...] = (),
               halted: dict[str, dict[str, Any]] | None = None) -> Outcome:
        # The scrape gate's readings of the hosts, shared by the gate tasks of this roll-out and
        # handed on to its resume (the last wave's baseline may lie before the halt); removed
        # once the roll-out has ended.
        rid = new_rollout_id()
        readings = self.readings_path(resumes or rid)
        with self._notifying():
            outcome = self._deploy(env_name, build, rid, reason=reason, sha256=sha256, resumes=resumes, done=done,
                                   readings=readings, halted=halted or {})
        if outcome.status in ("halted", "interrupted", "paused", "awaiting_promotion") and readings.exists():
            readings.replace(self.readings_path(rid))  # the same file unless this was a resume
        self.prune_readings()
        return outcome

    def readings_path(self, rollout_id: str) -> Path:
        return self.project.state_dir / "gate" / f"readings-{rollout_id}.json"

    def _run_dir(self, rollout_id: str, playbook: str) -> Path:
        """Where a failed run of ``playbook`` keeps its scrubbed output (lrelease.failedruns)."""
        return self.project.state_dir / "runs" / rollout_id / playbook

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
                if env:
                    self._keep_series(env, rid, path)
                ReadingStore.discard(path)
                WaveBoard.discard(path.with_name(path.name + ".waves"))  # results a dead task never took
                gone.append(rid)
        return gone

    def _keep_series(self, env: str, rollout_id: str, readings: Path) -> None:
        """Keep the roll-out's series for its report (lrelease/series.py) before its readings go;
        a report's data never fails a roll-out: what cannot be kept is logged and left out."""
        try:
            settings = series.settings_for(self.project.environment(env).gate) or ScrapeSettings()
            series.keep(readings, self.project.state_dir, rollout_id, settings)
        except (LreleaseError, OSError, ValueError) as exc:
            log.warning("the series of roll-out %s were not kept: %s", rollout_id, exc)

    def _deploy(self, env_name: str, build: str, rid: str, *, reason: str, sha256: str | None,
                resumes: str | None, done: tuple[str, ...], readings: Path,
                halted: dict[str, dict[str, Any]]) -> Outcome:
        env = self.project.environment(env_name)
        ref = self.artifact(build, sha256)
        plan, _ = self.plan(env.name, done=done)
        inventory = self.inventory(env)
        last = self.store.last_rollout(env.name, status="succeeded")
        action = "resume" if resumes else "deploy"
        with self.store.acquire_lock(env.name, rid) as lock:
            policy = self._admit(env, build, action, rid, reason, lock)
            self.store.start_rollout(env.name, build, action, self.actor, reason=reason, rollout_id=rid,
                                     previous_build=last.build if last else None, plan=plan.to_dict(), resumes=resumes,
                                     lock=lock, policy=policy)
            self._notify_begin(rid, env.name, build, action, reason)
            return self._guarded(rid, env.name, build, action, plan, lock,
                                 lambda: self._run_deploy(rid, env, inventory, ref, build, action, plan, readings, lock,
                                                          halted))

    def _run_deploy(self, rid: str, env: EnvironmentConfig, inventory: Path, ref: ArtifactRef, build: str,
                    action: str, plan: Plan, readings: Path, lock: LockHandle,
                    halted: dict[str, dict[str, Any]]) -> Outcome:
        if not plan.waves:
            return self._finish(rid, env.name, build, action, "succeeded", ExitCode.OK,
                                "every host is already on this build", RunResult(), plan)
        extravars = {
            **env.playbook_vars(), **ref.playbook_vars(),
            "lrelease_waves": list(plan.serial), "lrelease_hosts": env.name,
            "lrelease_rollout_id": rid, "lrelease_actor": self.actor,
            # db: the SQLite file; "" for a server, whose URL (it may hold a password) the lookup
            # reads from the environment ansible-playbook inherits (LRELEASE_STATE_URL or _FILE)
            "lrelease_lock": self._lock_var(lock),
        }
        if env.gate is not None:
            extravars["lrelease_gate_readings"] = str(readings)
            if halted:
                extravars["lrelease_gate_continue"] = halted
            since = self._past_since(env.name, rid)
            if since is not None:
                extravars["lrelease_gate_past_since"] = since
        # The window this roll-out runs in closes: it stops at the next wave boundary (none: no
        # window, or a hot-fix outside it); a pause of the plan: it stops before the wave after it.
        closes_at = policies.window_closes(env, self.store.clock())
        stop = _Stop(self.cancel, lock)
        if closes_at is not None:  # the playbook's check before each wave (the lrelease_lock lookup) reads it
            extravars["lrelease_lock"]["closes_at"] = self._on_controller_clock(closes_at)
        if plan.pauses:
            extravars["lrelease_pause_before"] = _pause_before(plan)
        result = run_playbook("deploy.yml", inventory, extravars, limit=",".join(plan.hosts),
                              on_event=self._recorder(rid, lock), cancel=stop,
                              keep_failed=self._run_dir(rid, "deploy"), **self.ansible)
        _test_crash("after-deploy-playbook")
        if _still_held(lock) is not None:
            return self._lock_lost(rid, env.name, build, action, lock.lost, result, plan)
        if result.ok:
            return self._finish(rid, env.name, build, action, "succeeded", ExitCode.OK,
                                f"{build} is live on {len(plan.hosts)} host(s)" + _continued(result), result, plan)
        if result.canceled and not stop.caller_level and (_window_closed(result) or _at_pause(result)):
            return self._stopped_by_policy(rid, env, build, action, closes_at, result, plan)
        if result.canceled:
            return self._finish(rid, env.name, build, action, "interrupted", ExitCode.INTERRUPTED,
                                "interrupted: every host is on a complete build; `lrelease resume` continues",
                                result, plan)
        if _halted(result):
            hosts = sorted(g["host"] for g in result.gates if g.get("verdict") == "inconclusive")
            return self._finish(rid, env.name, build, action, "halted", ExitCode.HALTED,
                                f"halted for a human: the gate could not decide on {', '.join(hosts)} "
                                "(every host is on a complete build; `lrelease resume` continues, "
                                "`lrelease rollback` undoes)" + _continued(result), result, plan)
        return self._roll_back_after_failure(rid, env, inventory, build, action, result, plan, lock)

    def _on_controller_clock(self, moment: datetime) -> str:
        """``moment`` of the state store's clock (the policies') as the time the playbook's
        wave-boundary check reads (ISO 8601): the same instant unless the store's clock was
        injected (a test's), whose offset it keeps. To the nearest second, as the check says it."""
        there = datetime.now(timezone.utc) + (moment - self.store.clock())
        return (there + timedelta(microseconds=500_000)).replace(microsecond=0).isoformat()

    def _lock_var(self, lock: LockHandle) -> dict[str, Any]:
        """``lrelease_lock`` for deploy.yml and rollback.yml: their policy step verifies this run's
        lock instead of taking it, and records nothing (this wrapper records). ``db``: the SQLite
        file; "" for a server, whose URL (it may hold a password) the playbook reads from the
        environment ansible-playbook inherits (LRELEASE_STATE_URL or _FILE)."""
        return {"db": str(self.store.path or ""), "env": lock.env, "token": lock.row.token}

    def _stopped_by_policy(self, rid: str, env: EnvironmentConfig, build: str, action: str,
                           closes_at: datetime | None, result: RunResult, plan: Plan) -> Outcome:
        """deploy.yml's check stopped the run at a wave boundary because a pause of its waves was
        reached (``awaiting_promotion``) or its deploy window, closing at ``closes_at``, had
        closed (``paused``): exit 5, nothing rolled back. Both at once (the window closed during
        the wave before the pause), the check names the pause, which a human decides on (a
        promotion is checked against the window like any resume); a ``paused`` roll-out's resume
        would go past the pause, whose wave is done."""
        done = f"{len(result.switched)} of {len(plan.hosts)} host(s) switched in {result.waves} wave(s)"
        if not _at_pause(result):
            window = env.window
            assert window is not None and closes_at is not None
            opens = window.next_open(closes_at)
            when_opens = f" (it next opens {window.local(opens)})" if opens is not None else ""
            return self._finish(rid, env.name, build, action, "paused", ExitCode.HALTED,
                                f"paused: {env.name}'s deploy window closed at {window.local(closes_at)}; "
                                f"{done}, every host on a complete build, nothing rolled back; `lrelease resume "
                                f"--env {env.name}` continues inside the next window{when_opens}", result, plan)
        return self._finish(rid, env.name, build, action, "awaiting_promotion", ExitCode.HALTED,
                            f"awaiting promotion after wave {result.waves}: {done}, every host on a complete build "
                            f"and judged; `lrelease promote --env {env.name}` goes on, `lrelease abort --env "
                            f"{env.name}` rolls back what it switched", result, plan)

    def _roll_back_after_failure(self, rid: str, env: EnvironmentConfig, inventory: Path, build: str, action: str,
                                 result: RunResult, plan: Plan | None, lock: LockHandle,
                                 hosts: Iterable[str] | None = None) -> Outcome:
        """Undo this roll-out and the ones it resumes, on every host they moved (each host back
        to the build it ran before them, from its own ledger). ``hosts``: where to look, when the
        events of the run are not known (a resume of an interrupted rollback: all of them)."""
        why = _failure_summary(result) if hosts is None else f"continuing the automatic rollback of {build}"
        chain = self.store.chain(self.store.chain_root(self.store.rollout(rid)).id)
        if hosts is None:
            earlier = {h for r in chain if r.id != rid for h in self.store.hosts_in_phase(r.id, _MOVED, latest=False)}
            # A host that failed in a wave may have moved without saying so (its switch died
            # half-way): the module finishes or undoes what its intent and ledger show, and leaves
            # the rest alone. (No wave started: the failures were in staging, nothing moved.)
            halfway = result.failed - result.unreachable if result.waves else set()
            hosts = result.live_on_new_build | earlier | halfway
        live = sorted(hosts)
        if not live:
            return self._finish(rid, env.name, build, action, "rolled_back", ExitCode.ROLLED_BACK,
                                f"roll-out failed before any host switched ({why}); nothing to roll back",
                                result, plan)
        self.store.start_auto_rollback(rid)  # from here on, `resume` finishes the rollback
        self._notify(ROLLBACK, automatic=True, reason=why)
        extravars = {**env.playbook_vars(), "lrelease_rollback_build": build, "lrelease_hosts": env.name,
                     "lrelease_rollback_undo": [r.ledger_id for r in chain], "lrelease_rollout_id": rid,
                     "lrelease_actor": self.actor, "lrelease_lock": self._lock_var(lock)}
        # No stop request here: the first Ctrl-C lets the rollback finish; the second cancels.
        rb = run_playbook("rollback.yml", inventory, extravars, limit=",".join(live),
                          on_event=self._recorder(rid, lock),
                          cancel=lambda: isinstance(self.cancel, StopRequest) and self.cancel.cancel_requested,
                          keep_failed=self._run_dir(rid, "rollback"), **self.ansible)
        _test_crash("after-rollback-playbook")
        merged = RunResult(status=result.status, switched=result.switched, reverted=result.reverted,
                           failed=result.failed | rb.failed, unreachable=result.unreachable | rb.unreachable,
                           rolled_back=rb.rolled_back, app_stopped=rb.app_stopped, gates=result.gates)
        if _still_held(lock) is not None:
            return self._lock_lost(rid, env.name, build, action, lock.lost, merged, plan)
        if rb.rolled_back:
            moved = f"rolled back {', '.join(sorted(rb.rolled_back))}"
        else:
            moved = "no host was moved back" if rb.app_stopped else "no host needed a rollback"
        if rb.ok:
            return self._finish(rid, env.name, build, action, "rolled_back", ExitCode.ROLLED_BACK,
                                f"roll-out failed ({why}); {moved}{_first_installs(rb)}", merged, plan)
        if rb.canceled:
            return self._finish(rid, env.name, build, action, "interrupted", ExitCode.INTERRUPTED,
                                f"roll-out failed ({why}) and its rollback was interrupted: `lrelease resume` "
                                "finishes the rollback (it does not deploy again)", merged, plan)
        return self._finish(rid, env.name, build, action, "rollback_failed", ExitCode.ROLLBACK_FAILED,
                            f"roll-out failed ({why}) and the rollback failed too ({_failure_summary(rb)}): "
                            f"a human is needed. {self._builds_now(env.name)}; once the failed hosts are "
                            f"reachable and healthy, `lrelease rollback --env {env.name}` finishes the rollback",
                            merged, plan)

    def _admit(self, env: EnvironmentConfig, build: str, action: str, rid: str, reason: str, lock: LockHandle,
               record_as: str | None = None) -> dict[str, Any] | None:
        """The release policies (lrelease/policies.py), asked under the lock before any host is
        touched: what the roll-out's row keeps (overrides used, Next's evidence), or PolicyRefused
        (exit 4) after recording the refusal in the history (a row of status ``refused``, linked to
        no other roll-out: resume and rollback pass over it), changing nothing else."""
        if action in ("deploy", "resume"):
            try:
                builds.check_deploy_target(env, self.store.build_record(build))
            except policies.PolicyRefused as refused:  # a feature branch's build outside development
                self.store.start_rollout(env.name, build, record_as or action, self.actor, reason=reason,
                                         rollout_id=rid, lock=lock, status="refused",
                                         policy={"refused": {"policy": refused.policy, "message": str(refused)}})
                self.store.finish_rollout(rid, "refused", int(ExitCode.REFUSED))
                raise
        decision = policies.decide(self.store, env.name, actor=self.actor, action=action, build=build,
                                   environment=env, force_reason=self.force_reason,
                                   skip_next_reason=self.skip_next_reason, hotfix_reason=self.hotfix_reason)
        if decision.refused is None:
            return decision.record or None
        self.store.start_rollout(env.name, build, record_as or action, self.actor, reason=reason, rollout_id=rid,
                                 lock=lock, status="refused", policy=decision.refusal())
        self.store.finish_rollout(rid, "refused", int(ExitCode.REFUSED))
        raise policies.PolicyRefused(decision.refused, decision.policy)

    def _guarded(self, rid: str, env: str, build: str, action: str, plan: Plan | None, lock: LockHandle,
                 body: Callable[[], Outcome]) -> Outcome:
        """Run the part of a roll-out that changes hosts, so that its record never lies: a lost
        lock ends it as ``lock_lost`` (exit 4), Ctrl-C as ``interrupted`` (130), and anything
        unforeseen as ``crashed`` (70, never 0 or 1)."""
        try:
            return body()
        except LockLost as lost:
            lock.lost = lost
            return self._lock_lost(rid, env, build, action, lost, RunResult(), plan)
        except KeyboardInterrupt:
            self._record_end(rid, "interrupted", ExitCode.INTERRUPTED)
            raise
        except Exception as exc:
            self._record_end(rid, "crashed", ExitCode.INTERNAL)
            raise InternalError(
                f"internal error during {action} {rid} of {build} to {env}: {type(exc).__name__}: {exc}; "
                f"recorded as crashed. The fleet may be inconsistent: run `lrelease status --env {env}`, "
                f"then `lrelease resume --env {env}` or `lrelease rollback --env {env}`") from exc

    def _record_end(self, rid: str, status: str, code: ExitCode) -> None:
        """Best effort, on the way out of a failure: the original error matters more."""
        try:
            self.store.finish_rollout(rid, status, int(code))
        except Exception:  # noqa: BLE001 - never hide the first error
            pass
        if self.notifier is not None:
            self.notifier.end(status, int(code))

    def _lock_lost(self, rid: str, env: str, build: str, action: str, lost: LockLost, result: RunResult,
                   plan: Plan | None) -> Outcome:
        return self._finish(rid, env, build, action, "lock_lost", ExitCode.REFUSED,
                            f"{lost}; stopped before touching another host", result, plan)

    def resume(self, env_name: str, *, reason: str = "", promote: bool = False) -> Outcome:
        """Finish the roll-out left to do (interrupted, halted, paused by its window); with
        ``promote``, the one awaiting promotion (and only that one), up to its next pause."""
        env = self.project.environment(env_name)
        old = self.awaiting_promotion(env.name) if promote else self.store.resumable(env.name)
        if old is None:
            raise NothingToResume(self._why_not_resumable(env.name))
        if old.status == "awaiting_promotion" and not promote:
            raise NothingToResume(f"roll-out {old.id} of {old.build} to {env.name} awaits promotion: `lrelease "
                                  f"promote --env {env.name}` goes on, `lrelease abort --env {env.name}` rolls it back")
        if promote:
            reason = f"promotion of {old.id}" + (f": {reason}" if reason else "")
        if old.status == "running":  # its process died: say so in the history
            self.store.finish_rollout(old.id, "interrupted", int(ExitCode.INTERRUPTED))
        if old.rollback_started_at:  # it was rolling itself back: finish that, never deploy again
            with self._notifying():
                return self._resume_rollback(env, old, reason=reason or f"resume of {old.id} (its rollback)")
        # Hosts that passed their gate are done; a host switched but not yet judged goes
        # through the gate again (the switch role leaves a host already on the build alone); a
        # host whose judgement halted has it handed back, to go on from the evidence it had.
        done = tuple(self.store.hosts_in_phase(old.id, "gate_passed"))
        return self.deploy(env.name, old.build, reason=reason or f"resume of {old.id}", resumes=old.id, done=done,
                           halted=self.halted_judgements(old))

    def halted_judgements(self, old: Rollout) -> dict[str, dict[str, Any]]:
        """Per host, its APM judgement that a halt left Inconclusive (the host's latest gate in
        ``old``'s chain of roll-out and resumes): when its bake started, when the host switched,
        its reference hosts, how much evidence it had and in which wave of the roll-out — what
        the gate needs to go on from the readings kept (``lrelease_gate_continue``)."""
        latest: dict[str, Any] = {}
        for rollout in self.store.chain(self.store.chain_root(old).id):
            for gate in self.store.gates(rollout.id):
                latest[gate.host] = gate
        out: dict[str, dict[str, Any]] = {}
        for host, gate in latest.items():
            ev = gate.evidence
            if gate.verdict != "inconclusive" or ev.get("gate") != "apm" or ev.get("started_at") is None:
                continue
            earlier = ev.get("continued") or {}  # a resume's gate: the wave is the roll-out's first numbering
            wave = earlier.get("wave") or gate.wave
            out[host] = {"started_at": ev["started_at"], "switched_at": ev.get("switched_at"),
                         "reference": list(ev.get("reference") or []), "seconds": ev.get("evidence_seconds", 0),
                         "wave": wave, "rollout": gate.rollout_id}
        return out

    def _past_since(self, env: str, rid: str) -> float | None:
        """When the environment's last roll-out before this one (and the roll-out this one resumes)
        ended, in seconds since the epoch (``lrelease_gate_past_since``): the gate's window before a
        switch starts no earlier, so a build rolled back minutes ago does not pass for the old one."""
        mine = {r.id for r in self.store.chain(self.store.chain_root(self.store.rollout(rid)).id)}
        ends = [r.finished_at or r.started_at for r in self.store.history(env, limit=20)
                if r.id not in mine and r.status not in ("refused", "running")]
        times = [datetime.fromisoformat(t).timestamp() for t in ends if t]
        return max(times) if times else None

    def _resume_rollback(self, env: EnvironmentConfig, old: Rollout, *, reason: str) -> Outcome:
        inventory = self.inventory(env)
        hosts = self.project.load_fleet().hosts(env.name)
        rid = new_rollout_id()
        with self.store.acquire_lock(env.name, rid) as lock:
            # it rolls back: the policies see a rollback (allowed on a paused environment)
            policy = self._admit(env, old.build, "rollback", rid, reason, lock, record_as="resume")
            self.store.start_rollout(env.name, old.build, "resume", self.actor, reason=reason, rollout_id=rid,
                                     previous_build=old.previous_build, resumes=old.id, lock=lock, policy=policy)
            self._notify_begin(rid, env.name, old.build, "resume", reason)
            outcome = self._guarded(rid, env.name, old.build, "resume", None, lock, lambda: self._roll_back_after_failure(
                rid, env, inventory, old.build, "resume", RunResult(), None, lock, hosts=hosts))
        self.prune_readings()
        return outcome

    def _why_not_resumable(self, env: str) -> str:
        last = self.store.last_rollout(env)
        if last is not None and last.action == "rollback" and last.undoes:
            undone = self.store.rollout(last.undoes)
            return (f"nothing to resume in {env}: roll-out {undone.id} of {undone.build} was undone by rollback "
                    f"{last.id} ({last.status}); deploy {undone.build} again to go on")
        if last is not None and last.action == "rollback":
            return f"nothing to resume in {env}: the last change was rollback {last.id} to {last.build}"
        return f"nothing to resume in {env}: no interrupted or halted roll-out"

    def awaiting_promotion(self, env_name: str) -> Rollout:
        """The roll-out of ``env`` that awaits promotion (``abort`` rolls it back), or NothingToResume."""
        env = self.project.environment(env_name)
        old = self.store.resumable(env.name)
        if old is None:
            raise NothingToResume(f"nothing awaits promotion in {env.name}: no roll-out stopped at a pause of its waves")
        if old.status != "awaiting_promotion":
            raise NothingToResume(f"nothing awaits promotion in {env.name}: roll-out {old.id} of {old.build} is "
                                  f"{old.status} (`lrelease resume --env {env.name}` continues it)")
        return old

    def abort(self, env_name: str, *, reason: str = "") -> Outcome:
        """Roll back the roll-out awaiting promotion (its whole chain: every host it switched goes
        back to the build it ran before, as ``rollback`` does)."""
        old = self.awaiting_promotion(env_name)
        return self.rollback(env_name, reason=f"abort of {old.id}" + (f": {reason}" if reason else ""))

    # -- rollback ------------------------------------------------------------------------
    def rollback(self, env_name: str, *, to: str | None = None, reason: str = "") -> Outcome:
        """Undo the newest roll-out chain (see StateStore.to_undo): each host it moved goes back
        to the build it ran before, read from the host's ledger (or every host to ``to``), in
        groups that keep ``rollback.min_in_service`` serving (one at a time with ``serial``)."""
        check_to(to)
        with self._notifying():
            outcome = self._rollback(env_name, to=to, reason=reason)
        self.prune_readings()  # a halted roll-out undone: its gate readings are of no more use
        return outcome

    def _rollback(self, env_name: str, *, to: str | None, reason: str) -> Outcome:
        env = self.project.environment(env_name)
        inventory = self.inventory(env)
        extravars: dict[str, Any] = {**env.playbook_vars(), "lrelease_hosts": env.name, "lrelease_actor": self.actor}
        undone = None
        if to:
            extravars["lrelease_rollback_to"] = to
            build = to
        else:
            undone = self.to_undo(env.name)
            extravars["lrelease_rollback_build"] = build = undone.build
            extravars["lrelease_rollback_undo"] = [r.ledger_id for r in self.store.chain(undone.id)]
        rid = new_rollout_id()
        with self.store.acquire_lock(env.name, rid) as lock:
            policy = self._admit(env, build, "rollback", rid, reason, lock)
            for dead in self.store.interrupted(env.name):  # killed while running: say so before undoing it
                self.store.finish_rollout(dead.id, "interrupted", int(ExitCode.INTERRUPTED))
            self.store.start_rollout(env.name, build, "rollback", self.actor, reason=reason, rollout_id=rid,
                                     previous_build=undone.build if undone else None,
                                     undoes=undone.id if undone else None, lock=lock, policy=policy)
            extravars["lrelease_rollout_id"] = rid
            extravars["lrelease_lock"] = self._lock_var(lock)
            self._notify_begin(rid, env.name, build, "rollback", reason)
            self._notify(ROLLBACK, automatic=False, reason=reason or None)
            return self._guarded(rid, env.name, build, "rollback", None, lock,
                                 lambda: self._run_rollback(rid, env.name, build, inventory, extravars, undone, lock))

    def _run_rollback(self, rid: str, env: str, build: str, inventory: Path, extravars: dict[str, Any],
                      undone: Rollout | None, lock: LockHandle) -> Outcome:
        result = run_playbook("rollback.yml", inventory, extravars, on_event=self._recorder(rid, lock),
                              cancel=_Stop(self.cancel, lock), keep_failed=self._run_dir(rid, "rollback"),
                              **self.ansible)
        _test_crash("after-rollback-playbook")
        if _still_held(lock) is not None:
            return self._lock_lost(rid, env, build, "rollback", lock.lost, result, None)
        what = f"undid roll-out {undone.id} of {build}" if undone else f"rollback to {build}"
        if result.ok:
            moved = sorted(result.rolled_back)
            if moved:
                msg = f"{what}: rolled back {', '.join(moved)}"
            else:
                msg = f"{what}: no host was moved" if result.app_stopped else f"{what}: no host needed it; nothing changed"
            msg += _first_installs(result)
            return self._finish(rid, env, build, "rollback", "succeeded", ExitCode.OK, msg, result, None)
        if result.canceled:
            return self._finish(rid, env, build, "rollback", "interrupted", ExitCode.INTERRUPTED,
                                f"{what} interrupted: every host is on a complete build; `lrelease rollback --env "
                                f"{env}` again finishes it", result, None)
        again = f"`lrelease rollback --env {env}" + (f" --to {build}`" if not undone else "`")
        return self._finish(rid, env, build, "rollback", "rollback_failed", ExitCode.ROLLBACK_FAILED,
                            f"{what} failed ({_failure_summary(result)}): a human is needed. {self._builds_now(env)}; "
                            f"once the failed hosts are reachable and healthy, {again} finishes it", result, None)

    def _builds_now(self, env: str) -> str:
        """Each host's build, read from the hosts now (for the message of a failed rollback)."""
        try:
            st = self.status(env)
        except Exception as exc:  # noqa: BLE001 - the failure being reported matters more
            return f"Each host's build could not be read ({exc}); `lrelease status --env {env}` shows it"
        parts = [f"{h.host} on {h.build or 'no build'}" for h in st.hosts] + [f"{h} unreachable" for h in st.unreachable]
        return "Hosts now: " + ", ".join(parts)

    def to_undo(self, env: str) -> Rollout:
        """The roll-out (first of its chain) that ``rollback`` without --to undoes."""
        undone = self.store.to_undo(env)
        if undone is None:
            raise NoRollbackTarget(f"nothing to roll back in {env}: no recorded roll-out left a host on its build; "
                                   "to go to a given build use --to BUILD")
        if undone.action == "rollback":
            raise NoRollbackTarget(f"the last change to {env} was a rollback to {undone.build} (--to), which cannot "
                                   "be undone by build; say which build to go to with --to BUILD")
        return undone

    def rollback_plan(self, env_name: str, *, to: str | None = None) -> dict[str, Any]:
        """What ``rollback`` would do, read from the hosts and changing nothing: each host's
        current build and its target (None: it stays), and the roll-out being undone."""
        check_to(to)
        env = self.project.environment(env_name)
        undone = None if to else self.to_undo(env.name)
        extravars: dict[str, Any] = {**env.playbook_vars(), "lrelease_hosts": env.name}
        if undone is not None:
            extravars["lrelease_status_undo"] = [r.ledger_id for r in self.store.chain(undone.id)]
        result = run_playbook("status.yml", self.inventory(env), extravars, cancel=self.cancel, **self.ansible)
        hosts = []
        for host, st in sorted(result.host_status.items()):
            current, plan = st.get("build"), st.get("rollback") or {}
            target = (to if current != to else None) if to else plan.get("target")
            hosts.append({"host": host, "current": current, "target": target,
                          "note": "" if target or to else (plan.get("why") or "")})
        return {"env": env.name, "to": to, "undoes": undone.to_dict() if undone else None, "hosts": hosts,
                "unreachable": sorted(result.unreachable)}

    # -- status --------------------------------------------------------------------------
    def status(self, env_name: str) -> FleetStatus:
        env = self.project.environment(env_name)
        result = run_playbook("status.yml", self.inventory(env), {**env.playbook_vars(), "lrelease_hosts": env.name},
                              cancel=self.cancel, **self.ansible)
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
    def _recorder(self, rid: str, lock: LockHandle | None = None) -> EventSink:
        def record(event: ProgressEvent) -> None:
            phase = _PHASES.get(event.kind)
            if phase and event.host:
                try:
                    if event.kind in (EventKind.GATE_PASSED, EventKind.GATE_FAILED):
                        self.store.record_gate(rid, event.wave or 0, event.host, str(event.detail.get("verdict")),
                                               dict(event.detail.get("evidence") or {}))
                    self.store.record_host(rid, event.host, phase, dict(event.detail))
                except LockLost as lost:  # the run stops at its next safe point (see _Stop)
                    if lock is None:
                        raise
                    lock.lost = lost
            if event.kind is EventKind.WAVE_STARTED:
                self._notify(WAVE, wave=event.wave, hosts=tuple(event.detail.get("hosts") or ()))
            elif event.kind in (EventKind.GATE_PASSED, EventKind.GATE_FAILED):
                self._notify(GATE, wave=event.wave, host=event.host, verdict=str(event.detail.get("verdict")),
                             reason=str(event.detail.get("reason") or "") or None)
            if self.on_event is not None:
                self.on_event(event)
        return record

    def _finish(self, rid: str, env: str, build: str, action: str, status: str, code: ExitCode, message: str,
                result: RunResult, plan: Plan | None) -> Outcome:
        self.store.finish_rollout(rid, status, int(code))
        if status == "halted":
            self._notify(HALT, status=status, exit_code=int(code), reason=message)
        elif status in PAUSED_STATUSES:
            self._notify(PAUSE, status=status, exit_code=int(code), reason=message)
        if self.notifier is not None:
            self.notifier.end(status, int(code), message)
        return Outcome(
            rollout_id=rid, env=env, build=build, action=action, status=status, exit_code=code, message=message,
            switched=tuple(sorted(result.switched)), rolled_back=tuple(sorted(result.rolled_back)),
            app_stopped=tuple(sorted(result.app_stopped)),
            failed=tuple(sorted(result.failed)), unreachable=tuple(sorted(result.unreachable)),
            gates=tuple(result.gates), plan=plan.to_dict() if plan else {},
        )


def _first_installs(result: RunResult) -> str:
    if not result.app_stopped:
        return ""
    hosts = ", ".join(sorted(result.app_stopped))
    return (f"; {hosts}: first install, nothing to roll back to: the app is stopped and the host stays out of the "
            "load balancer until a good build is deployed (or `lrelease rollback --to BUILD` names one)")


def _continued(result: RunResult) -> str:
    """What a resume said about the halted judgements it went on with (or restarted) and that
    passed: an Inconclusive one's reason starts with that note, and is shown whole with its gate."""
    notes = [f"{g['host']}: {c['note']}" for g in result.gates if g.get("verdict") == "pass"
             and isinstance(c := (g.get("evidence") or {}).get("continued"), dict) and c.get("note")]
    return f" ({'; '.join(notes)})" if notes else ""


def _halted(result: RunResult) -> bool:
    """The gate could not decide (and its policy says halt) and nothing else went wrong."""
    verdicts = {g.get("verdict") for g in result.gates}
    judged = {g["host"] for g in result.gates}
    return "inconclusive" in verdicts and "fail" not in verdicts and not (result.failed - judged) and not result.unreachable


_BY_ANOTHER = "another host failed"  # roles/lrelease_stage/tasks/discard.yml


def _failure_summary(result: RunResult) -> str:
    parts = []
    failed_gates = [g["host"] for g in result.gates if g.get("verdict") != "pass"]
    if failed_gates:
        parts.append(f"gate failed on {', '.join(sorted(set(failed_gates)))}")
    others = sorted(result.failed - set(failed_gates))
    # Hosts failed by another host's failure (a stage rescue says so) are counted, not described.
    stopped = [h for h in others if _BY_ANOTHER in result.failures.get(h, "")]
    for host in (h for h in others if h not in stopped):
        why = result.failures.get(host)
        parts.append(f"failed on {host}: {why}" if why else f"failed on {host}")
    if stopped:
        parts.append(f"stopped on {len(stopped)} other host(s) because of it")
    if result.unreachable:
        parts.append(f"unreachable: {', '.join(sorted(result.unreachable))}")
    if result.stats is None:
        parts.append("the playbook ended without its final stats" + (f": {result.error}" if result.error else ""))
    summary = "; ".join(parts) or f"ansible-runner status {result.status}"
    return summary + (f" (Ansible's output is kept in {result.kept})" if result.kept is not None else "")
