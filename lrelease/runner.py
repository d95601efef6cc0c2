"""Runs one playbook through ansible-runner and turns its events into typed progress events.

One place drives the subprocess (this module); callers stay in control through ``on_event``
and ``cancel``. Per run: a fresh private data dir (mode 0700, on tmpfs where there is one,
removed afterwards), no env files written, pipelining + ControlPersist on, the package's
plugins on Ansible's path, and ansible-playbook tied to our life (it gets SIGTERM if we die,
so a killed wrapper never leaves a roll-out running on its own).

Stopping: ansible-runner's cancel kills the playbook's process group at once, mid-task. A
:class:`StopRequest` passed as ``cancel`` asks first for a stop at a safe point instead: the
run writes a stop file in its private dir (extra var ``lrelease_stop_file``) that deploy.yml
checks before each wave; the play ends there (task ``lrelease stopped``) and the result says
``stopped``. Only a second request cancels at once.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import ansible_runner

from lrelease import failedruns, secrets
from lrelease.ansible import REPO_ROOT  # the checkout, or the installed copy of the collection
from lrelease.ansible_env import ansible_env

PLAYBOOKS = REPO_ROOT / "playbooks"


class EventKind(str, Enum):
    PLAY_STARTED = "play_started"
    WAVE_STARTED = "wave_started"
    HOST_STAGED = "host_staged"
    HOST_SWITCHED = "host_switched"
    HOST_REVERTED = "host_reverted"
    GATE_PASSED = "gate_passed"
    GATE_FAILED = "gate_failed"
    HOST_ROLLED_BACK = "host_rolled_back"
    HOST_APP_STOPPED = "host_app_stopped"  # a first install undone: nothing to go back to, app stopped
    HOST_FAILED = "host_failed"
    HOST_UNREACHABLE = "host_unreachable"
    HOST_STATUS = "host_status"
    STOPPED = "stopped"  # a stop request ended the run at a safe point (before a wave)


@dataclass(frozen=True)
class ProgressEvent:
    kind: EventKind
    host: str | None = None
    wave: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What a playbook run did, from its events (never from batch positions)."""

    status: str = "unknown"  # ansible-runner's: successful, failed, canceled, timeout
    rc: int | None = None
    stats: dict[str, Any] | None = None
    staged: set[str] = field(default_factory=set)
    switched: set[str] = field(default_factory=set)
    reverted: set[str] = field(default_factory=set)
    rolled_back: set[str] = field(default_factory=set)
    app_stopped: set[str] = field(default_factory=set)  # first installs undone: app stopped, host drained
    failures: dict[str, str] = field(default_factory=dict)  # each failed host's first failure message
    failed: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    gates: list[dict[str, Any]] = field(default_factory=list)
    host_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    waves: int = 0
    stopped: bool = False  # ended on a stop request at a safe point (no wave left half-done)
    stop_reason: str = ""  # why it stopped there (the stop check's words: "stop requested", "awaiting promotion: ...")
    # The policy step failed before any host changed: its exit code (4 refused, 2 bad settings) and message
    policy_exit: int = 0
    policy_msg: str = ""
    error: str = ""
    kept: Path | None = None  # where a failed run's scrubbed output was kept (keep_failed)

    @property
    def ok(self) -> bool:
        """Success needs the final stats event: a run that lost it counts as failed; a stopped
        run did not do all its work."""
        return (self.status == "successful" and self.stats is not None and not self.failed and not self.unreachable
                and not self.stopped)

    @property
    def canceled(self) -> bool:
        """Ended early because someone asked: a hard cancel, or a clean stop at a safe point
        (``stopped``, and nothing failed: a failure still counts as one, so it is rolled back)."""
        return self.status == "canceled" or (self.stopped and not self.failed and not self.unreachable)

    @property
    def live_on_new_build(self) -> set[str]:
        """Hosts whose ``current`` points at the new build (switched and not put back)."""
        return self.switched - self.reverted


class StopRequest:
    """Ctrl-C / SIGTERM in two steps, for :func:`run_playbook`'s ``cancel``.

    ``escalate()`` once: stop at the next safe point (the hosts in flight finish, no new host
    starts); twice: cancel at once (ansible-runner kills the playbook's process group). Called
    with no argument it answers ansible-runner's cancel_callback: True only for the hard cancel.
    Signal-handler safe: it only sets flags."""

    STOP, CANCEL = 1, 2

    def __init__(self) -> None:
        self.level = 0

    def escalate(self) -> int:
        """Raise the request one step; returns the new level (3 and up: the caller's to handle)."""
        self.level += 1
        return self.level

    @property
    def stop_requested(self) -> bool:
        return self.level >= self.STOP

    @property
    def cancel_requested(self) -> bool:
        return self.level >= self.CANCEL

    def __call__(self) -> bool:
        return self.cancel_requested


