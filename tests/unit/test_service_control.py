"""Service control and staging by the roles themselves, run by real ansible-playbook on this
machine (connection local, a temporary deploy root):

- ``service.shell``: the line runs under /bin/sh -c with the action as "$1";
- ``service.systemd`` + ``unit_file``: the release's unit file is installed, and daemon-reload
  runs only when it changed. This machine (like the sandbox) runs no systemd, so ``systemctl``
  is a recording stand-in on PATH: what is proven is which systemctl calls the roles make,
  not what a live systemd does with them;
- the stage role's formats: a zip with a top directory, a single binary named after the app;
- lrelease.yml's ``service`` keys: bad values are one line, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease.cli.main import cli
from lrelease.config import load_config
from tests.unit.test_artifacts import SHOP, zip_bytes

ROOT = Path(__file__).resolve().parents[2]

SYSTEMCTL = """#!/bin/sh
# Records each call; answers `show` as systemd does for a loaded, running service.
echo "$*" >> {log}
case "$1" in
show) printf 'Id=%s\\nNames=%s\\nLoadState=loaded\\nActiveState=active\\nSubState=running\\n' "$2" "$2" ;;
esac
exit 0
"""


def play(tmp_path: Path, tasks: list[dict], extravars: dict, *,
         stub_path: Path | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook (the repo's ansible.cfg: roles and plugins) of ``tasks`` on localhost."""
    play_ = {"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}
    if stub_path is not None:
        play_["environment"] = {"PATH": f"{stub_path}:{os.environ['PATH']}"}
    book = tmp_path / f"play-{len(list(tmp_path.glob('play-*')))}.yml"
    book.write_text(yaml.safe_dump([play_], sort_keys=False))
    vars_file = book.with_suffix(".json")
    vars_file.write_text(json.dumps(extravars))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "0",
           "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,", str(book),
                           "-e", f"@{vars_file}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def role(name: str, tasks_from: str) -> dict:
    return {"ansible.builtin.include_role": {"name": name, "tasks_from": tasks_from}}


def release(deploy_root: Path, build: str, files: dict[str, str]) -> None:
    """releases/<build> with ``files``, and `current` pointing at it."""
    for rel_path, text in files.items():
        path = deploy_root / "releases" / build / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    link = deploy_root / ".current.tmp"
    link.symlink_to(f"releases/{build}")
    link.replace(deploy_root / "current")


UNIT_A = "[Service]\nExecStart=/opt/shop/current/bin/shop\n"
UNIT_B = "[Service]\nExecStart=/opt/shop/current/bin/shop --workers 4\n"
RESTARTS = [("lrelease_switch", "restart"), ("lrelease_rollback", "restart_alone")]


def test_a_unit_file_is_installed_and_daemon_reload_runs_only_when_it_changed(tmp_path):
    # Given releases 2.0.0 and 1.0.0 (current) whose deploy/shop.service differ, a systemd unit
    # `shop` and a recording systemctl
    deploy_root, units, log = tmp_path / "opt-shop", tmp_path / "units", tmp_path / "systemctl.log"
    release(deploy_root, "2.0.0", {"deploy/shop.service": UNIT_B})
    release(deploy_root, "1.0.0", {"deploy/shop.service": UNIT_A})
    for name, _ in RESTARTS:
        (units / name).mkdir(parents=True)  # /etc/systemd/system exists on a host
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "systemctl").write_text(SYSTEMCTL.format(log=log))
    (stub / "systemctl").chmod(0o755)
    mark = lambda text: {"ansible.builtin.shell": f"echo '-- {text}' >> {log}"}  # noqa: E731
    point = lambda build: {"ansible.builtin.shell": f"ln -sfn releases/{build} {deploy_root}/current"}  # noqa: E731
    # When each role's restart step runs three times: a first install of the unit file, the same
    # release again, then a release whose unit file differs
    tasks = []
    for name, tasks_from in RESTARTS:
        tasks += [point("1.0.0"), mark(f"{name} 1"), role(name, tasks_from), mark(f"{name} 2"), role(name, tasks_from),
                  point("2.0.0"), mark(f"{name} 3"), role(name, tasks_from)]
    proc = play(tmp_path, tasks, {"lrelease_deploy_root": str(deploy_root), "lrelease_service_name": "shop",
                                  "lrelease_service_unit_file": "deploy/shop.service",
                                  **{f"{name}_systemd_unit_dir": str(units / name) for name, _ in RESTARTS}},
                stub_path=stub)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = {block.split("\n", 1)[0]: [line for line in block.split("\n")[1:] if line and line != "show shop"]
             for block in log.read_text().split("-- ")[1:]}
    # Then for both roles daemon-reload runs before the restart in the first and third runs only
    # (the installed file changed), and the unit is restarted every time
    for name, _ in RESTARTS:
        assert [calls[f"{name} {n}"] for n in (1, 2, 3)] == [
            ["daemon-reload", "restart shop"], ["restart shop"], ["daemon-reload", "restart shop"]], name
        # And the unit file is installed as shop.service, as the newest release has it
        assert [p.name for p in (units / name).iterdir()] == ["shop.service"]
        assert (units / name / "shop.service").read_text() == UNIT_B


