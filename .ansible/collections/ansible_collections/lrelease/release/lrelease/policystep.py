"""The playbooks' policy step (action plugin ``lrelease_policy``): what deploy.yml and rollback.yml
do about the lock, the policies and the record when no wrapper runs them (plain ansible-playbook,
AWX, cron), and the check they make when the wrapper does.

- wrapper run (``lrelease_lock`` given): :func:`verify` — the lock must still carry the wrapper's
  token; nothing is recorded (the wrapper records).
- plain run: :func:`begin` takes the environment's lock (bound to ansible-playbook's pid, with a
  fencing token), checks the policies (lrelease.policies.check_start), records the roll-out and
  starts its guardian (lrelease/guardian.py); :func:`record` records each host's phases (the
  wrapper's vocabulary, statedb.PHASES) and gates; :func:`unreachable` records a host Ansible could
  not reach (the callback plugin lrelease_record sees it: no task, no rescue runs on such a host);
  :func:`end` records how the run ended and releases the lock. When the play fails (later plays
  never run) or ansible-playbook is killed, the guardian ends the row with :func:`finalise` and
  releases the lock.

Library code: it raises typed errors and returns data; the action plugin turns them into task
results.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lrelease import policies, secrets, statedb
from lrelease.errors import ExitCode, LreleaseError
from lrelease.state import LockHandle, LockHeld, LockLost, StateError, StateStore, lock_check, new_rollout_id

# Where a plain run's SQLite state lives when neither lrelease_state_db nor LRELEASE_STATE_URL(_FILE)
# nor lrelease_config says: run from a checkout, the checkout's own state_dir (lrelease.yml's
# default), next to the playbooks' directory; run from an installed collection (a wheel's
# lrelease/_content, ansible-galaxy's collections path: never written into), the user's XDG state
# directory.
DEFAULT_DB = Path(".lrelease") / "lrelease.db"
XDG_DB = Path("lrelease") / "lrelease.db"  # under $XDG_STATE_HOME, default ~/.local/state

# How long a plain run waits for a lock that its holder's guardian is about to release.
LOCK_WAIT_SECONDS = 3.0

# Host phases that mean the host did not end well (a failed run, not an interrupted one).
_FAILED = ("failed", "gate_failed", "unreachable")
# Phases of a host that the roll-out moved onto its build (as rollout._MOVED).
_MOVED = ("switched", "gate_passed", "gate_failed")
# An unreachable host's recorded message: its SSH error, scrubbed, on one line, cut to this (as the wrapper's).
UNREACHABLE_MSG_CHARS = 500


class LockNotHeld(LreleaseError):
    """The wrapper's lock token is no longer the environment's: refused by policy (exit 4)."""

    exit_code = ExitCode.REFUSED


class Refused(LreleaseError):
    """The environment's lock is held by another live roll-out (exit 4)."""

    exit_code = ExitCode.REFUSED


@dataclass(frozen=True)
class Store:
    """Where a plain run's state is: ``target`` for StateStore (a path, or the URL from the
    environment: never shown, never an extra var) and ``db`` for ``lrelease_lock.db`` ("" = URL)."""

    target: str
    db: str
    shown: str


def locate(state_db: str = "", playbook_dir: str = "", config: str = "",
           environ: Mapping[str, str] | None = None) -> Store:
    """``lrelease_state_db`` (a SQLite file) if given; else LRELEASE_STATE_URL / _FILE; else the
    state_dir of ``lrelease_config`` (the project's lrelease.yml) when given; else, for playbooks
    of a checkout, its ``.lrelease/lrelease.db`` (the directory above the playbooks'), and for
    those of an installed collection ``$XDG_STATE_HOME/lrelease/lrelease.db``."""
    if state_db:
        where = statedb.locate(state_db, "lrelease_state_db")
        if where.path is None:
            raise StateError("lrelease_state_db: expected the path of a SQLite file (a server's URL goes in"
                             f" {statedb.URL_ENV} or {statedb.URL_FILE_ENV}, never in an extra var)")
        return Store(str(where.path), str(where.path), where.shown)
    where = statedb.configured()
    if where is not None:
        return Store(where.target, "" if where.path is None else str(where.path), where.shown)
    if config:
        from lrelease.config import load_config  # only plain runs with a file pay for it

        path = load_config(Path(config)).db_path
        return Store(str(path), str(path), str(path))
    above = Path(playbook_dir or ".").resolve().parent
    if "ansible_collections" in above.parts:  # an installed copy: site-packages or a collections path
        env = os.environ if environ is None else environ
        path = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / XDG_DB
    else:
        path = above / DEFAULT_DB
    return Store(str(path), str(path), str(path))