# Task names are a contract with the roles (docs/design.md).
_OK_TASKS = {
    ("lrelease_stage", "staged"): EventKind.HOST_STAGED,
    ("lrelease_switch", "switched"): EventKind.HOST_SWITCHED,
    ("lrelease_switch", "reverted"): EventKind.HOST_REVERTED,
    ("lrelease_rollback", "rolled back"): EventKind.HOST_ROLLED_BACK,
    ("lrelease_rollback", "first install stopped"): EventKind.HOST_APP_STOPPED,
    ("", "lrelease gate"): EventKind.GATE_PASSED,
    ("", "lrelease host status"): EventKind.HOST_STATUS,
}
_NEEDS_CHANGED = {EventKind.HOST_SWITCHED, EventKind.HOST_REVERTED, EventKind.HOST_ROLLED_BACK}
# First task of the switch play, run once per serial batch; its result lists the batch.
_WAVE_TASK = ("", "lrelease wave")
# Run once before a wave when a stop was requested; the play ends right after it.
_STOPPED_TASK = ("", "lrelease stopped")
# The policy step of deploy.yml and rollback.yml: failed, it changed nothing and says its exit code
# (4: a policy refused the run; 2: bad settings).
_POLICY_TASK = ("", "lrelease policy")


class _EventTranslator:
    """ansible-runner event dicts -> ProgressEvents + RunResult. O(1) work per event."""

    def __init__(self, result: RunResult, sink: Callable[[ProgressEvent], None] | None,
                 write_events: bool = False) -> None:
        self.result, self.sink, self.write_events = result, sink, write_events

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(data)
        # Events are files only when a run may be kept (LRELEASE_KEEP_RUNS, or keep_failed).
        return self.write_events

    def _emit(self, kind: EventKind, host: str | None, detail: Mapping[str, Any] | None = None) -> None:
        if self.sink is not None:
            self.sink(ProgressEvent(kind, host, self.result.waves or None, secrets.scrub_data(detail or {})))

    @staticmethod
    def _key(data: dict[str, Any]) -> tuple[str, str]:
        # A role the playbooks name by FQCN reports as "lrelease.release.lrelease_stage": the
        # contract is the role's own name, whichever collection (or roles path) it came from.
        role = (data.get("role") or "").rsplit(".", 1)[-1]
        return (role, data.get("task") or "")

    def _on_playbook_on_play_start(self, data: dict[str, Any]) -> None:
        self._emit(EventKind.PLAY_STARTED, None, {"play": data.get("play", "")})

    def _on_runner_on_ok(self, data: dict[str, Any]) -> None:
        key = self._key(data)
        if key == _WAVE_TASK:
            self.result.waves += 1
            hosts = list((data.get("res") or {}).get("ansible_play_batch") or [])
            self._emit(EventKind.WAVE_STARTED, None, {"wave": self.result.waves, "hosts": hosts})
            return
        if key == _STOPPED_TASK:
            self.result.stopped = True
            msg = str((data.get("res") or {}).get("msg", ""))
            self.result.stop_reason = msg.split(": no further wave starts", 1)[0]
            self._emit(EventKind.STOPPED, None, {"waves_done": self.result.waves, "msg": msg})
            return
        kind = _OK_TASKS.get(key)
        if kind is None:
            return
        host, res = data.get("host"), data.get("res") or {}
        if kind in _NEEDS_CHANGED and not res.get("changed"):
            return
        {
            EventKind.HOST_STAGED: self.result.staged,
            EventKind.HOST_SWITCHED: self.result.switched,
            EventKind.HOST_REVERTED: self.result.reverted,
            EventKind.HOST_ROLLED_BACK: self.result.rolled_back,
            EventKind.HOST_APP_STOPPED: self.result.app_stopped,
        }.get(kind, set()).add(host)
        if kind is EventKind.GATE_PASSED:
            self._gate(host, res, "pass")
            return
        if kind is EventKind.HOST_STATUS:
            self.result.host_status[host] = dict(res.get("lrelease_status") or {})
        if kind is EventKind.HOST_STAGED:  # what the host ran before (none: a first install), for the progress view
            self._emit(kind, host, {"current": res.get("current")})
            return
        self._emit(kind, host, res.get("lrelease_status") or {})

    def _gate(self, host: str, res: dict[str, Any], default: str) -> None:
        record = {"host": host, "wave": self.result.waves, "verdict": res.get("verdict", default),
                  "reason": str(res.get("reason") or res.get("msg") or ""), "evidence": res.get("evidence", {})}
        record = secrets.scrub_data(record)  # kept in RunResult.gates: shown and stored
        self.result.gates.append(record)
        self._emit(EventKind.GATE_PASSED if record["verdict"] == "pass" else EventKind.GATE_FAILED, host, record)

    def _on_runner_on_failed(self, data: dict[str, Any]) -> None:
        if data.get("ignore_errors"):
            return
        host, res = data.get("host"), data.get("res") or {}
        first = host not in self.result.failed
        self.result.failed.add(host)
        if first:
            self.result.failures[host] = secrets.scrub(_failure_text(res))
        if self._key(data) == _POLICY_TASK and str(res.get("exit_code", "")).isdigit():
            self.result.policy_exit = int(res["exit_code"])
            self.result.policy_msg = secrets.scrub(str(res.get("msg") or ""))
        if self._key(data) == ("", "lrelease gate"):
            self._gate(host, res, "fail")  # the gate's own event says it all
        elif first:  # a rescue re-raising the same failure is not news
            self._emit(EventKind.HOST_FAILED, host, {"task": data.get("task"), "msg": str(res.get("msg", ""))[:500]})

    def _on_runner_on_unreachable(self, data: dict[str, Any]) -> None:
        host, res = data.get("host"), data.get("res") or {}
        self.result.unreachable.add(host)
        self._emit(EventKind.HOST_UNREACHABLE, host, {"msg": str(res.get("msg", ""))[:500]})

    def _on_playbook_on_stats(self, data: dict[str, Any]) -> None:
        self.result.stats = {k: data.get(k) for k in ("ok", "changed", "failures", "dark", "skipped", "rescued")}


