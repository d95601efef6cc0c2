"""The guardian of a plain playbook run (started by the policy step, lrelease/policystep.py).

A plain ``ansible-playbook deploy.yml`` (AWX, cron) has no wrapper to beat its lock's heartbeat
or to record how it ended when a play fails (a failed serial play stops every later play, so the
playbook's own end step never runs) or when ansible-playbook is killed. The policy step starts
this small process, detached (its own session: AWX's or ansible-runner's cancel, which signals
ansible-playbook's process group, does not reach it) and bound to ansible-playbook's pid and
start time:

- while ansible-playbook lives, it beats the lock's heartbeat every TTL/4 seconds, so a run from
  another host (an AWX execution node) keeps its lock through a long bake;
- when the row is ended by the playbook's end step, it exits;
- when ansible-playbook is gone and the row is still ``running``, it ends the row from the host
  phases recorded (``policystep.finalise``: failed or interrupted) and releases the lock.

If the guardian itself is killed too (the whole machine or container goes), nothing is left
running for ever: the lock is bound to ansible-playbook's pid (provably dead on the same host) or
expires after its TTL elsewhere, and the next run's policy step (or ``lrelease rollback``) ends the
dead ``running`` row as ``interrupted``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lrelease.proclife import process_alive, process_start
from lrelease.state import LockLost, StateError, StateStore
from lrelease.statedb import DB_ERRORS
from lrelease.errors import ExitCode

POLL_SECONDS = 1.0  # how soon the end of ansible-playbook is noticed
MAX_SECONDS = 7 * 24 * 3600.0  # a bound on its life; past it the lock expires by its TTL (other hosts)


def spawn(db: str, env: str, rollout_id: str, token: int, watch_pid: int) -> int:
    """Start the guardian detached; returns its pid. ``db``: the SQLite file, or "" for the URL
    in the environment (inherited, never on the command line)."""
    argv = [sys.executable, "-m", "lrelease.guardian", "--env", env, "--rollout", rollout_id, "--token", str(token),
            "--watch", str(watch_pid), "--watch-start", process_start(watch_pid) or "-"]
    if db:
        argv += ["--db", db]
    environ = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parents[1])  # a checkout whose package is not installed
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, close_fds=True, cwd="/", env=environ)
    return proc.pid


def _alive(pid: int, start: str) -> bool:
    return process_alive(pid) and (not start or process_start(pid) in ("", start))


def guard(open_store: Callable[[], StateStore], env: str, rollout_id: str, token: int, watch_pid: int,
          watch_start: str, *, poll: float = POLL_SECONDS, max_seconds: float = MAX_SECONDS) -> str:
    """Watch until the run ends; returns what happened: ``ended`` (by the playbook), ``finalised``
    (by us, ansible-playbook being gone), ``lost`` (another roll-out took the lock) or ``expired``.
    A database error (a server restarting) is retried with a new connection the next round."""
    from lrelease import policystep  # policystep imports the policies; keep the guardian's start light

    store: StateStore | None = None
    started = time.monotonic()
    last_beat = started - MAX_SECONDS
    try:
        while time.monotonic() - started < max_seconds:
            try:
                if store is None:
                    store = open_store()
                    try:
                        store.adopt_lock(env, rollout_id, token)
                    except LockLost:
                        return "ended" if store.rollout(rollout_id).status != "running" else "lost"
                    holder = store.lock_holder(env)
                    every = (holder.ttl if holder else 120.0) / 4
                if not _alive(watch_pid, watch_start):
                    return "finalised" if policystep.finalise(store, env, rollout_id) else "ended"
                if store.rollout(rollout_id).status != "running":
                    store.release_lock(env, rollout_id)
                    return "ended"
                if time.monotonic() - last_beat >= every:
                    try:
                        store.heartbeat(env, rollout_id)
                        last_beat = time.monotonic()
                    except LockLost:
                        if store.rollout(rollout_id).status == "running":
                            store.finish_rollout(rollout_id, "lock_lost", int(ExitCode.REFUSED))
                            return "lost"
                        return "ended"
            except (*DB_ERRORS, StateError):  # busy or unreachable: the next round retries, connected anew
                if store is not None:
                    _close(store)
                    store = None
            time.sleep(poll)
        return "expired"
    finally:
        if store is not None:
            _close(store)


def _close(store: StateStore) -> None:
    try:
        store.close()
    except (*DB_ERRORS, StateError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrelease.guardian", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="", help="SQLite file; empty: LRELEASE_STATE_URL(_FILE)")
    parser.add_argument("--env", required=True)
    parser.add_argument("--rollout", required=True)
    parser.add_argument("--token", type=int, required=True)
    parser.add_argument("--watch", type=int, required=True, help="ansible-playbook's pid")
    parser.add_argument("--watch-start", default="-")
    args = parser.parse_args(argv)
    from lrelease import statedb

    try:
        where = statedb.configured()
        target = args.db or (where.target if where is not None else "")
        if not target:
            return int(ExitCode.USAGE)
    except StateError:
        return int(ExitCode.USAGE)
    guard(lambda: StateStore(target), args.env, args.rollout, args.token, args.watch,
          "" if args.watch_start == "-" else args.watch_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
