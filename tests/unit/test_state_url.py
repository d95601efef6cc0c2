"""Shared state on a server: the URL comes from the environment (LRELEASE_STATE_URL, or the file
LRELEASE_STATE_URL_FILE names), never from lrelease.yml; its password is never shown; the CLI and
the playbooks' fencing check (the lrelease_lock lookup, in a real ansible-playbook) use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrelease import secrets, statedb
from lrelease.cli.main import cli
from lrelease.errors import ExitCode
from lrelease.state import StateError, StateStore, lock_check
from tests.statedbs import dump

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


@pytest.fixture(autouse=True)
def fresh_secrets():
    secrets.clear()
    yield
    secrets.clear()


def one_line(err: pytest.ExceptionInfo, password: str) -> str:
    text = str(err.value)
    assert "\n" not in text and password not in text and err.value.exit_code == ExitCode.USAGE, text
    return text


# -- where the URL comes from ----------------------------------------------------------------------
def test_the_url_comes_from_the_environment_and_its_password_is_registered():
    # Given a URL in LRELEASE_STATE_URL (the plain postgresql:// spelling)
    where = statedb.configured({"LRELEASE_STATE_URL": "postgresql://rel:s3cr3t-pw@db.example:5433/lrelease"})
    # Then it is PostgreSQL through psycopg 3, shown without its password, which is now masked everywhere
    assert where.url.drivername == "postgresql+psycopg" and where.path is None
    assert where.shown == "postgresql+psycopg://rel:***@db.example:5433/lrelease"
    assert secrets.scrub("login s3cr3t-pw failed") == "login *** failed"
    # And nothing set means the project's SQLite file
    assert statedb.configured({}) is None


def test_the_url_may_come_from_a_file(tmp_path):
    # Given a secret file holding the URL (what systemd's LoadCredential or an AWX credential gives)
    (tmp_path / "url").write_text("\n  postgresql+psycopg://rel:from-a-file@db/lrelease  \n")
    where = statedb.configured({"LRELEASE_STATE_URL_FILE": str(tmp_path / "url")})
    assert where.target == "postgresql+psycopg://rel:from-a-file@db/lrelease"
    assert "from-a-file" not in where.shown and secrets.scrub("from-a-file") == "***"


@pytest.mark.parametrize("env, expected", [
    ({"LRELEASE_STATE_URL": "mysql://rel:pw-in-url@db/x"},
     "LRELEASE_STATE_URL: expected a postgresql+psycopg://user:password@host/database URL (or sqlite:///path),"
     " got 'mysql://rel:***@db/x'"),
    ({"LRELEASE_STATE_URL": "postgresql://rel:pw-in-url@db/x", "LRELEASE_STATE_URL_FILE": "/x"},
     "LRELEASE_STATE_URL and LRELEASE_STATE_URL_FILE are both set: set one"),
    ({"LRELEASE_STATE_URL_FILE": "/nonexistent/url"},
     "LRELEASE_STATE_URL_FILE (/nonexistent/url): cannot read it (No such file or directory)"),
])
def test_a_bad_url_setting_is_one_line_without_the_password(env, expected):
    with pytest.raises(StateError) as err:
        statedb.configured(env)
    assert one_line(err, "pw-in-url") == expected


def test_a_url_file_with_more_than_the_url_is_refused(tmp_path):
    (tmp_path / "url").write_text("postgresql://rel:pw-in-url@db/x\npostgresql://rel:pw-in-url@db/y\n")
    with pytest.raises(StateError) as err:
        statedb.configured({"LRELEASE_STATE_URL_FILE": str(tmp_path / "url")})
    assert one_line(err, "pw-in-url").endswith("expected one line, the state database's URL; found 2")


# -- a server that cannot be used -----------------------------------------------------------------------
def test_a_server_that_does_not_answer_is_one_line_without_the_password(pg_server):
    # Given a URL whose port nobody listens on
    url = pg_server.url("nothing").replace(f":{pg_server.port}/", ":1/")
    with pytest.raises(StateError) as err:
        StateStore(url)
    text = one_line(err, pg_server.password)
    assert text.startswith(f"postgresql+psycopg://lrelease:***@127.0.0.1:1/nothing: the state database cannot be"
                           " used (") and "LRELEASE_STATE_URL" in text


def test_a_wrong_password_is_one_line_without_either_password(pg_server):
    url = pg_server.new_database().replace(pg_server.password, "not-the-password")
    with pytest.raises(StateError) as err:
        StateStore(url)
    text = one_line(err, "not-the-password")
    assert "password authentication failed" in text and pg_server.password not in text


# -- the CLI and the playbooks' fencing check ----------------------------------------------------------
def example_project(tmp_path: Path) -> Path:
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories" / "fleet.yml").write_text((ROOT / "inventories" / "fleet.example.yml").read_text())
    path = tmp_path / "lrelease.yml"
    path.write_text((ROOT / "lrelease.example.yml").read_text())
    return path


def test_history_reads_the_server_named_by_the_environment(tmp_path, pg_server, monkeypatch):
    # Given a roll-out recorded on the server (by an AWX job, say)
    url = pg_server.new_database()
    with StateStore(url) as store:
        store.start_rollout("production", "1.4.0", "deploy", "awx", rollout_id="awx000000001", reason="nightly")
    # When the CLI runs with LRELEASE_STATE_URL set
    monkeypatch.setenv("LRELEASE_STATE_URL", url)
    result = CliRunner().invoke(cli, ["history", "--json", "--config", str(example_project(tmp_path))])
    # Then it shows that roll-out, and no SQLite file was made
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.output)["rollouts"]] == ["awx000000001"]
    assert not (tmp_path / ".lrelease" / "lrelease.db").exists()


def test_the_cli_with_an_unusable_url_exits_2_with_one_line(tmp_path, pg_server, monkeypatch):
    monkeypatch.setenv("LRELEASE_STATE_URL", pg_server.url("nothing").replace(f":{pg_server.port}/", ":1/"))
    result = CliRunner().invoke(cli, ["history", "--config", str(example_project(tmp_path))])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("lrelease: error: postgresql+psycopg://lrelease:***@127.0.0.1:1/nothing: ")
    assert pg_server.password not in result.output


def test_lock_check_reads_the_url_given_or_the_one_in_the_environment(pg_server, monkeypatch):
    url = pg_server.new_database()
    with StateStore(url) as store:
        lock = store.take_lock("production", "holder000001")
        assert lock_check(url, "production", lock.row.token) == "held"
        monkeypatch.setenv("LRELEASE_STATE_URL", url)
        assert lock_check("", "production", lock.row.token) == "held"
        assert lock_check("", "production", lock.row.token - 1).startswith(
            "the lock of production is held by roll-out holder000001 (pid ")
        lock.release()
        assert lock_check("", "production", lock.row.token) == "the lock of production was released"
    monkeypatch.delenv("LRELEASE_STATE_URL")
    with pytest.raises(StateError, match="db is empty and neither LRELEASE_STATE_URL nor"):
        lock_check("", "production", 1)


PLAYBOOK = """\
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The fencing check of deploy.yml
      ansible.builtin.debug:
        msg: "{{ lookup('lrelease_lock', db=lrelease_lock.db, env=lrelease_lock.env, token=lrelease_lock.token) }}"
