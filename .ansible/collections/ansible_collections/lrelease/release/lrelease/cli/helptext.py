"""What ``--help`` and ``lrelease help TOPIC`` say: the exit codes (the one place they are worded,
as the README words them), each command's examples, and the short topics that point at the docs
in the repository."""

from __future__ import annotations

from collections.abc import Iterable

from lrelease.errors import ExitCode

# The README's contract ("Exit codes: ..."), one short line per code.
EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ROLLED_BACK: "failed and rolled back cleanly",
    ExitCode.USAGE: "usage or config error (changed nothing)",
    ExitCode.ROLLBACK_FAILED: "the rollback failed, a human is needed",
    ExitCode.REFUSED: "refused by policy (lock held or lost to another roll-out, environment paused, not the "
                      "release captain, outside the deploy window, build not proven where the environment "
                      "requires it first, a feature branch outside a development environment)",
    ExitCode.HALTED: "halted for a human (the gate was Inconclusive), paused (its deploy window closed) or "
                     "awaiting promotion (a pause of its waves)",
    ExitCode.INTERNAL: "internal error: lrelease itself failed, the fleet may be inconsistent",
    ExitCode.INTERRUPTED: "interrupted (every host on a complete build; `resume` continues)",
}

# Which codes each kind of command can end with (a command that changes no host never rolls back).
ROLLOUT_CODES = tuple(EXIT_CODES)
READ_CODES = (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL, ExitCode.INTERRUPTED)
READ_INTERRUPTED = "interrupted (Ctrl-C or SIGTERM; nothing changed)"


def exit_codes(codes: Iterable[ExitCode] = ROLLOUT_CODES, **meaning: str) -> str:
    """The exit-codes block of an epilog; ``meaning`` rewords a code for one command
    (``HALTED="..."``)."""
    lines = [f"  {int(code):>3}  {meaning.get(code.name, EXIT_CODES[code])}" for code in codes]
    return "\n".join(["\b", "Exit codes:", *lines])


def epilog(examples: Iterable[str], codes: Iterable[ExitCode] = ROLLOUT_CODES, **meaning: str) -> str:
    """A command's epilog: its examples, then its exit codes. ``\\b`` keeps click from
    rewrapping either block."""
    block = "\n".join(["\b", "Examples:", *(f"  {line}" for line in examples)])
    return f"{block}\n\n{exit_codes(codes, **meaning)}"


def read_epilog(examples: Iterable[str], codes: Iterable[ExitCode] = READ_CODES, **meaning: str) -> str:
    """The epilog of a command that changes no host."""
    return epilog(examples, codes, **{"INTERRUPTED": READ_INTERRUPTED, **meaning})


# `lrelease help TOPIC`: a few lines each, pointing at the pages in the repository.
TOPICS: dict[str, str] = {
    "exit-codes": "\n".join([
        "Exit codes of every lrelease command (cron, CI and AWX read them):",
        *(f"  {int(code):>3}  {text}" for code, text in EXIT_CODES.items()),
        "`lrelease status` exits 5 when the fleet is not consistent (a host unreachable, without a",
        "build, or on another build or checksum) or not on --expected-build. The whole contract:",
        "README.md, \"Releasing\".",
    ]),
    "config": "\n".join([
        "The project config is lrelease.yml (--config or $LRELEASE_CONFIG); it names the fleet file.",
        "Both are checked against the JSON Schemas in lrelease/schemas/ on load: every mistake at",
        "once, one line each (file, key, what was expected), exit 2, nothing changed.",
        "  every key commented, with its default:  lrelease.example.yml",
        "  every key, generated from the schemas:  docs/reference.md",
        "  the fleet file:                         inventories/fleet.example.yml",
        "  how the pieces fit:                     docs/design.md",
    ]),
    "gate": "\n".join([
        "After each wave the gate judges the hosts just switched. Without a `gate:` section it is the",
        "`health` check over HTTP (bake, then healthy within gate_timeout_seconds); with one, the APM",
        "gate compares the wave with the hosts not yet switched (the last wave with its own past),",
        "from scrape, prometheus, datadog or newrelic numbers. FAIL rolls back (exit 1); INCONCLUSIVE",
        "halts for a human (exit 5; `lrelease resume` or `lrelease rollback`). Each gate's evidence:",
        "`lrelease show ID`. How it decides and what it achieves: docs/apm-gate.md.",
    ]),
    "completion": "\n".join([
        "Shell completion (commands, options) comes from click:",
        "  bash:  eval \"$(_LRELEASE_COMPLETE=bash_source lrelease)\"   (in ~/.bashrc)",
        "  zsh:   eval \"$(_LRELEASE_COMPLETE=zsh_source lrelease)\"    (in ~/.zshrc)",
        "  fish:  _LRELEASE_COMPLETE=fish_source lrelease > ~/.config/fish/completions/lrelease.fish",
    ]),
}