def test_a_shell_line_runs_under_sh_with_the_action_as_its_first_argument(tmp_path):
    # Given a host on 2.0.0 whose previous build is 1.0.0, and service.shell: a line with a
    # shell's own syntax (cd, &&, $(...), a redirection, "$1")
    deploy_root, out = tmp_path / "opt-shop", tmp_path / "calls"
    for build in ("1.0.0", "2.0.0"):
        release(deploy_root, build, {".lrelease-manifest.json": json.dumps({"build": build, "sha256": None})})
    (deploy_root / ".lrelease").mkdir()
    (deploy_root / ".lrelease" / "previous").write_text("1.0.0\n")
    shell = f'cd {tmp_path} && echo "$0 $1 $# $(readlink {deploy_root}/current)" >> {out.name}'
    # When the switch role and the rollback role restart the service as a step of its own, and then
    # the rollback role rolls the host back (its switch step restarts the service in the same
    # module run, as the switch role's does in a roll-out)
    proc = play(tmp_path, [role("lrelease_switch", "restart_alone"), role("lrelease_rollback", "restart_alone"),
                           role("lrelease_rollback", "switch"), role("lrelease_rollback", "restart")],
                {"lrelease_deploy_root": str(deploy_root), "lrelease_build": "2.0.0", "lrelease_service_shell": shell})
    # Then /bin/sh ran the line each time, with $0 lrelease-service and the action as "$1", the
    # last time once the host was back on 1.0.0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text().splitlines() == ["lrelease-service restart 1 releases/2.0.0"] * 2 + [
        "lrelease-service restart 1 releases/1.0.0"]
    assert os.readlink(deploy_root / "current") == "releases/1.0.0"


def test_the_roles_refuse_conflicting_service_settings_before_any_change(tmp_path):
    # Given a command and a shell line at once, and a unit file that is outside the release and has no unit
    service = {"lrelease_service_command": "/opt/shop/bin/ctl", "lrelease_service_shell": "exec ./ctl",
               "lrelease_service_unit_file": "../../etc/shadow"}
    # When each role's preflight runs, Then each fails naming both problems at once
    proc = play(tmp_path, [{"ansible.builtin.import_role": {"name": r, "tasks_from": "preflight"},
                            "ignore_errors": True} for r in ("lrelease_switch", "lrelease_rollback")],
                {"lrelease_build": "1.0.0", "lrelease_deploy_root": "/opt/shop", "lrelease_app_port": 9000,
                 **service})
    assert "ignored=2" in proc.stdout, proc.stdout
    for r in ("lrelease_switch", "lrelease_rollback"):
        assert f"give exactly one of {r}_service_command (lrelease_service_command), {r}_service_shell" in proc.stdout
        assert (f"{r}_service_unit_file (lrelease_service_unit_file) goes with a systemd unit and is a path inside "
                'the release (relative, no ..), got \\"../../etc/shadow\\"') in proc.stdout, proc.stdout


# -- the stage role, for each way an artifact can look ----------------------------------------
def stage_vars(tmp_path: Path, artifact: Path, fmt: str, build: str) -> dict:
    return {"lrelease_build": build, "lrelease_artifact": str(artifact),
            "lrelease_deploy_root": str(tmp_path / "opt-shop"),
            "lrelease_artifact_sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
            "lrelease_artifact_format": fmt, "lrelease_artifact_strip_components": "auto"}


