"""Commands and daemons: run a tool, start a detached process with a pidfile, stop it for sure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from lrelease.errors import SandboxError


MARKER = "LRELEASE_SANDBOX"


def owned_env(owner: Path) -> dict[str, str]:
    """Environment for a process the sandbox starts: marked with its owner, so ``down`` can find
    it again even when its pidfile is gone (a crash half-way through ``up``)."""
    return {**os.environ, MARKER: str(owner)}


def owned_pids(owner: Path) -> list[int]:
    """Live processes started by the sandbox whose state directory is ``owner``."""
    needle = f"{MARKER}={owner}\0".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes() + b"\0":
                pid = int(environ.parent.name)
                if pid != os.getpid() and pid_alive(pid):
                    pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def run(argv: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 60,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise SandboxError with the command and its stderr in one line."""
    try:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        raise SandboxError(f"command not found: {argv[0]} (run `make bootstrap` as root to install it)") from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise SandboxError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {err[-1] if err else 'no output'}")
    return proc


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (a killed process can linger as one)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return False


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def running_pid(pidfile: Path) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid is not None and pid_alive(pid) else None


def stop_pid(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM, wait, then SIGKILL; returns once the process is gone (or a zombie)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                _reap(pid)
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pidfile(pidfile: Path, *, timeout: float = 5.0) -> bool:
    """Stop the process named by a pidfile and remove the file. True if something was running."""
    pid = running_pid(pidfile)
    if pid is not None:
        stop_pid(pid, timeout=timeout)
    pidfile.unlink(missing_ok=True)
    return pid is not None


def spawn(argv: Sequence[str], *, pidfile: Path, log: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, no stdin) that outlives us; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, close_fds=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str) -> None:
    """Poll ``predicate`` until true; raise SandboxError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise SandboxError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
