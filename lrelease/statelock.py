"""The per-environment lock's row, its errors and the handle a holder keeps (see state.py)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lrelease.errors import ExitCode, LreleaseError

if TYPE_CHECKING:
    from lrelease.state import StateStore


@dataclass(frozen=True)
class LockRow:
    env: str
    rollout_id: str
    pid: int
    pid_start: str  # process start time (ticks since boot): tells a reused pid apart
    hostname: str
    acquired_at: str
    heartbeat_at: str
    ttl: float  # seconds without a heartbeat after which anyone may take the lock over


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
    """This process's lock was taken over (its heartbeat had stopped for longer than the TTL)."""

    exit_code = ExitCode.HALTED

    def __init__(self, env: str, rollout_id: str) -> None:
        self.env, self.rollout_id = env, rollout_id
        super().__init__(f"roll-out {rollout_id} lost the lock of environment {env}: another roll-out took it over")


class LockHandle:
    """What the holder of a lock keeps: beat the heartbeat, release it."""

    def __init__(self, store: StateStore, row: LockRow, taken_over: LockRow | None = None) -> None:
        self.store = store
        self.row = row
        self.taken_over = taken_over  # the dead holder this lock was taken from, if any
        self.lost = False  # set when a heartbeat found the lock gone
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
        except LockLost:
            self.lost = True
            raise

    def start_beating(self, every: float) -> None:
        """Beat from a daemon thread (own connection) until release()."""
        self._thread = threading.Thread(target=self._beat, args=(every,), name=f"lrelease-lock-{self.env}",
                                        daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        db = self.store.connect()
        try:
            while not self._stop.wait(every):
                try:
                    self.store.heartbeat(self.env, self.rollout_id, db)
                except LockLost:
                    self.lost = True
                    return
                except sqlite3.Error:  # busy or briefly unavailable: the next beat retries
                    continue
        finally:
            db.close()

    def release(self) -> None:
        """Stop beating and drop the lock if it is still ours. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.release_lock(self.env, self.rollout_id)
