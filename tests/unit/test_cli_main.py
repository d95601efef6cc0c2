"""The CLI loads a command's module only when that command is asked for."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from lrelease.cli.main import COMMAND_MODULES, cli


def test_the_table_of_command_modules_names_every_command_of_every_module():
    # Given every module the table names, with the commands it defines
    defined = {}
    for module in set(COMMAND_MODULES.values()):
        for command in importlib.import_module(f"lrelease.cli.{module}").COMMANDS:
            defined[command.name] = module
    # Then the table lists each command with its own module, and nothing else
    assert defined == COMMAND_MODULES


def test_deploy_does_not_load_the_modules_of_other_commands():
    # When `lrelease deploy --help` runs in a fresh interpreter
    probe = ("import sys\nfrom lrelease.cli.main import cli\n"
             "try:\n    cli(['deploy', '--help'], prog_name='lrelease')\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith('lrelease.cli.')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    # Then the deploy's module is loaded and those of the AWX, report, sandbox and git commands are not
    assert "'lrelease.cli.release'" in loaded
    for other in ("awx", "htmlreport", "sandbox", "git", "nightly"):
        assert f"'lrelease.cli.{other}'" not in loaded, loaded


def test_help_lists_every_command_and_shows_one_loaded_on_demand():
    runner = CliRunner()
    listed = runner.invoke(cli, ["help"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in COMMAND_MODULES)
    shown = runner.invoke(cli, ["help", "nightly"])
    assert shown.exit_code == 0 and "nightly [OPTIONS]" in shown.output
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0 and all(f"  {name} " in top.output for name in COMMAND_MODULES)