def actor(extra: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """Who runs it: ``lrelease_actor``, $LRELEASE_USER, AWX's ``awx_user_name`` /
    ``tower_user_name``, else the OS user."""
    env = os.environ if environ is None else environ
    for value in (extra.get("lrelease_actor"), env.get("LRELEASE_USER"), extra.get("awx_user_name"),
                  extra.get("tower_user_name")):
        if value not in (None, ""):
            return str(value)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def via(extra: Mapping[str, Any]) -> dict[str, Any]:
    """How the run was started: AWX (its job id) or a plain ansible-playbook."""
    job = extra.get("awx_job_id", extra.get("tower_job_id"))
    if job not in (None, ""):
        return {"kind": "awx", "job_id": str(job)}
    return {"kind": "ansible-playbook"}


def verify(lock: Mapping[str, Any]) -> str:
    """Wrapper run: the lock of ``lock['env']`` must still carry ``lock['token']``."""
    try:
        env, token = str(lock["env"]), int(lock["token"])
    except (KeyError, TypeError, ValueError):
        raise LockNotHeld("lrelease_lock: expected {db, env, token} as the wrapper passes it, got "
                          f"{sorted(lock) if isinstance(lock, Mapping) else type(lock).__name__}") from None
    state = lock_check(str(lock.get("db") or ""), env, token)
    if state != "held":
        raise LockNotHeld(f"{state}: this run's lock (token {token}) is gone; refused before any host changed")
    return state


@dataclass(frozen=True)
class Start:
    """What a plain run starts: from its extra vars (see the action plugin)."""

    env: str
    action: str  # deploy or rollback
    build: str
    actor: str
    owner_pid: int  # ansible-playbook: the lock and the row live as long as it does
    reason: str = ""
    force_reason: str = ""
    ledger_id: str = ""  # lrelease_rollout_id when given
    via: dict[str, Any] = field(default_factory=dict)
    undo: Sequence[str] = ()  # rollback: lrelease_rollback_undo
    hosts: Sequence[str] = ()
    serial: Sequence[Any] = ()
    skip_next_reason: str = ""  # lrelease_skip_next_reason: an unproven build let through (recorded)
    environment: Any = None  # its settings in lrelease.yml (captain, requires), when the run has one


def environment_settings(config: str, env: str, playbook_dir: str = "") -> Any:
    """The environment's settings for the policies that need them (``captain: required``,
    ``requires:``): from ``lrelease_config`` when given, else the checkout's lrelease.yml beside
    ``playbooks/`` when there is one; None without a file (the store's policies still apply: an
    environment pause and a release captain). A file that does not name ``env`` is refused: the
    run would otherwise skip the policies its file sets."""
    from lrelease.config import load_config  # only plain runs with a file pay for it

    path = Path(config) if config else Path(playbook_dir or ".").resolve().parent / "lrelease.yml"
    if not config and not path.is_file():
        return None
    project = load_config(path)
    try:
        return project.environment(env)
    except LreleaseError:
        raise Refused(f"lrelease_env: {env!r} is not an environment of {path} (it has "
                      f"{', '.join(e.name for e in project.environments)}): set lrelease_env to one of them; "
                      "refused before any host changed") from None


def begin(store: StateStore, start: Start) -> dict[str, Any]:
    """Take the lock, check the policies, record the roll-out. Returns {rollout_id, ledger_id,
    token}. Raises Refused (lock held, naming the holder) or the policy's refusal (recorded as
    ``refused``); the lock is then not held."""
    rid = start.ledger_id or new_rollout_id()
    ledger_id = rid
    if start.ledger_id and _exists(store, start.ledger_id):
        rid = new_rollout_id()  # the id was used before (a re-run): a new row, the hosts' ledgers keep it
    handle = _take(store, start.env, rid, start.owner_pid)
    try:
        for dead in store.interrupted(start.env):  # we hold the lock: any other running row is dead
            if dead.via:  # a plain run whose guardian has not ended it yet: end it as the guardian would
                finalise(store, start.env, dead.id)
            else:
                store.finish_rollout(dead.id, "interrupted", int(ExitCode.INTERRUPTED))
        plan: dict[str, Any] = {"via": {**start.via, **({"ledger_id": ledger_id} if ledger_id != rid else {})},
                                "hosts": list(start.hosts)}
        if start.serial:
            plan["serial"] = list(start.serial)
        row = dict(reason=start.reason, rollout_id=rid, plan=plan, lock=handle, pid=start.owner_pid)
        decision = policies.decide(store, start.env, actor=start.actor, action=start.action, build=start.build,
                                   environment=start.environment, force_reason=start.force_reason,
                                   skip_next_reason=start.skip_next_reason)
        if decision.refused is not None:
            store.start_rollout(start.env, start.build, start.action, start.actor, status="refused",
                                policy=decision.refusal(), **row)
            store.finish_rollout(rid, "refused", int(ExitCode.REFUSED))
            raise policies.PolicyRefused(decision.refused, decision.policy)
        row["policy"] = decision.record or None
        # The window this run started in closes then: the wave-boundary check (lookup lrelease_lock
        # with closes_at) stops the run there, recorded `paused` (none: no window, or a hot-fix).
        closes = (policies.window_closes(start.environment, store.clock())
                  if start.environment is not None and start.action == "deploy" else None)
        if closes is not None:
            plan["window_closes_at"] = statedb.iso(closes)
        if start.action == "rollback":
            undone = _undone(store, start.env, start.undo)
            store.start_rollout(start.env, start.build, "rollback", start.actor, undoes=undone.id if undone else None,
                                previous_build=undone.build if undone else None, **row)
        else:
            last = store.last_rollout(start.env, status="succeeded")
            store.start_rollout(start.env, start.build, "deploy", start.actor,
                                previous_build=last.build if last else None, **row)
    except BaseException:
        handle.release()
        raise
    return {"rollout_id": rid, "ledger_id": ledger_id, "token": handle.row.token,
            "closes_at": plan.get("window_closes_at", "")}


def _take(store: StateStore, env: str, rid: str, owner: int, *, wait: float = LOCK_WAIT_SECONDS) -> LockHandle:
    """The lock, waiting up to ``wait`` seconds: an AWX workflow starts its next job (the rollback)
    moments after the previous one ended, maybe before that job's guardian (which polls once a
    second) has released the lock. Then Refused, naming the holder."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return store.take_lock(env, rid, pid=owner)
        except LockHeld as held:
            if time.monotonic() >= deadline:
                raise Refused(f"{held}: refused before any host changed") from None
        time.sleep(0.5)


def _exists(store: StateStore, rid: str) -> bool:
    try:
        store.rollout(rid)
    except StateError:
        return False
    return True


def _undone(store: StateStore, env: str, ids: Sequence[str]):
    """The roll-out a rollback.yml run undoes: the first of ``lrelease_rollback_undo`` recorded
    in ``env`` (by its id or the id its hosts' ledgers carry), in the list's order: an AWX
    workflow's stretches hand their ids on oldest first, so it is the release's first stretch."""
    wanted = [str(i) for i in ids if str(i)]
    found: dict[str, Any] = {}
    for r in store.history(env, limit=200) if wanted else ():
        if r.action != "rollback":
            for key in {r.id, r.ledger_id} & set(wanted):
                found.setdefault(key, r)
    first = next((found[i] for i in wanted if i in found), None)
    return store.chain_root(first) if first is not None else None


def adopt(store: StateStore, env: str, rid: str, token: int) -> None:
    store.adopt_lock(env, rid, token)


def record(store: StateStore, rid: str, host: str, phase: str, detail: Mapping[str, Any] | None = None,
           gate: Mapping[str, Any] | None = None, wave: int = 0) -> None:
    """One host's phase (and its gate's verdict), fenced by the adopted lock."""
    if gate is not None:
        store.record_gate(rid, wave, host, str(gate.get("verdict") or ("pass" if phase == "gate_passed" else "fail")),
                          dict(gate.get("evidence") or {}))
    store.record_host(rid, host, phase, dict(detail or {}))


def open_recorded(policy: Mapping[str, Any], *, adopt: bool = True) -> StateStore:
    """The store of a recorded plain run, from its policy step's result (``lock``: {db, env,
    token}; ``rollout_id``), acting as the holder of its lock (fenced writes) unless ``adopt`` is
    False. Raises LockLost when the run's lock is gone (ended, or taken over)."""
    lock = policy["lock"]
    store = StateStore(locate(str(lock.get("db") or "")).target)
    if adopt:
        try:
            store.adopt_lock(str(lock["env"]), str(policy["rollout_id"]), int(lock["token"]))
        except BaseException:
            store.close()
            raise
    return store


