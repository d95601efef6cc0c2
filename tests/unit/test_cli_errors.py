"""The CLI's one error boundary: an unforeseen error exits 70 with one line, never 0 or 1."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.state import StateStore

ROOT = Path(__file__).resolve().parents[2]


def example_project(tmp_path: Path) -> Path:
    """The example config and fleet file, copied where their state dir may be written."""
    (tmp_path / "inventories").mkdir()
    for name in ("fleet.example.yml", "fleet.yml"):  # the example's `fleet:` names the second
        (tmp_path / "inventories" / name).write_text((ROOT / "inventories" / "fleet.example.yml").read_text())
    path = tmp_path / "lrelease.yml"
    path.write_text((ROOT / "lrelease.example.yml").read_text())
    return path


def test_an_unforeseen_error_exits_70_with_one_line_and_the_traceback_only_with_debug(tmp_path, monkeypatch):
    # Given a state store that fails in a way nobody foresaw
    def broken(self, env=None, limit=20):
        raise ZeroDivisionError("division by zero")
    monkeypatch.setattr(StateStore, "history", broken)
    path = str(example_project(tmp_path))
    # When `history` runs, without and with --debug
    plain = CliRunner().invoke(cli, ["history", "--config", path])
    debug = CliRunner().invoke(cli, ["--debug", "history", "--config", path])
    # Then both exit 70 (never 0 or 1), with one line that names the error and sends to `status`
    assert plain.exit_code == debug.exit_code == 70, plain.output
    assert plain.output.strip().splitlines() == [
        "lrelease: internal error: ZeroDivisionError: division by zero; the fleet may be inconsistent: "
        "run `lrelease status --env ENV` (details with --debug)"]
    # And the traceback only with --debug
    assert "Traceback" not in plain.output
    assert "Traceback" in debug.output and "def broken" not in plain.output


def test_a_rollback_target_that_is_not_a_build_id_is_one_line_and_changes_nothing(tmp_path):
    path = str(example_project(tmp_path))
    for bad in ("1.0.0\n", "../etc", "$(reboot)", ""):
        result = CliRunner().invoke(cli, ["rollback", "--env", "production", "--to", bad, "--yes", "--config", path])
        assert result.exit_code == 2, (bad, result.output)
        [line] = result.output.strip().splitlines()
        assert line.startswith("lrelease: error: --to: build: a build id"), line
    assert not (tmp_path / ".lrelease").exists()


def test_a_corrupt_state_database_stops_history_but_not_plan(tmp_path):
    # Given a state database that is not one
    path = str(example_project(tmp_path))
    (tmp_path / ".lrelease").mkdir()
    db = tmp_path / ".lrelease" / "lrelease.db"
    db.write_bytes(b"not a database\n" * 100)
    # When history runs, it cannot: one line naming the file and what to do, exit 2
    history = CliRunner().invoke(cli, ["history", "--config", path])
    assert history.exit_code == 2, history.output
    [line] = history.output.strip().splitlines()
    assert str(db) in line and "move it aside" in line, line
    # When plan runs (it reads no host and needs no history), it plans and says what it went without
    plan = CliRunner().invoke(cli, ["plan", "--env", "production", "--json", "--config", path])
    assert plan.exit_code == 0, plan.output
    data = json.loads(plan.output)
    assert data["waves"] and data["first_install"] == []
    assert str(db) in data["state_problem"]
    # And the database is left as it was (nothing rewrote it)
    assert db.read_bytes() == b"not a database\n" * 100