def plugin_env(data_dir: Path) -> dict[str, str]:
    """The user's Ansible configuration merged with the wrapper's needs (lrelease.ansible_env)."""
    return ansible_env(data_dir / "ansible.cfg")


_LAUNCHER = """#!{python}
# ansible-playbook, tied to the life of the lrelease process that started it.
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
if os.getppid() == 1:
    sys.exit("lrelease: the controlling process is gone")
os.execv({playbook!r}, [{playbook!r}, *sys.argv[1:]])
"""


KEEP_RUNS = "LRELEASE_KEEP_RUNS"  # a directory: each run's private dir is kept there, events included


def _keep_dir() -> Path | None:
    """Where runs are kept (tests and debugging look at what ansible-runner wrote), or None."""
    value = os.environ.get(KEEP_RUNS, "")
    return Path(value) if value else None


def _private_dir() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    if _keep_dir() is not None:
        base = _keep_dir()
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="lrelease-run-", dir=base))  # mkdtemp: mode 0700


def run_playbook(
    playbook: str | Path,
    inventory: str | Path,
    extravars: Mapping[str, Any],
    *,
    limit: str | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
    cancel: Callable[[], bool] | StopRequest | None = None,
    verbosity: int = 0,
    on_output: Callable[[str], None] | None = None,
    keep_failed: Path | None = None,
) -> RunResult:
    """Run ``playbook`` (a name in playbooks/ or a path) and return what happened.

    ``verbosity`` is ansible-playbook's ``-v`` count; ``on_output`` receives Ansible's own output
    (what ansible-playbook would print, secrets masked), one event's text at a time.

    ``cancel`` is polled about once a second; True kills the run at once. A :class:`StopRequest`
    first asks the playbook to stop at its next safe point (``lrelease_stop_file``).

    ``keep_failed``: a directory where a failed run's scrubbed events and output are kept
    (lrelease.failedruns); a successful run leaves nothing."""
    path = Path(playbook)
    if not path.is_absolute():
        path = PLAYBOOKS / path
    result = RunResult()
    translator = _EventTranslator(result, on_event, write_events=keep_failed is not None or _keep_dir() is not None)
    data_dir = _private_dir()
    launcher = data_dir / "ansible-playbook"
    launcher.write_text(_LAUNCHER.format(python=sys.executable, playbook=str(Path(sys.executable).parent / "ansible-playbook")))
    launcher.chmod(0o700)
    extravars, poll = _cancel_callback(data_dir, extravars, cancel)

    def scrub_env(status: dict[str, Any], runner_config: Any = None) -> None:
        # ansible-runner writes the whole environment into artifacts/<ident>/command before it
        # starts the process; keep only the variable names there so no secret stays on disk.
        if status.get("status") == "running" and runner_config is not None:
            cmd = Path(runner_config.artifact_dir) / "command"
            if cmd.exists():
                saved = json.loads(cmd.read_text())
                saved["env"] = sorted(saved.get("env", {}))
                saved["command"] = secrets.scrub_data(saved.get("command", []))  # none expected: see vars_via_env
                cmd.write_text(json.dumps(saved))

    # A variable holding a secret (an artifact URL's password) travels in the environment, not
    # on the command line, where `ps` and the `command` artifact would show it.
    extravars, secret_env = secrets.vars_via_env(extravars)
    handler = translator if on_output is None else _echo(translator, on_output)
    try:
        r = ansible_runner.run(**runner_kwargs(
            data_dir, path, inventory, extravars, limit=limit, launcher=launcher, envvars=secret_env,
            verbosity=verbosity, event_handler=handler, status_handler=scrub_env, cancel_callback=poll))
        result.status, result.rc = r.status, r.rc
        if not result.ok and result.stats is None:
            result.error = secrets.scrub(_tail(r))
        if not result.ok and not result.canceled and keep_failed is not None:
            try:
                result.kept = failedruns.keep(data_dir, keep_failed)
            except OSError:
                pass  # a diagnostic copy that cannot be written must not change the run's outcome
    finally:
        if _keep_dir() is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def runner_kwargs(data_dir: Path, playbook: Path, inventory: str | Path, extravars: Mapping[str, Any], *,
                  limit: str | None, launcher: Path, envvars: Mapping[str, str], verbosity: int,
                  **handlers: Any) -> dict[str, Any]:
    """The arguments of ``ansible_runner.run`` for one run (``handlers``: its event, status and
    cancel callbacks)."""
    return dict(
        private_data_dir=str(data_dir),
        project_dir=str(REPO_ROOT),
        playbook=str(playbook),
        # With a custom binary ansible-runner runs in "raw" mode and leaves the playbook
        # off the command line: pass it as the first argument ourselves.
        cmdline=shlex.quote(str(playbook)),
        inventory=str(inventory),
        extravars=dict(extravars),
        limit=limit,
        binary=str(launcher),
        envvars={**plugin_env(data_dir), **envvars},
        suppress_env_files=True,
        quiet=True,
        verbosity=verbosity or None,
        settings={"suppress_ansible_output": True, "pexpect_timeout": 1},
        **handlers,
    )


