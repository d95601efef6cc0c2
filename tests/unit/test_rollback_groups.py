"""Rollback groups: rollback.min_in_service in lrelease.yml, and the groups rollback.yml makes of it.

The groups are the real playbook's: ansible-playbook runs playbooks/rollback.yml on an inventory
of local-connection hosts with `--tags` selecting none of the role's tasks, so only the play's own
tasks (tagged `always`: the setting's check, the stop after a failed group, the group's listing)
run, plus a test hook task. Nothing connects anywhere.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lrelease.config import load_config
from lrelease.errors import ConfigError
from tests.unit.playbook import ANSIBLE_PLAYBOOK, ENV, ROOT
from tests.unit.test_config import GOOD, changed, prod, write_config

GROUP_RE = re.compile(r'"msg": "(\d+) of (\d+) host\(s\): ([^"]*)"')


# -- lrelease.yml ----------------------------------------------------------------------------
def test_min_in_service_defaults_to_half_the_hosts(tmp_path):
    # Given an environment without a rollback section
    got = load_config(write_config(tmp_path, GOOD)).environment("next").playbook_vars()
    # Then a rollback keeps half of the hosts in service and is not forced serial
    assert got["lrelease_rollback_min_in_service"] == "50%"
    assert "lrelease_rollback_serial" not in got


@pytest.mark.parametrize("value", [0, 5, 999_999, "0%", "1%", "50%", "100%"])
def test_min_in_service_takes_a_count_or_a_percentage(tmp_path, value):
    # Given rollback.min_in_service as a host count or a percentage
    cfg = load_config(write_config(tmp_path, changed(prod(rollback={"min_in_service": value}))))
    # When the environment's settings become extra vars
    env = cfg.environment("production")
    # Then rollback.yml gets it as is
    assert env.rollback_min_in_service == value
    assert env.playbook_vars()["lrelease_rollback_min_in_service"] == value


def test_serial_still_means_one_host_at_a_time(tmp_path):
    # Given rollback.serial: true beside a min_in_service
    data = changed(prod(rollback={"serial": True, "min_in_service": 2}))
    got = load_config(write_config(tmp_path, data)).environment("production").playbook_vars()
    # Then rollback.yml gets serial 1, which wins over the computed group size
    assert got["lrelease_rollback_serial"] == 1 and got["lrelease_rollback_min_in_service"] == 2


@pytest.mark.parametrize("value", [-1, 1_000_000, "101%", "-5%", "50", "50 %", "50%\n", "half", 2.5, True, None, [1]])
def test_a_bad_min_in_service_is_one_line_naming_the_key(tmp_path, value):
    # Given a min_in_service that is neither a host count nor a percentage
    path = write_config(tmp_path, changed(prod(rollback={"min_in_service": value})))
    # When the config is loaded
    with pytest.raises(ConfigError) as err:
        load_config(path)
    # Then one line names the file, the key and what is expected
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    assert "environments.production.rollback.min_in_service" in text and '"0%" to "100%"' in text


def test_an_unknown_rollback_key_is_refused(tmp_path):
    # Given a typo in the rollback section; then loading names it and the keys there are
    path = write_config(tmp_path, changed(prod(rollback={"min_in_servce": 2})))
    with pytest.raises(ConfigError, match=r"rollback\.min_in_servce: unknown key; expected one of min_in_service, serial"):
        load_config(path)


def test_the_example_documents_the_default():
    # The shipped lrelease.example.yml shows the key with its default, and loads
    example = yaml.safe_load((ROOT / "lrelease.example.yml").read_text())
    assert example["environments"]["production"]["rollback"]["min_in_service"] == "50%"
    assert load_config(ROOT / "lrelease.example.yml").environment("production").rollback_min_in_service == "50%"


# -- rollback.yml's groups -------------------------------------------------------------------


def inventory(tmp_path: Path, groups: dict[str, int]) -> Path:
    """Groups of local-connection hosts: ``{"production": 6}`` makes production1..6."""
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        "children": {g: {"hosts": {f"{g}{i}": {} for i in range(1, n + 1)}} for g, n in groups.items()}}}))
    return path


def run(tmp_path: Path, inv: Path, playbook: Path, *extra: str, hook: str = "") -> tuple[int, str, list[list[str]]]:
    """ansible-playbook, only the play's own tasks (and the hook, tagged test_hook); returns rc,
    output and the groups the play listed ("lrelease rollback group"), in order."""
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inv), str(playbook), "-e", "lrelease_rollback_to=1.0.0",
            "-e", f"lrelease_state_db={tmp_path / 'state.db'}",  # the policy step's record (not the checkout's)
            "--tags", "test_hook", *extra]
    if hook:
        (tmp_path / "hook.yml").write_text(hook)
        argv += ["-e", f"lrelease_rollback_before_drain_tasks={tmp_path / 'hook.yml'}"]
    proc = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    return proc.returncode, out, [m.group(3).split(", ") for m in GROUP_RE.finditer(out)]


def rollback(tmp_path: Path, hosts: int, *extra: str, hook: str = "",
             unreachable: str = "") -> tuple[int, str, list[list[str]]]:
    """rollback.yml on `production` (p1..), beside 2 hosts of another group; `unreachable`: a host
    reached over ssh on a closed loopback port."""
    inv = inventory(tmp_path, {"p": hosts, "other": 2})
    data = yaml.safe_load(inv.read_text())
    data["all"]["children"]["production"] = data["all"]["children"].pop("p")
    if unreachable:
        data["all"]["children"]["production"]["hosts"][unreachable] = {
            "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1}
    inv.write_text(yaml.safe_dump(data))
    return run(tmp_path, inv, ROOT / "playbooks" / "rollback.yml", "-e", "lrelease_hosts=production", *extra, hook=hook)


CASES = [  # (production hosts, play vars, group sizes)
    (6, {}, [3, 3]),  # the playbook's own default: "50%"
    (6, {"lrelease_rollback_min_in_service": "5"}, [1, 1, 1, 1, 1, 1]),  # a string, as `-e key=5` gives it
    (6, {"lrelease_rollback_min_in_service": 4}, [2, 2, 2]),
    (6, {"lrelease_rollback_min_in_service": "33%"}, [4, 2]),  # 1.98 hosts, rounded up: 2
    (5, {"lrelease_rollback_min_in_service": "50%"}, [2, 2, 1]),  # 2.5 hosts, rounded up: 3
    (4, {"lrelease_rollback_min_in_service": 0}, [4]),
    (4, {"lrelease_rollback_min_in_service": "0%"}, [4]),
    (3, {"lrelease_rollback_min_in_service": "100%"}, [1, 1, 1]),
    (3, {"lrelease_rollback_min_in_service": 10}, [1, 1, 1]),  # more than there are: one at a time
    (1, {}, [1]),
    (3, {"lrelease_rollback_serial": 1}, [1, 1, 1]),  # an explicit serial wins
    (4, {"lrelease_rollback_serial": "100%", "lrelease_rollback_min_in_service": 3}, [4]),
]


@pytest.fixture(scope="module")
def groups_of_every_case(tmp_path_factory) -> tuple[str, dict[str, list[list[str]]]]:
    """Every case in one ansible-playbook run: a group of hosts per case (c0a1.., c1a1..) and
    rollback.yml imported once per case with the case's vars on its group; 3 hosts of another
    group sit in the same inventory and are never counted."""
    tmp = tmp_path_factory.mktemp("groups")
    inv = inventory(tmp, {**{f"c{i}a": hosts for i, (hosts, _, _) in enumerate(CASES)}, "other": 3})
    plays = [{"import_playbook": str(ROOT / "playbooks" / "rollback.yml"),
              "vars": {"lrelease_hosts": f"c{i}a", **play_vars}} for i, (_, play_vars, _) in enumerate(CASES)]
    playbook = tmp / "cases.yml"
    playbook.write_text(yaml.safe_dump(plays))
    rc, out, groups = run(tmp, inv, playbook)
    assert rc == 0, out
    by_case: dict[str, list[list[str]]] = {}
    for group in groups:
        by_case.setdefault(group[0].split("a")[0], []).append(group)
    return out, by_case


@pytest.mark.parametrize(("case", "expected"), [(i, c[2]) for i, c in enumerate(CASES)],
                         ids=[f"{c[0]}-hosts-{json.dumps(c[1])}" for c in CASES])
def test_rollback_groups_keep_min_in_service_hosts_of_the_play_in_service(groups_of_every_case, case, expected):
    # Given a play of CASES[case][0] hosts (other hosts in the inventory) and the case's vars
    out, by_case = groups_of_every_case
    groups = by_case.get(f"c{case}", [])
    # Then rollback.yml goes in the fewest groups that keep min_in_service of them in service
    assert [len(g) for g in groups] == expected, out
    # And every host of the play is in exactly one group, in inventory order
    assert [h for g in groups for h in g] == [f"c{case}a{i}" for i in range(1, CASES[case][0] + 1)]


def test_groups_are_counted_on_the_hosts_the_limit_leaves(tmp_path):
    # Given 6 production hosts, of which --limit leaves 3 (as after a failed canary wave)
    rc, out, groups = rollback(tmp_path, 6, "--limit", "p1,p2,p3,o1")
    # Then 50% of those 3 (2, rounded up) stay in service: one at a time
    assert rc == 0, out
    assert groups == [["p1"], ["p2"], ["p3"]], out


@pytest.mark.parametrize("value", ["abc", "150%", "-1"])
def test_a_bad_min_in_service_fails_before_any_host_moves(tmp_path, value):
    # Given a hook that would record every host it reaches
    hook = f"- ansible.builtin.file: {{path: '{tmp_path}/{{{{ inventory_hostname }}}}', state: touch}}\n  tags: [test_hook]\n"
    # When rollback.yml runs with a min_in_service that is not a count or a percentage
    rc, out, groups = rollback(tmp_path, 6, "-e", f"lrelease_rollback_min_in_service={value}", hook=hook)
    # Then it fails with one message naming the variable, and no host was reached
    assert rc != 0
    assert "lrelease_rollback_min_in_service must be a host count" in out, out
    assert groups == [] and not list(tmp_path.glob("p*")), out


def test_a_failed_host_stops_later_groups_but_its_group_finishes(tmp_path):
    # Given a hook, run where the drain would be, that fails on p2 and records every other host
    hook = (
        "- ansible.builtin.fail: {msg: injected}\n  when: inventory_hostname == 'p2'\n  tags: [test_hook]\n"
        f"- ansible.builtin.file: {{path: '{tmp_path}/{{{{ inventory_hostname }}}}', state: touch}}\n"
        "  tags: [test_hook]\n"
    )
    # When rollback.yml runs on 6 hosts in groups of 3
    rc, out, groups = rollback(tmp_path, 6, hook=hook)
    # Then the run fails, the first group's other hosts went on to the end, and no later group started
    assert rc != 0
    assert groups == [["p1", "p2", "p3"]], out
    assert sorted(p.name for p in tmp_path.glob("p*")) == ["p1", "p3"], out


def test_an_unreachable_host_stops_later_groups_too(tmp_path):
    # Given p2 unreachable (ssh to a closed loopback port) and a hook that reaches and records each host
    hook = (
        "- ansible.builtin.ping:\n  tags: [test_hook]\n"
        f"- ansible.builtin.file: {{path: '{tmp_path}/{{{{ inventory_hostname }}}}', state: touch}}\n"
        "  tags: [test_hook]\n"
    )
    # When rollback.yml runs on 6 hosts in groups of 3
    rc, out, groups = rollback(tmp_path, 6, hook=hook, unreachable="p2")
    # Then p1 and p3 finished, p4-p6 were never reached
    assert rc != 0 and "UNREACHABLE" in out, out
    assert groups == [["p1", "p2", "p3"]], out
    assert sorted(p.name for p in tmp_path.glob("p*")) == ["p1", "p3"], out


def test_a_host_an_earlier_play_failed_does_not_stop_the_groups(tmp_path):
    # Given a run whose first play fails p2, then rollback.yml (both in one playbook)
    inv = inventory(tmp_path, {"production": 6})
    playbook = tmp_path / "site.yml"
    playbook.write_text(yaml.safe_dump([
        {"name": "earlier", "hosts": "production", "gather_facts": False,
         "tasks": [{"ansible.builtin.fail": {"msg": "earlier play"}, "when": "inventory_hostname == 'production2'",
                    "tags": ["always"]}]},
        {"import_playbook": str(ROOT / "playbooks" / "rollback.yml"), "vars": {"lrelease_hosts": "production"}},
    ]))
    # When it runs
    rc, out, groups = run(tmp_path, inv, playbook)
    # Then rollback.yml still goes through both of its groups (without the host that failed before)
    assert rc != 0 and "earlier play" in out
    assert groups == [["production1", "production3"], ["production4", "production5", "production6"]], out


def plays_and_tasks(playbook: Path) -> dict[str, list[str]]:
    """`ansible-playbook --list-tasks`: each play's name and its task names, in order."""
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook), "--list-tasks"],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plays: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if match := re.match(r"\s*play #\d+ \([^)]*\): (.+?)\tTAGS", line):
            tasks = plays.setdefault(match.group(1), [])
        elif line.startswith("      ") and "\tTAGS" in line:
            tasks.append(line.strip().split("\t")[0].removeprefix("lrelease.release.lrelease_rollback : "))
    return plays


def test_the_checks_and_the_read_run_once_before_the_groups_which_only_move_hosts():
    # Given rollback.yml as shipped
    # When its plays and their tasks are listed
    plays = plays_and_tasks(ROOT / "playbooks" / "rollback.yml")
    # Then the settings are checked and `current` read in a play of their own, before the groups
    assert list(plays) == ["lrelease policy", "lrelease rollback checks", "lrelease rollback", "lrelease policy end"]
    checks = plays["lrelease rollback checks"]
    assert "Check the rollback settings" in checks and "Read the host's current build" in checks
    # And the grouped play (one `serial` batch per group) repeats none of that per group
    grouped = plays["lrelease rollback"]
    assert "Check the rollback settings" not in grouped and "Read the host's current build" not in grouped
    assert "Check the rollback groups setting" not in grouped
    # And it keeps every step of a host's rollback, in order, and the wait before the next group
    steps = ["Stop after a group with a failed host", "Drain the host in the load balancer", "rolled back",
             "Check the app's health", "Put the host back in the load balancer",
             "lrelease policy record rolled back", "Wait until the group serves again in the load balancer"]
    assert [t for t in grouped if t in steps] == steps
