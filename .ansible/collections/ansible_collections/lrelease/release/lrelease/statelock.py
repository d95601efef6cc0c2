"""The per-environment lock's row, its errors and the handle a holder keeps (see state.py)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lrelease.errors import ExitCode, LreleaseError
from lrelease.statedb import DB_ERRORS, StateError, reason

if TYPE_CHECKING:
    from lrelease.state import Rollout, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockRow:
    env: str
    rollout_id: str
    pid: int
    pid_start: str  # process start time (ticks since boot): tells a reused pid apart
    hostname: str
    acquired_at: str
    heartbeat_at: str
    ttl: float  # seconds without a heartbeat after which a holder on another host counts as gone
    token: int = 0  # fencing token: grows with every grant of this environment's lock


class LockHeld(LreleaseError):
    """Another live roll-out holds the environment's lock; refused by policy (exit 4)."""

    exit_code = ExitCode.REFUSED

    def __init__(self, holder: LockRow) -> None:
        self.holder = holder
        self.env, self.rollout_id, self.pid, self.since = holder.env, holder.rollout_id, holder.pid, holder.acquired_at
        super().__init__(
            f"environment {holder.env} is locked by roll-out {holder.rollout_id} "
            f"(pid {holder.pid} on {holder.hostname}, since {holder.acquired_at}); one roll-out at a time"
        )


class LockLost(LreleaseError):
    """This roll-out's lock was taken over while it was paused (its heartbeat had stopped for
    longer than the TTL): refused by policy (exit 4); it stops before touching another host."""

    exit_code = ExitCode.REFUSED

    def __init__(self, env: str, rollout_id: str, holder: LockRow | None = None, taken_by: Rollout | None = None) -> None:
        self.env, self.rollout_id, self.holder = env, rollout_id, holder
        if holder is not None:
            by = (f"it is now held by roll-out {holder.rollout_id} (pid {holder.pid} on {holder.hostname}, "
                  f"since {holder.acquired_at})")
        elif taken_by is not None:
            by = (f"roll-out {taken_by.id} (pid {taken_by.pid} on {taken_by.hostname}) took it over at "
                  f"{taken_by.started_at} and has since released it")
        else:
            by = "it was released"
        super().__init__(f"roll-out {rollout_id} lost the lock of environment {env}; {by}")


class LockHandle:
    """What the holder of a lock keeps: beat the heartbeat, release it."""

    def __init__(self, store: StateStore, row: LockRow, taken_over: LockRow | None = None) -> None:
        self.store = store
        self.row = row
        self.taken_over = taken_over  # the dead holder this lock was taken from, if any
        self.lost: LockLost | None = None  # set when a heartbeat or a write found the lock gone
        self.error: Exception | None = None  # the last heartbeat error (logged, and lost after a TTL of them)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def env(self) -> str:
        return self.row.env

    @property
    def rollout_id(self) -> str:
        return self.row.rollout_id

    def heartbeat(self) -> None:
        """Refresh the heartbeat now; raises LockLost if the lock was taken over."""
        try:
            self.store.heartbeat(self.env, self.rollout_id)
        except LockLost as lost:
            self.lost = lost
            raise

    def start_beating(self, every: float) -> None:
        """Beat from a daemon thread (own connection) until release()."""
        self._thread = threading.Thread(target=self._beat, args=(every,), name=f"lrelease-lock-{self.env}",
                                        daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        db = None  # its own connection, opened again after an error (a server restart drops it)
        last_beat = time.monotonic()
        try:
            while not self._stop.wait(every):
                try:
                    db = db or self.store.connect()
                    self.store.heartbeat(self.env, self.rollout_id, db)
                    last_beat, self.error = time.monotonic(), None
                except LockLost as lost:
                    self.lost = lost
                    return
                except (*DB_ERRORS, StateError) as exc:  # busy or briefly unavailable: the next beat retries
                    self.error = exc
                    log.warning("lock heartbeat of %s failed: %s", self.env, reason(exc))
                    if db is not None and self.store.path is None:
                        db.close()
                        db = None
                    if time.monotonic() - last_beat > self.row.ttl:  # others may have taken it by now
                        self.lost = LockLost(self.env, self.rollout_id)
                        return
        finally:
            if db is not None:
                db.close()

    def release(self) -> None:
        """Stop beating and drop the lock if it is still ours. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.release_lock(self.env, self.rollout_id)
