"""Property-based fuzzing of lrelease.yml, the fleet file and the CLI's arguments (hypothesis).

A valid project (the shipped examples plus a gate section) is mutated at random keys: values
turned into near misses (a newline, a space, shell or Jinja syntax appended; a number made NaN,
infinite, huge or negative; another value of the file copied, which makes duplicates) or
replaced by random YAML-able values (unicode, control characters, nested lists and mappings),
keys deleted, renamed or added; or one line of the file is replaced by random YAML syntax
(anchors, aliases, tags, bad dates, deep flow nesting, a 5000-digit integer). The CLI runs
in-process on it (``plan``, ``inventory generate``, ``deploy --dry-run``; random arguments to
its commands in a last test) and must always:

- exit 0 or 2, never with a traceback (any other exception is a crash);
- on exit 2, say so in one line;
- write nothing outside the project's state dir and generated-inventory dir (the current
  directory is watched too), and only files whose names are printable, without whitespace;
- when it accepts the input (exit 0), have loaded only safe values: names without whitespace
  or control characters, remote paths without shell or Jinja syntax, finite durations,
  distinct node addresses.

The runs are derandomized (same cases every run, as CI needs); the number of cases is set per
test below (380 in all); the file takes about 10 s of CPU (longer on a loaded machine).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import traceback
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lrelease.cli.main import cli
from lrelease.config import load_config

ROOT = Path(__file__).resolve().parents[2]
BUILD = "1.0.0"
CONFIG = yaml.safe_load((ROOT / "lrelease.example.yml").read_text())
CONFIG["environments"]["next"]["gate"] = {
    "provider": {"kind": "prometheus", "url": "http://127.0.0.1:9090"},
    "bake_seconds": 20, "policy": "halt",
}
FLEET = yaml.safe_load((ROOT / "inventories" / "fleet.example.yml").read_text())


def fuzz(cases: int) -> settings:
    """Fixed cases (derandomized, no example database): CI sees the same runs every time. No
    shrinking: a case costs a few CLI runs, and shrinking one took minutes; the failing case is
    printed draw by draw instead."""
    return settings(max_examples=cases, derandomize=True, deadline=None, database=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


# Placeholders replaced in the YAML text after dumping (PyYAML cannot write these itself).
HUGE = "__HUGE_INT__"
HUGE_TEXT = "9" * 5000  # beyond Python's 4300-digit int parsing limit

TRICKY = [
    "canary\n", "production\n", "node1\n", "1.0.0\n", "50%\n", "demoapp\n", "next\n", "198.18.77.11\n",
    "web1.example.com\n", "/srv/demoapp\n", "/srv/demo app", "/srv/demoapp;reboot", "/srv/$(id)", "/srv/`id`",
    "/srv/{{ lookup('pipe','id') }}", "/srv/{% if 1 %}x{% endif %}", "/srv/a|b", "/srv/a&b", "/srv/*",
    "{{ x }}", "{% x %}", "http://[::1", "http://h:99999", "http://127.0.0.1:0", "https://ci/{build}\n",
    "https://u:p@ci/{build}", "ftp://ci/{build}", "http:///x", "\x00", "\t", " ", "", "-", ".", "..",
    "../x", "é", "ünïcødé", "🚀", "a" * 300, "true", "null", "1e400", "-.inf", "%", "100%", "0%",
    "fe80::1%eth0", "fe80::1%eth 0", "2001:db8::1", "canary", "production", "eu",
]
strings = st.one_of(st.sampled_from(TRICKY), st.text(max_size=16),
                    st.text(alphabet=st.characters(codec="ascii"), max_size=12))
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 10**400, HUGE]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, strings)
KEYS = ["gate", "provider", "kind", "url", "rollback", "serial", "tags", "vars", "address", "environment",
        "health", "port", "lb", "waves", "bake_seconds", "deploy_root", "service", "command", "systemd",
        "state_dir", "fleet", "artifacts", "source", "path", "checksums", "inventory", "min_in_service"]
keys = st.one_of(st.sampled_from(KEYS), strings)


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3))


values = st.recursive(scalars, _containers, max_leaves=6)


def _slots(doc) -> list[tuple[object, object]]:
    """Every (container, key or index) of a YAML document, depth first."""
    out = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append((node, k))
            stack.append(v)
    return out


def _scalars_in(doc) -> list:
    """Every string or number of a document, values and keys (what a near miss may copy)."""
    return [c[k] for c, k in _slots(doc) if isinstance(c[k], (str, int, float))] + [
        k for c, k in _slots(doc) if isinstance(k, str)]


# Near misses of a valid value: what a typo, a template or an attacker would write.
STRING_TWEAKS = [
    lambda v: v + "\n", lambda v: v + " ", lambda v: " " + v, lambda v: v[: len(v) // 2] + " " + v[len(v) // 2:],
    lambda v: v + ";reboot", lambda v: v + "$(id)", lambda v: v + "`id`", lambda v: v + "{{ x }}",
    lambda v: v + "{% x %}", lambda v: v + "\x00", lambda v: v + "é", lambda v: v.upper(), lambda v: v + "/..",
    lambda v: v + "%", lambda v: v + ":99999", lambda v: "[" + v,
]
NUMBER_TWEAKS = [
    lambda v: float("nan"), lambda v: float("inf"), lambda v: float("-inf"), lambda v: -v, lambda v: v * 10**30,
    lambda v: HUGE, lambda v: v + 0.5, lambda v: 0, lambda v: v * 10**6, lambda v: str(v), lambda v: str(v) + "\n",
]


def tweak(data: st.DataObject, doc, value):
    """A near miss of ``value``: a string with a newline, space, shell or Jinja syntax added;
    a number made NaN, infinite, huge or negative; or another value of the document (which
    makes duplicates, e.g. two nodes at one address)."""
    if data.draw(st.integers(0, 4), label="copy another value?") == 0:
        return data.draw(st.sampled_from(_scalars_in(doc)), label="copied value")
    if isinstance(value, str):
        return data.draw(st.sampled_from(STRING_TWEAKS), label="string tweak")(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return data.draw(st.sampled_from(NUMBER_TWEAKS), label="number tweak")(value)
    return data.draw(values, label="value")


def mutate(data: st.DataObject, doc: dict) -> dict:
    """1 to 3 random edits of a copy of ``doc``: tweak (a near miss), replace, delete, rename
    (a key, also to a near miss) or add."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        slots = [(doc, None)] + _slots(doc)
        container, key = data.draw(st.sampled_from(slots), label="where")
        op = data.draw(st.sampled_from(["tweak", "tweak", "tweak", "replace", "delete", "rename", "add"]),
                       label="op")
        if key is not None and op == "tweak":
            container[key] = tweak(data, doc, container[key])
        elif key is None or op == "add":
            target = container if key is None else container[key]
            if isinstance(target, dict):
                target[data.draw(keys, label="new key")] = data.draw(values, label="new value")
            elif isinstance(target, list):
                target.append(data.draw(values, label="new item"))
            else:
                container[key] = data.draw(values, label="value")
        elif op == "replace":
            container[key] = data.draw(values, label="value")
        elif op == "delete":
            del container[key]
        elif isinstance(container, dict):  # rename: keeps the value, changes its name
            value = container.pop(key)
            if data.draw(st.booleans(), label="near miss?"):
                container[tweak(data, doc, key)] = value
            else:
                container[data.draw(keys, label="new name")] = value
    return doc


