"""Typed errors. Library code raises these; only the CLI turns them into lines and exit codes."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """The exit codes promised to users (product.md); nothing else is ever returned."""

    OK = 0
    ROLLED_BACK = 1
    USAGE = 2
    ROLLBACK_FAILED = 3
    REFUSED = 4
    HALTED = 5
    INTERNAL = 70  # lrelease itself failed (EX_SOFTWARE): the fleet may be inconsistent
    INTERRUPTED = 130


class LreleaseError(Exception):
    """Base of every error a user can act on. ``str(err)`` is the one line shown."""

    exit_code: ExitCode = ExitCode.USAGE


class InternalError(LreleaseError):
    """lrelease itself failed (a bug, or something it did not foresee): never exit 0 or 1, which
    tell cron and AWX the fleet is safe. The roll-out is recorded as ``crashed``."""

    exit_code = ExitCode.INTERNAL


class ConfigError(LreleaseError):
    """Bad input: names the file (or option), the key and what was expected."""

    def __init__(self, where: str, key: str, expected: str) -> None:
        self.where, self.key, self.expected = where, key, expected
        super().__init__(f"{where}: {key}: {expected}")


class ConfigErrors(ConfigError):
    """Several ConfigErrors found at once (a file with several mistakes), in file order.
    ``str(err)`` is one line per error; ``where``, ``key`` and ``expected`` are the first one's,
    so code that handles a single ConfigError keeps working."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if len(errors) < 2:
            raise ValueError("ConfigErrors holds two errors or more; raise the ConfigError itself")
        self.errors = tuple(errors)
        first = self.errors[0]
        LreleaseError.__init__(self, "\n".join(str(e) for e in self.errors))
        self.where, self.key, self.expected = first.where, first.key, first.expected


def raise_all(errors: Sequence[ConfigError]) -> None:
    """Nothing for no errors; the error itself for one; ConfigErrors for several."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


class SandboxError(LreleaseError):
    """The sandbox could not do what was asked (not root, a tool missing, a node not answering)."""

    exit_code = ExitCode.USAGE