def unreachable(store: StateStore, rid: str, host: str, error: str, task: str = "") -> bool:
    """A host that Ansible could not reach (SSH failed: the node is gone) in a plain run, as the
    callback plugin lrelease_record sees it: recorded ``unreachable`` (a failed host, as the wrapper
    records it) with the SSH error (scrubbed, one line, at most UNREACHABLE_MSG_CHARS), so the run
    ends as one with a failed host does, not ``interrupted``. False when the host's latest phase
    says so already (a second event for it)."""
    if store.host_phases(rid).get(host) == "unreachable":
        return False
    said = " ".join(secrets.scrub(str(error or "")).split()) or "no error given"
    msg = f"unreachable: {said}"
    if len(msg) > UNREACHABLE_MSG_CHARS:
        msg = msg[:UNREACHABLE_MSG_CHARS - 3] + "..."
    store.record_host(rid, host, "unreachable", {"task": task, "msg": msg})
    return True


def end(store: StateStore, env: str, rid: str, *, failed: Sequence[str] = (), stopped: bool = False,
        window_closed: bool = False) -> tuple[str, int]:
    """The playbook reached its end: record how, release the lock. Returns (status, exit code).
    ``window_closed``: it stopped at a wave boundary because its deploy window closed (``paused``,
    exit 5, as the wrapper records it; ``resume`` in the next window)."""
    row = store.rollout(rid)
    if row.status != "running":  # the guardian (or a takeover) ended it already
        store.release_lock(env, rid)
        return row.status, int(row.exit_code or 0)
    try:
        phases = store.host_phases(rid)
        for host in failed:  # (a host recorded failed or unreachable keeps its own record)
            if phases.get(host) not in _FAILED:
                store.record_host(rid, host, "failed", {"msg": "failed in this run (see its output)"})
        status, code = _ending(store, rid, row.action, ended=True, stopped=stopped or window_closed)
        if window_closed and status == "interrupted":
            status, code = "paused", int(ExitCode.HALTED)
        store.finish_rollout(rid, status, code)
    except LockLost:  # another roll-out took the lock over: say so on our row only
        store.finish_rollout(rid, "lock_lost", int(ExitCode.REFUSED))
        status, code = "lock_lost", int(ExitCode.REFUSED)
    store.release_lock(env, rid)
    return status, code


