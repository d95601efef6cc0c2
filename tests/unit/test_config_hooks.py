"""lrelease.yml's `shared` and `hooks`: turned into the extra vars the roles read; bad ones are one
line naming the file and the key, exit 2, and nothing is written."""

from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.config import load_config
from lrelease.errors import ConfigError
from lrelease.hooks import RENAMED
from lrelease.schema_check import problems
from tests.unit.test_config import GOOD, write_config

KEY = "environments.production"


def with_prod(**kv) -> dict:
    data = copy.deepcopy(GOOD)
    data["environments"]["production"].update(kv)
    return data


def test_shared_paths_and_hooks_become_the_extra_vars_the_roles_read(tmp_path):
    # Given the two documented examples (a migration once before the first switch, a cache
    # warm-up after each restart), a controller notification and shared paths
    data = with_prod(
        shared={"dirs": ["log", "var/uploads/"], "files": [".env"]},
        hooks={
            "after_restart": [{"shell": "./bin/warm-cache.sh >> log/warm.log", "timeout_seconds": 60}],
            "before_switch": [{"command": ["bin/migrate", "--to", "latest"], "run_once": True,
                               "env": ["DATABASE_URL"]}],
            "after_gate": [{"command": "/usr/local/bin/notify", "run_on": "controller"}],
        })
    # When it is loaded
    env = load_config(write_config(tmp_path, data)).environment("production")
    got = env.playbook_vars()
    # Then the paths are relative, normalised (no trailing /), in the order written
    assert got["lrelease_shared_dirs"] == ["log", "var/uploads"]
    assert got["lrelease_shared_files"] == [".env"]
    # And every hook has its defaults filled in, under its point; a controller hook runs in the
    # directory of lrelease.yml
    assert got["lrelease_hooks"] == {
        "before_switch": [{"command": ["bin/migrate", "--to", "latest"], "run_once": True, "run_on": "host",
                           "timeout_seconds": 300, "env": ["DATABASE_URL"]}],
        "after_restart": [{"shell": "./bin/warm-cache.sh >> log/warm.log", "run_once": False, "run_on": "host",
                           "timeout_seconds": 60, "env": []}],
        "after_gate": [{"command": ["/usr/local/bin/notify"], "run_once": False, "run_on": "controller",
                        "timeout_seconds": 300, "env": [], "chdir": str(tmp_path)}],
    }


def test_without_shared_or_hooks_the_roles_get_empty_values(tmp_path):
    got = load_config(write_config(tmp_path, GOOD)).environment("production").playbook_vars()
    assert (got["lrelease_shared_dirs"], got["lrelease_shared_files"], got["lrelease_hooks"]) == ([], [], {})


# (case, the environment's keys, the key named, what the message says was expected). The structure
# is checked against the JSON Schema first (its messages), then the rules it cannot say (ours).
BAD = [
    ("absolute path", {"shared": {"dirs": ["/var/log"]}}, "shared.dirs[0]", "a relative path inside the release"),
    ("dot-dot", {"shared": {"files": ["config/../../etc/passwd"]}}, "shared.files[0]", "a relative path"),
    ("a space", {"shared": {"dirs": ["my logs"]}}, "shared.dirs[0]", "segments of letters, digits"),
    ("the manifest", {"shared": {"files": [".lrelease-manifest.json"]}}, "shared.files[0]", "a path relative"),
    ("a path twice", {"shared": {"dirs": ["log"], "files": ["log"]}}, "shared.files[0]",
     "a path not given elsewhere and not inside another shared path; 'log' overlaps 'log'"),
    ("a path inside another", {"shared": {"dirs": ["var", "var/log"]}}, "shared.dirs[1]", "'var/log' overlaps 'var'"),
    ("not a list", {"shared": {"dirs": "log"}}, "shared.dirs", "a list of relative paths"),
    ("unknown shared key", {"shared": {"links": ["x"]}}, "shared.links", "unknown key"),
    ("unknown point", {"hooks": {"before_deploy": [{"shell": "true"}]}}, "hooks.before_deploy", "unknown key"),
    ("command and shell", {"hooks": {"after_stage": [{"command": "bin/x", "shell": "true"}]}}, "hooks.after_stage[0]",
     "exactly one of command"),
    ("neither", {"hooks": {"after_stage": [{"run_once": True}]}}, "hooks.after_stage[0]", "exactly one of command"),
    ("shell in a command path", {"hooks": {"before_switch": [{"command": "bin/migrate; reboot"}]}},
     "hooks.before_switch[0].command", "the program: a path"),
    ("a number argument", {"hooks": {"before_switch": [{"command": ["bin/migrate", "--steps", 3]}]}},
     "hooks.before_switch[0].command[2]", "(a string)"),
    ("jinja in shell", {"hooks": {"after_restart": [{"shell": "echo {{ lookup('env', 'HOME') }}"}]}},
     "hooks.after_restart[0].shell", "no {{ }}"),
    ("a bad run_on", {"hooks": {"after_gate": [{"shell": "true", "run_on": "localhost"}]}},
     "hooks.after_gate[0].run_on", "host or controller"),
    ("the old name on, quoted", {"hooks": {"after_gate": [{"shell": "true", "on": "controller"}]}},
     "hooks.after_gate[0].on", "renamed to run_on"),
    ("run_once a string", {"hooks": {"after_gate": [{"shell": "true", "run_once": "yes"}]}},
     "hooks.after_gate[0].run_once", "true or false"),
    ("a zero timeout", {"hooks": {"after_gate": [{"shell": "true", "timeout_seconds": 0}]}},
     "hooks.after_gate[0].timeout_seconds", "a number > 0"),
    ("a bad env name", {"hooks": {"after_gate": [{"shell": "true", "env": ["DB-URL"]}]}},
     "hooks.after_gate[0].env[0]", "an environment variable name"),
    ("an empty point", {"hooks": {"on_rollback": []}}, "hooks.on_rollback", "a list of 1 to 32 hooks"),
]