def dump(doc) -> str:
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return text.replace(HUGE, HUGE_TEXT)


def make_project(base: Path, config: dict | str = CONFIG, fleet: dict | str = FLEET) -> Path:
    """A project dir: lrelease.yml, inventories/fleet.yml and artifacts/demoapp-1.0.0.tar.gz."""
    base.mkdir(parents=True)
    (base / "inventories").mkdir()
    (base / "artifacts").mkdir()
    tarball = base / "artifacts" / f"demoapp-{BUILD}.tar.gz"
    tarball.write_bytes(b"not really a tarball")
    (base / "artifacts" / f"demoapp-{BUILD}.tar.gz.sha256").write_text(
        hashlib.sha256(tarball.read_bytes()).hexdigest() + "\n")
    (base / "lrelease.yml").write_text(config if isinstance(config, str) else dump(config), encoding="utf-8")
    (base / "inventories" / "fleet.yml").write_text(fleet if isinstance(fleet, str) else dump(fleet),
                                                    encoding="utf-8")
    return base / "lrelease.yml"


def tree(path: Path) -> set[Path]:
    return {Path(dirpath) / name for dirpath, dirs, files in os.walk(path) for name in dirs + files}


def inside(path: Path, parent: Path) -> bool:
    try:
        return path.resolve().is_relative_to(parent.resolve())
    except (ValueError, OSError):  # e.g. an embedded NUL: nothing can be written there
        return True


