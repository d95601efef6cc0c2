"""Entry point and the one error boundary: known errors become one line and their exit code."""

from __future__ import annotations

import logging
import traceback

import click

from lrelease import secrets
from lrelease.errors import ExitCode, LreleaseError

log = logging.getLogger("lrelease")


class _Group(click.Group):
    """Runs every command inside one error boundary, so CliRunner and the shell see the same codes."""

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


@click.group(cls=_Group)
@click.option("--debug", is_flag=True, help="Log details to stderr.")
@click.version_option(package_name="lrelease")
def cli(debug: bool) -> None:
    """lrelease: node-by-node releases with health gates and automatic rollback."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from lrelease.cli.release import COMMANDS
    from lrelease.cli.sandbox import sandbox

    for command in (*COMMANDS, sandbox):
        cli.add_command(command)


_register()


def main() -> None:
    cli()