def test_the_stage_role_installs_a_binary_under_the_app_name_and_a_zip_without_its_top_directory(tmp_path):
    # Given shop-1.0.0 (one executable) and shop-1.1.0.zip (a top directory shop-1.0.0/)
    binary = tmp_path / "shop-1.0.0"
    binary.write_bytes(b"#!/bin/sh\necho shop\n")
    archive = tmp_path / "shop-1.1.0.zip"
    archive.write_bytes(zip_bytes(SHOP))
    # When the stage role stages each (format binary, then zip)
    proc = play(tmp_path, [{"ansible.builtin.include_role": {"name": "lrelease_stage"},
                            "vars": stage_vars(tmp_path, artifact, fmt, build)}
                           for artifact, fmt, build in ((binary, "binary", "1.0.0"), (archive, "zip", "1.1.0"))], {})
    assert proc.returncode == 0, proc.stdout
    # Then releases/1.0.0/shop is the executable and releases/1.1.0/start.sh exists (no shop-1.0.0/)
    releases = tmp_path / "opt-shop" / "releases"
    assert (releases / "1.0.0" / "shop").read_bytes() == binary.read_bytes()
    assert (releases / "1.0.0" / "shop").stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in (releases / "1.1.0").iterdir()) == [".lrelease-manifest.json", "bin", "etc",
                                                                       "start.sh"]
    # And the incoming artifacts are gone
    assert list((tmp_path / "opt-shop" / ".lrelease" / "incoming").iterdir()) == []


def test_the_stage_role_refuses_an_unknown_format_before_sending_anything(tmp_path):
    artifact = tmp_path / "shop-1.0.0.rar"
    artifact.write_bytes(b"x")
    proc = play(tmp_path, [{"ansible.builtin.import_role": {"name": "lrelease_stage"}}],
                stage_vars(tmp_path, artifact, "rar", "1.0.0"))
    assert proc.returncode != 0
    assert "lrelease_stage_format" in proc.stdout and "rar" in proc.stdout, proc.stdout
    assert not (tmp_path / "opt-shop").exists()


# -- lrelease.yml: service.shell, service.unit_file ---------------------------------------------
def config(tmp_path: Path, service: dict) -> Path:
    data = {"version": 1, "app": "shop", "environments": {"production": {"deploy_root": "/opt/shop",
                                                                         "service": service}}}
    path = tmp_path / "lrelease.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_service_shell_and_unit_file_reach_the_playbooks(tmp_path):
    shell = load_config(config(tmp_path, {"shell": "cd /opt/shop && exec ./shop-ctl"})).environment("production")
    assert shell.playbook_vars()["lrelease_service_shell"] == "cd /opt/shop && exec ./shop-ctl"
    assert not {"lrelease_service_command", "lrelease_service_name"} & set(shell.playbook_vars())
    unit = load_config(config(tmp_path, {"systemd": "shop", "unit_file": "deploy/shop.service"})).environment(
        "production")
    assert {k: v for k, v in unit.playbook_vars().items() if k.startswith("lrelease_service")} == {
        "lrelease_service_name": "shop", "lrelease_service_unit_file": "deploy/shop.service"}


BAD_SERVICE = [
    ({"shell": "exec ./a", "command": "/opt/a"}, "environments.production.service",
     "exactly one of command"),
    ({"shell": "a\nb"}, "environments.production.service.shell", "one line"),
    ({"shell": "echo {{ lookup('pipe', 'id') }}"}, "environments.production.service.shell", "no {{ }}"),
    ({"shell": "   "}, "environments.production.service.shell", "a shell command line"),
    ({"shell": ["exec", "./a"]}, "environments.production.service.shell", "a shell command line"),
    ({"command": "/opt/a", "unit_file": "x.service"}, "environments.production.service.systemd",
     "a value (required"),
    ({"systemd": "shop", "unit_file": "../etc/x.service"}, "environments.production.service.unit_file",
     "a path inside the release"),
    ({"systemd": "shop", "unit_file": "/etc/x.service"}, "environments.production.service.unit_file",
     "a path inside the release"),
    ({"systemd": "shop.timer", "unit_file": "deploy/shop.timer"}, "environments.production.service.systemd",
     "a service unit"),
]


@pytest.mark.parametrize("service, key, expected", BAD_SERVICE, ids=[str(b[0]) for b in BAD_SERVICE])
def test_a_bad_service_is_one_line_exit_2_and_changes_nothing(tmp_path, service, key, expected):
    path = config(tmp_path, service)
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(path)])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert f"{path}: {key}: " in line and expected in line, line
    assert not (tmp_path / ".lrelease").exists()