def _echo(handler: Callable[[dict[str, Any]], bool], write: Callable[[str], None]) -> Callable[[dict[str, Any]], bool]:
    """``handler``, which also hands each event's text (Ansible's own output) to ``write``."""
    def both(event: dict[str, Any]) -> bool:
        text = str(event.get("stdout") or "").replace("\r\n", "\n").strip("\n")
        if text.strip():
            write(secrets.scrub(text))
        return handler(event)
    return both


def _never() -> bool:
    return False


def _cancel_callback(data_dir: Path, extravars: Mapping[str, Any], cancel: Callable[[], bool] | StopRequest | None,
                     ) -> tuple[Mapping[str, Any], Callable[[], bool]]:
    """With a StopRequest: the extra vars naming the run's stop file, and a cancel callback
    that writes the file once a stop is requested (before any hard cancel). Never None: without
    a callback ansible-runner installs SIGINT/SIGTERM handlers of its own (kill at once) and
    leaves them in place after the run."""
    if not isinstance(cancel, StopRequest):
        return extravars, cancel or _never
    stop_file = data_dir / "stop"

    def poll() -> bool:
        if cancel.stop_requested and not stop_file.exists():
            stop_file.touch(mode=0o600)
        return cancel()

    poll()  # a stop asked before the run started holds from its first wave
    return {**extravars, "lrelease_stop_file": str(stop_file)}, poll


def _failure_text(res: Mapping[str, Any]) -> str:
    """A failed task's message, with the last line of its stderr when that says more (the
    command's own words: "No space left on device")."""
    msg = " ".join(str(res.get("msg") or "failed").split())
    stderr = [line for line in str(res.get("stderr") or "").splitlines() if line.strip()]
    if stderr and stderr[-1].strip() not in msg:
        msg = f"{msg}: {stderr[-1].strip()}"
    return msg[:300]


def _tail(r: Any, lines: int = 5) -> str:
    try:
        text = r.stdout.read()
    except Exception:  # noqa: BLE001 - best effort diagnostics only
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])