class Sandbox:
    """One case's temp area: ``work/`` holds the project, ``cwd/`` is the (empty) current dir."""

    def __init__(self, tmp: Path, n: int) -> None:
        self.root = tmp / f"case{n}"
        self.project = self.root / "work"
        self.cwd = self.root / "cwd"

    def allowed(self, doc) -> list[Path]:
        """Where a run may write: the configured state dir and the default inventory output."""
        state = doc.get("state_dir", ".lrelease") if isinstance(doc, dict) else ".lrelease"
        out = [self.project / "inventories" / "generated"]
        if isinstance(state, str) and "\x00" not in state:
            out.append((self.project / state).resolve())
        return out

    def run(self, args: list[str], allowed: list[Path]):
        self.cwd.mkdir(parents=True, exist_ok=True)
        before = tree(self.root)
        old = os.getcwd()
        os.chdir(self.cwd)
        try:
            result = CliRunner().invoke(cli, args, env={"LRELEASE_CONFIG": None, "LRELEASE_ACTOR": "fuzz"})
        finally:
            os.chdir(old)
        check_result(args, result)
        for new in sorted(tree(self.root) - before):
            if any(new in a.parents for a in allowed):
                continue  # a parent of an allowed dir, made on the way (mkdir -p)
            under = [a for a in allowed if new == a or a in new.parents]
            assert under, f"{args}: wrote {new} (allowed: {allowed})"
            for part in new.relative_to(under[0]).parts:  # names lrelease chose
                assert part.isprintable() and not any(c.isspace() for c in part), f"{args}: wrote {new!r}"
        return result


def check_result(args: list[str], result) -> None:
    where = f"lrelease {' '.join(map(repr, args))} -> exit {result.exit_code}\n{result.output}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception))
        raise AssertionError(f"{where}\ncrashed:\n{tb}")
    assert result.exit_code in (0, 2), where
    assert "Traceback" not in result.output, where
    if result.exit_code == 2 and "lrelease: error:" in result.stderr:
        lines = result.stderr.splitlines()  # one line per mistake (a config may have several)
        assert lines and all(line.startswith("lrelease: error: ") for line in lines), where


UNSAFE_PATH_CHARS = set(" \t\n\r;&|$`<>(){}*?!'\"\\#~")


def printable_word(text: str) -> bool:
    return text.isprintable() and not any(c.isspace() for c in text) and text not in ("", ".", "..")


def check_accepted(config: Path) -> None:
    """What the CLI accepted is safe to hand to Ansible and to name files after."""
    cfg = load_config(config)
    fleet = cfg.load_fleet()
    names = [cfg.app, *cfg.environment_names, *(n.name for n in fleet.nodes),
             *(t for n in fleet.nodes for t in n.tags), *(n.environment for n in fleet.nodes)]
    for name in names:
        assert printable_word(name), f"accepted the name {name!r}"
    for env in cfg.environments:
        for path in (env.deploy_root, env.service_command, env.lb.haproxy_socket if env.lb else None):
            assert path is None or (printable_word(path) and not UNSAFE_PATH_CHARS & set(path)), \
                f"accepted the path {path!r}"
        assert env.health_path.isprintable() and "{" not in env.health_path, env.health_path
        for seconds in (env.bake_seconds, env.gate_timeout_seconds):
            assert math.isfinite(seconds) and 0 <= seconds <= 86400, f"accepted {seconds!r} seconds"
        for wave in env.waves:
            assert printable_word(str(wave)), f"accepted the wave {wave!r}"
    addresses = [n.address for n in fleet.nodes]
    assert len(set(addresses)) == len(addresses), f"accepted duplicate addresses {addresses}"
    for address in addresses:
        assert printable_word(address), f"accepted the address {address!r}"


def exercise(box: Sandbox, doc) -> None:
    """plan, inventory generate and deploy --dry-run on the project in ``box``."""
    config = str(box.project / "lrelease.yml")
    allowed = box.allowed(doc)
    plan = box.run(["plan", "--env", "production", "--config", config], allowed)
    box.run(["inventory", "generate", "--config", config], allowed)
    box.run(["deploy", "--env", "production", "--build", BUILD, "--dry-run", "--config", config], allowed)
    if plan.exit_code == 0:
        check_accepted(box.project / "lrelease.yml")


def safe_doc(box: Sandbox, doc) -> bool:
    """Keep the fuzzer's writes on this machine inside the temp dir: a state dir elsewhere
    would be obeyed (that is its job)."""
    state = doc.get("state_dir") if isinstance(doc, dict) else None
    return not isinstance(state, str) or inside(box.project / state, box.root)


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


@pytest.fixture
def counter():
    return Counter()


def test_the_unmutated_project_is_accepted(tmp_path):
    # Given the project the fuzzers start from
    box = Sandbox(tmp_path, 0)
    make_project(box.project)
    # When the CLI plans, generates inventories and dry-runs a deploy, all succeed
    for args in (["plan", "--env", "production"], ["inventory", "generate"],
                 ["deploy", "--env", "production", "--build", BUILD, "--dry-run"]):
        result = box.run([*args, "--config", str(box.project / "lrelease.yml")], box.allowed(CONFIG))
        assert result.exit_code == 0, result.output
    check_accepted(box.project / "lrelease.yml")