def finalise(store: StateStore, env: str, rid: str) -> tuple[str, int] | None:
    """The guardian's end of a run whose ansible-playbook is gone without reaching its end step:
    failed (a host failed: the play stopped) or interrupted (killed). None if it had ended."""
    row = store.rollout(rid)
    if row.status != "running":
        store.release_lock(env, rid)
        return None
    status, code = _ending(store, rid, row.action, ended=False, stopped=False)
    phases = store.host_phases(rid)
    store.annotate(rid, ended_by={"guardian": "ansible-playbook exited before its end step",
                                  "failed_hosts": sorted(h for h, p in phases.items() if p in _FAILED)})
    store.finish_rollout(rid, status, code)
    store.release_lock(env, rid)
    return status, code


def _ending(store: StateStore, rid: str, action: str, *, ended: bool, stopped: bool) -> tuple[str, int]:
    """Status and exit code from the host phases recorded. A deploy that failed leaves its moved
    hosts for a human or the AWX workflow's rollback job: ``halted`` (5; ``rollback`` undoes it);
    with nothing moved, ``rolled_back`` (1: nothing to undo), as the wrapper records it."""
    phases = store.host_phases(rid)
    failed = [h for h, p in phases.items() if p in _FAILED]
    if action == "rollback":
        if failed:
            return "rollback_failed", int(ExitCode.ROLLBACK_FAILED)
        return ("succeeded", int(ExitCode.OK)) if ended and not stopped else ("interrupted", int(ExitCode.INTERRUPTED))
    if failed:
        moved = store.hosts_in_phase(rid, _MOVED, latest=False)
        return ("halted", int(ExitCode.HALTED)) if moved else ("rolled_back", int(ExitCode.ROLLED_BACK))
    if ended and not stopped:
        return "succeeded", int(ExitCode.OK)
    return "interrupted", int(ExitCode.INTERRUPTED)


