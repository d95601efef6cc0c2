"""``lrelease awx launch``: launch an AWX job template or workflow with a build and follow it to
its end in the same progress view as a local run (lrelease/awx.py does the talking; docs/awx.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.text import Text

from lrelease import awx as client
from lrelease import awxexport
from lrelease.cli.helptext import epilog
from lrelease.cli.progress import ProgressView
from lrelease.cli.release import _emit, _project, config_option, console, json_option, lines, out
from lrelease.config import BUILD_RE
from lrelease.errors import ConfigError, ExitCode, LreleaseError


CODES = tuple(code for code in ExitCode if code is not ExitCode.REFUSED)
LAUNCH_CODES = tuple(ExitCode)  # a job's policy step or a workflow's triage step says a policy refused the run: 4


class _StoppedWatching(LreleaseError):
    exit_code = ExitCode.INTERRUPTED


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise ConfigError("--extra-var", value.split("=")[0] or value, "KEY=VALUE (e.g. --extra-var lrelease_waves=[1,'100%'])")
        if key in pairs:
            raise ConfigError("--extra-var", key, "given once")
        pairs[key] = text
    return pairs


@click.group(epilog=epilog(["lrelease awx launch lrelease-deploy --build 1.4.0 --env production",
                            "lrelease awx launch --help      # what each exit code means for a launch",
                            "lrelease awx export --out awx/  # the templates, surveys and workflow to apply"], CODES))
def awx() -> None:
    """AWX (and Ansible Automation Platform): export lrelease's job templates and workflow (a
    playbook of awx.awx modules), launch them and follow them. Settings from the environment: LRELEASE_AWX_URL, LRELEASE_AWX_TOKEN (or
    LRELEASE_AWX_TOKEN_FILE), LRELEASE_AWX_CA_BUNDLE; docs/awx.md."""


@awx.command("launch", epilog=epilog([
    "lrelease awx launch lrelease-deploy --build 1.4.0 --env production --reason \"release 1.4\"",
    "lrelease awx launch 42 --build 1.4.0 --env production --json > outcome.json   # progress on stderr",
    "lrelease awx launch \"lrelease release\" --workflow --build 1.4.0 --env production",
    "lrelease awx launch lrelease-deploy --build 1.4.0 --extra-var lrelease_bake_seconds=60 --no-wait",
], LAUNCH_CODES, ROLLED_BACK="failed: rolled back, or failed with no host left on the new build",
    HALTED="halted for a human: a gate Inconclusive, hosts left on the new build, an approval waits, "
           "a workflow's triage step left a paused deploy (a status job: the fleet is not consistent)",
    REFUSED="a job's policy step, or a workflow's triage step, says a policy refused the run (lock held, "
            "window closed, not the captain, not proven on Next): no host changed",
    INTERNAL="AWX could not run the job (status error), or stopped answering while followed",
    INTERRUPTED="canceled in AWX, or Ctrl-C here (the job goes on in AWX)"))
@click.argument("template")
@click.option("--build", "-b", required=True, help="Build id (extra var lrelease_build).")
@click.option("--env", "-e", "env", default=None, help="Environment (extra var lrelease_env).")
@click.option("--reason", default="", help="Why (extra var lrelease_reason; recorded with the roll-out).")
@click.option("--workflow", is_flag=True, help="TEMPLATE is a workflow job template.")
@click.option("--extra-var", "extra", multiple=True, metavar="KEY=VALUE", help="Another extra var (repeatable); typed: [1, \"50%\"], 60, true (docs/awx.md).")
@click.option("--no-wait", is_flag=True, help="Launch, print the job's id and URL, and exit 0.")
@json_option
@click.pass_context
def launch(ctx: click.Context, template: str, build: str, env: str | None, reason: str, workflow: bool,
           extra: tuple[str, ...], no_wait: bool, as_json: bool) -> None:
    """Launch TEMPLATE (an id or a name) in AWX with BUILD, follow it to its end and exit with
    what it means (a workflow that ran its rollback step is a failed release: exit 1).

    A template that would drop the extra vars (no 'Prompt on launch' for variables, or AWX's
    ignored_fields) is refused: exit 2, the job cancelled."""
    if not BUILD_RE.fullmatch(build):
        raise ConfigError("--build", "build", f"a build id (letters, digits, '.', '_', '+', '-'), got {build!r}")
    variables = client.extra_vars(build, env, reason.strip(), _pairs(extra))
    settings = client.settings_from_env()
    awx_client = client.Client(settings)
    found = awx_client.find_template(template, workflow=workflow)
    launched = awx_client.launch(found, variables)
    what = "workflow job" if workflow else "job"
    lines.print(f"launched {found.what}: {what} {launched.id} {launched.url}")
    if no_wait:
        if as_json:
            _emit("awx", {"kind": what.replace(" ", "_"), "id": launched.id, "url": launched.url, "status": "launched",
                          "template": {"id": found.id, "name": found.name}})
        return
    live = sys.stderr.isatty() and not as_json
    view = ProgressView((), live=live, console=console if live else lines)

    def status(name: str, job_id: int, state: str) -> None:  # on a terminal: above the live table, same console
        text = f"{name} {job_id}: {state}" if name in ("job", "workflow") else f"step {name!r} (job {job_id}): {state}"
        view.console.print(Text(text), highlight=False, soft_wrap=True)  # Text: no markup, and the table keeps its own

    try:
        with view:
            outcome = awx_client.follow(launched, on_event=view.update, on_status=status)
    except KeyboardInterrupt:
        raise _StoppedWatching(f"stopped following {what} {launched.id}; it goes on in AWX: {launched.url}") from None
    if as_json:
        _emit("awx", outcome.to_json())
    else:
        for host in outcome.to_json()["host_summaries"]:
            if host["failed"]:
                out.print(f"  {host['host']}: failures {host['failures']}, unreachable {host['dark']}, ok {host['ok']}, "
                          f"changed {host['changed']} (job {host['job']})", highlight=False, markup=False)
        style = "green" if outcome.exit_code == ExitCode.OK else "red"
        console.print(f"[{style}]{escape(outcome.message)}[/] (exit {int(outcome.exit_code)})", highlight=False,
                      soft_wrap=True)  # one line in a log
    ctx.exit(int(outcome.exit_code))


@awx.command("export", epilog=epilog([
    "lrelease awx export --out awx/                      # every environment",
    "lrelease awx export --out awx/ --env production     # then: ansible-playbook awx/awx-lrelease.yml ...",
], (ExitCode.OK, ExitCode.USAGE, ExitCode.INTERNAL)))
@config_option
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("awx"),
              show_default=True, help="Directory to write the files into (created).")
@click.option("--env", "-e", "envs", multiple=True, help="Only this environment (repeatable; default: all).")
def export(config_path: Path, out_dir: Path, envs: tuple[str, ...]) -> None:
    """Write lrelease's AWX objects as a playbook of awx.awx modules (awx-lrelease.yml: credential
    type, credential, execution environment, project, inventory sources, job templates deploy /
    rollback / status with surveys, and a workflow that turns red after a rollback) plus the
    inventory source files the project must carry. Apply it with ansible-playbook; docs/awx.md."""
    made = awxexport.build_export(_project(config_path), envs)
    for path in awxexport.write_export(made, out_dir):
        lines.print(f"wrote {path}")


COMMANDS = (awx,)