"""


def test_the_playbooks_fencing_check_finds_the_server_through_the_environment(tmp_path, pg_server):
    # Given a lock held on the server, and the extra var the wrapper passes for a server (no URL in it)
    url = pg_server.new_database()
    with StateStore(url) as store:
        lock = store.take_lock("production", "holder000001")
        (tmp_path / "check.yml").write_text(PLAYBOOK)
        extra = json.dumps({"lrelease_lock": {"db": "", "env": "production", "token": lock.row.token}})
        env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_NOCOLOR": "1"}
        argv = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", str(tmp_path / "check.yml"), "-e", extra]
        # When ansible-playbook runs the lookup with the URL in its environment only
        held = subprocess.run(argv, cwd=ROOT, env={**env, "LRELEASE_STATE_URL": url}, capture_output=True,
                              text=True, timeout=120)
        # Then it reads the lock there
        assert held.returncode == 0 and '"msg": "held"' in held.stdout, held.stdout + held.stderr
        # And a broken URL fails the task with one line that does not show the password
        broken = subprocess.run(argv, cwd=ROOT, env={**env, "LRELEASE_STATE_URL": url.replace(
            f":{pg_server.port}/", ":1/")}, capture_output=True, text=True, timeout=120)
        assert broken.returncode != 0 and "the state database cannot be used" in broken.stdout, broken.stdout
        assert pg_server.password not in broken.stdout + broken.stderr
        lock.release()


def test_the_urls_password_is_never_recorded(pg_server):
    # Given a store on the server, and a reason and a host's detail that (wrongly) carry its URL
    url = pg_server.new_database()
    with StateStore(url) as store:
        store.start_rollout("production", "1.0", "deploy", "ci", rollout_id="r1", reason=f"state at {url}")
        store.record_host("r1", "node1", "failed", {"msg": f"could not reach {url}"})
    # Then no row of any table holds the password; the URL is there masked
    rows = dump(url)
    assert pg_server.password not in rows and "postgresql+psycopg://lrelease:***@127.0.0.1" in rows
