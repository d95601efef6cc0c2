"""Entry point and the one error boundary: known errors become one line and their exit code."""

from __future__ import annotations

import importlib
import logging
import traceback

import click

from lrelease import secrets
from lrelease.cli.helptext import TOPICS, epilog, read_epilog
from lrelease.errors import ExitCode, LreleaseError

log = logging.getLogger("lrelease")


# Each command's module (lrelease.cli.<module>, its COMMANDS), imported only when the command runs or
# is listed: `lrelease deploy` does not load the AWX client, the HTML report or the sandbox (a third
# of the CLI's start-up). tests/unit/test_cli_main.py checks this table against every module's COMMANDS.
COMMAND_MODULES = {
    **dict.fromkeys(("plan", "deploy", "rollback", "resume", "promote", "abort", "status", "history", "show",
                     "inventory"), "release"),
    **dict.fromkeys(("captain", "pause", "unpause"), "policy"),
    **dict.fromkeys(("branch", "hotfix", "build", "builds"), "git"),
    "awx": "awx", "nightly": "nightly", "report": "htmlreport", "sandbox": "sandbox",
}


class _Group(click.Group):
    """Runs every command inside one error boundary, so CliRunner and the shell see the same codes.
    Commands are loaded from their module when first asked for (COMMAND_MODULES)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f"lrelease.cli.{COMMAND_MODULES[cmd_name]}")
            for command in module.COMMANDS:
                self.commands.setdefault(command.name, command)
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LreleaseError as err:
            label = "internal error" if err.exit_code == ExitCode.INTERNAL else "error"
            if ctx.params.get("debug") and err.__cause__ is not None:
                click.echo(secrets.scrub("".join(traceback.format_exception(err.__cause__)).rstrip()), err=True)
            for line in secrets.scrub(str(err)).splitlines() or [""]:  # several config errors: one line each
                click.echo(f"lrelease: {label}: {line}", err=True)
            log.debug("details", exc_info=True)
            ctx.exit(int(err.exit_code))
        except KeyboardInterrupt:
            click.echo("lrelease: interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own ways out (usage errors are exit 2)
        except Exception as exc:  # a bug or something unforeseen: never 0 or 1, which mean "safe"
            if ctx.params.get("debug"):
                click.echo(secrets.scrub(traceback.format_exc().rstrip()), err=True)
            click.echo(f"lrelease: internal error: {type(exc).__name__}: {secrets.scrub(str(exc))}; the fleet may be "
                       "inconsistent: run `lrelease status --env ENV` (details with --debug)", err=True)
            ctx.exit(int(ExitCode.INTERNAL))


@click.group(cls=_Group, epilog=epilog([
    "lrelease plan --env production",
    "lrelease deploy --env production --build 1.4.0 --yes --json   # JSON on stdout, progress on stderr",
    "lrelease help exit-codes          # also: help config, help gate, help completion, help COMMAND",
]))
@click.option("--debug", is_flag=True, help="Log details to stderr.")
@click.version_option(package_name="lrelease")
def cli(debug: bool) -> None:
    """lrelease: node-by-node releases with health gates and automatic rollback.

    Shell completion: eval "$(_LRELEASE_COMPLETE=bash_source lrelease)" (zsh: zsh_source)."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _topics(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [name for name in (*TOPICS, *cli.list_commands(ctx)) if name.startswith(incomplete)]


@cli.command("help", epilog=read_epilog(["lrelease help exit-codes", "lrelease help deploy"],
                                            (ExitCode.OK, ExitCode.USAGE)))
@click.argument("topic", required=False, shell_complete=_topics)
@click.pass_context
def help_topic(ctx: click.Context, topic: str | None) -> None:
    """A short text on TOPIC (exit-codes, config, gate, completion) pointing at the docs in the
    repository, or a command's --help. Without TOPIC: the topics and the commands."""
    names = cli.list_commands(ctx)
    if topic is None:
        click.echo(f"topics: {', '.join(TOPICS)}\ncommands: {', '.join(names)}\n"
                   "`lrelease help TOPIC` or `lrelease COMMAND --help`")
    elif topic in TOPICS:
        click.echo(TOPICS[topic])
    elif topic in names:
        command = cli.get_command(ctx, topic)
        click.echo(command.get_help(click.Context(command, info_name=topic, parent=ctx.parent)))
    else:
        raise LreleaseError(f"help: no topic or command {topic!r} (topics: {', '.join(TOPICS)}; "
                            f"commands: {', '.join(names)})")


def main() -> None:
    cli(prog_name="lrelease")  # so completion reads $_LRELEASE_COMPLETE however it was started