@pytest.mark.parametrize("case, production, key, expected", BAD, ids=[c[0] for c in BAD])
def test_a_bad_shared_path_or_hook_is_one_line_exit_2_and_writes_nothing(tmp_path, case, production, key, expected):
    # Given a project whose production environment has one bad shared path or hook
    path = write_config(tmp_path, with_prod(**production))
    before = sorted(tmp_path.rglob("*"))
    # When it is loaded, and when `lrelease plan` reads it
    with pytest.raises(ConfigError) as err:
        load_config(path)
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    # Then the error names the key and what was expected
    assert err.value.key == f"{KEY}.{key}" and expected in err.value.expected, str(err.value)
    # And the CLI says so in one line, exits 2 and writes nothing
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"lrelease: error: {path}: {KEY}.{key}: "), \
        result.stderr
    assert expected in result.stderr, result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_a_secret_looking_key_in_a_hook_is_refused_like_anywhere_else(tmp_path):
    # Given a hook that carries a password itself instead of naming the variable that holds it
    data = with_prod(hooks={"before_switch": [{"shell": "true", "db_password": "hunter22"}]})
    # When loaded, Then it is refused without echoing the value
    with pytest.raises(ConfigError, match=r"hooks\.before_switch\[0\]\.db_password: no secrets") as err:
        load_config(write_config(tmp_path, data))
    assert "hunter22" not in str(err.value)


def test_a_hook_that_still_says_on_is_one_line_naming_its_new_name_exit_2_and_nothing_runs(tmp_path):
    # Given a hook written with the key's old name, `on:` unquoted (YAML 1.1 reads the key as true),
    # which would run a controller notification on every host if it were read as anything else
    path = write_config(tmp_path, GOOD)  # its last environment is `next`
    path.write_text(path.read_text()
                    + "    hooks:\n      after_gate:\n        - shell: touch ran\n          on: controller\n")
    before = sorted(tmp_path.rglob("*"))
    # When it is loaded, and when `lrelease deploy` reads it
    with pytest.raises(ConfigError) as err:
        load_config(path)
    result = CliRunner().invoke(cli, ["deploy", "--env", "next", "--build", "1.0.0", "--yes", "--config", str(path)])
    # Then the one error names the file, the key where it is written and its new name
    key = "environments.next.hooks.after_gate[0].on"
    assert (err.value.where, err.value.key) == (str(path), key), str(err.value)
    assert err.value.expected.startswith("renamed to run_on (host or controller"), str(err.value)
    # And the CLI says so in one line, exits 2, and nothing ran or was written
    assert result.exit_code == 2, result.output
    assert result.stderr == f"lrelease: error: {path}: {key}: {err.value.expected}\n", result.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_run_on_controller_makes_a_controller_hook_that_runs_in_the_directory_of_lrelease_yml(tmp_path):
    # Given a hook with run_on: controller, written in YAML as the docs show it
    path = write_config(tmp_path, GOOD)
    path.write_text(path.read_text()
                    + "    hooks:\n      after_gate:\n        - shell: ./notify\n          run_on: controller\n")
    # When it is loaded, Then it is a controller hook, in the extra var under its new name
    [hook] = load_config(path).environment("next").hooks
    assert (hook.point, hook.shell, hook.run_on, hook.chdir) == ("after_gate", "./notify", "controller", str(tmp_path))
    assert hook.to_var()["run_on"] == "controller" and "on" not in hook.to_var()


def test_the_published_schema_tells_editors_that_on_was_renamed(tmp_path):
    # Given a hook with `on:` as an editor reads it (YAML 1.2: the key is the string "on")
    data = with_prod(hooks={"after_gate": [{"shell": "true", "on": "controller"}]})
    # When it is checked against the JSON Schema alone (what VS Code or JetBrains do)
    found = [(e.key, e.expected) for e in problems(data, "lrelease", "lrelease.yml")]
    # Then the one mistake is that key, renamed; run_on is what the schema offers instead
    assert found == [(f"{KEY}.hooks.after_gate[0].on", RENAMED)]
    assert RENAMED.startswith("renamed to run_on")
