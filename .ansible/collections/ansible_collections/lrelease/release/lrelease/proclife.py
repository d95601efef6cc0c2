"""Is a process still alive, and is it still the same process? (for the state lock)."""

from __future__ import annotations

import os


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (the name may hold spaces and ')')."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    except OSError:
        return []
    return text[text.rfind(")") + 2:].split()


def process_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a SIGKILLed child lingers as one until reaped)."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        return False
    if fields:
        return fields[0] not in ("Z", "X", "x")
    try:  # no readable /proc: ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start(pid: int) -> str:
    """The process start time in clock ticks since boot (/proc/<pid>/stat field 22), or ""
    when unknown. Two processes that share a pid over time differ here."""
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else ""
