"""Entry point and the one error boundary: known errors become one line and their exit code."""

from __future__ import annotations

import logging

import click

from lrelease.errors import ExitCode, LreleaseError

log = logging.getLogger("lrelease")


class _Group(click.Group):
    """Runs every command inside one error boundary, so CliRunner and the shell see the same codes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LreleaseError as err:
            click.echo(f"lrelease: error: {err}", err=True)
            log.debug("details", exc_info=True)
            ctx.exit(int(err.exit_code))
        except KeyboardInterrupt:
            click.echo("lrelease: interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


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