@fuzz(120)
@given(data=st.data())
def test_fuzzed_config_exits_0_or_2_and_writes_nowhere_else(tmp_path, counter, data):
    # Given the project with lrelease.yml mutated at random keys
    box = Sandbox(tmp_path, counter.next())
    doc = mutate(data, CONFIG)
    if not safe_doc(box, doc):
        return
    make_project(box.project, config=doc)
    # When the CLI reads it, Then: exit 0 or 2, one line, no traceback, no stray file
    exercise(box, doc)


@fuzz(120)
@given(data=st.data())
def test_fuzzed_fleet_exits_0_or_2_and_writes_nowhere_else(tmp_path, counter, data):
    # Given the project with the fleet file mutated at random keys
    box = Sandbox(tmp_path, counter.next())
    make_project(box.project, fleet=mutate(data, FLEET))
    # When the CLI reads it, Then: exit 0 or 2, one line, no traceback, no stray file
    exercise(box, CONFIG)


def raw_edit(data: st.DataObject, text: str) -> str:
    """Replace one line of a YAML text with random text (anchors, aliases, tags, flow syntax...)."""
    lines = text.splitlines()
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    snippet = data.draw(st.one_of(
        st.sampled_from(["x: &a [1, 2]", "y: *a", "<<: *a", "x: !!python/name:os.system", "x: !!binary QUJD",
                         "x: 2020-13-45", "x: 2020-02-30 10:00:00", "x: 1:20:30", "x: 0x_FF", "x: .NaN",
                         "x: " + "[" * 40 + "]" * 40, "x: !!float x", "x: !!int 1.5", "? [a]\n: b",
                         "x: " + HUGE_TEXT, "x: 1e+400", "x: -.inf", "x: !!set {a, b}"]),
        st.text(alphabet=st.sampled_from(list("ab1:-[]{}&*!|>'\"#% ,?\n\t")), max_size=20)), label="snippet")
    lines[i] = indent + snippet
    return "\n".join(lines) + "\n"


@fuzz(60)
@given(data=st.data(), which=st.sampled_from(["config", "fleet"]))
def test_fuzzed_yaml_text_exits_0_or_2(tmp_path, counter, data, which):
    # Given lrelease.yml or the fleet file with one line replaced by random YAML syntax
    box = Sandbox(tmp_path, counter.next())
    if which == "config":
        make_project(box.project, config=raw_edit(data, dump(CONFIG)))
    else:
        make_project(box.project, fleet=raw_edit(data, dump(FLEET)))
    # When the CLI reads it, Then: exit 0 or 2, one line, no traceback, no stray file
    exercise(box, CONFIG)


def cli_args(data: st.DataObject, config: str) -> list[str]:
    """One command with random option values (and sometimes without a required one)."""
    command = data.draw(st.sampled_from(["plan", "deploy", "rollback", "inventory", "history", "show"]),
                        label="command")
    word = st.one_of(strings, st.sampled_from(["production", "next", "dev", BUILD, "1", "0", "-1", "--",
                                               "--help", "-x"]))
    env = ["--env", data.draw(word, label="env")] if data.draw(st.booleans(), label="with env") else []
    args = {
        "plan": lambda: ["plan", *env, "--build", data.draw(word)],
        "deploy": lambda: ["deploy", *env, "--build", data.draw(word), "--sha256", data.draw(word), "--dry-run"],
        # not --dry-run: that reads every host over SSH, and these tests contact no host (without
        # --yes on a non-interactive terminal the command stops before anything changes)
        "rollback": lambda: ["rollback", *env, "--to", data.draw(word)],
        "inventory": lambda: ["inventory", "generate", "--out", data.draw(word)],
        "history": lambda: ["history", *env, "--limit", data.draw(word)],
        "show": lambda: ["show", data.draw(word), *env],
    }[command]()
    if data.draw(st.booleans(), label="with --json") and command in ("plan", "deploy", "rollback", "history"):
        args.append("--json")
    return [*args, "--config", config]


@fuzz(80)
@given(data=st.data())
def test_fuzzed_cli_arguments_exit_0_or_2(tmp_path, counter, data):
    # Given a valid project and random arguments to its commands
    box = Sandbox(tmp_path, counter.next())
    make_project(box.project)
    args = cli_args(data, str(box.project / "lrelease.yml"))
    allowed = box.allowed(CONFIG)
    if args[:2] == ["inventory", "generate"]:
        out = args[args.index("--out") + 1]
        if not inside(box.cwd / out, box.root):
            return  # an --out elsewhere would be obeyed (that is its job)
        allowed.append((box.cwd / out).resolve() if "\x00" not in out else box.cwd)
    # When the CLI runs, Then: exit 0 or 2, one line, no traceback, no stray file
    box.run(args, allowed)