# Test-only: a file holding an ISO 8601 time that the wave-boundary window check reads as "now"
# once it exists (tests/rollout/test_policy_step.py moves a plain run's clock between two waves
# with it: ansible-playbook is another process, whose clock a test cannot patch). Never set it in use.
TEST_NOW_FILE = "LRELEASE_TEST_NOW_FILE"
WINDOW_CLOSED = "window closed"  # how the check's line starts (deploy.yml matches it)


def _boundary_now() -> datetime:
    path = os.environ.get(TEST_NOW_FILE, "")
    if path and Path(path).is_file():
        return datetime.fromisoformat(Path(path).read_text().strip())
    return statedb.utc_now()


def window_check(env: str, closes_at: str, now: datetime | None = None) -> str:
    """The wave-boundary check of a plain run's deploy window: "" while the window it started in
    is open (or it has none: ``closes_at`` empty), else one line saying it closed. deploy.yml
    then starts no further wave and the end step records ``paused`` (lookup lrelease_lock)."""
    if not closes_at:
        return ""
    closes = datetime.fromisoformat(closes_at)
    if (now or _boundary_now()) < closes:
        return ""
    return f"{WINDOW_CLOSED}: the deploy window of {env} closed at {closes_at}"



def wave_of(host: str, hosts: Sequence[str], serial: Sequence[Any]) -> int:
    """The 1-based serial batch ``host`` is in, as Ansible cuts ``hosts`` with ``serial``
    (ansible's pct_to_int; the last item repeats). 0 when the host is not among them."""
    todo, total, number, item = list(hosts), len(hosts), 0, 0
    sizes = list(serial) or [-1]
    while todo:
        value = sizes[min(item, len(sizes) - 1)]
        if isinstance(value, str) and value.strip().endswith("%"):
            size = int(float(value.strip()[:-1]) / 100.0 * total) or 1
        else:
            size = int(value)
        number += 1
        batch = todo if size <= 0 else todo[:size]
        if host in batch:
            return number
        todo = [] if size <= 0 else todo[size:]
        item += 1
    return 0
