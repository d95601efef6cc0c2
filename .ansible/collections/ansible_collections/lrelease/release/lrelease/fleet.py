"""The fleet file: every node, its environment, address, tags and vars.

Schema (``inventories/fleet.example.yml`` is the commented copy)::

    defaults:                     # optional
      vars: {ansible_user: root}  # vars for every node
    nodes:                        # required, at least one
      node1:                      # the Ansible host name
        environment: production   # required; an environment of lrelease.yml
        address: 198.18.77.11     # required; IP address or DNS name -> ansible_host
        tags: [canary]            # optional; each becomes group tag_<tag>
        vars: {lrelease_app_port: 8080}   # optional; wins over defaults.vars (shallow merge)

From it, :meth:`Fleet.inventory` builds one Ansible inventory per environment: a group named
after the environment holding its hosts, canary-tagged hosts first and then the rest in file
order (``serial`` takes hosts in that order, so the canary goes first), and a group
``tag_<tag>`` per tag. The inventory plugin ``lrelease_fleet`` builds the same groups from
the same :class:`Layout`. Secrets do not belong here: var names that look like one
(``ansible_password``, ``ansible_become_pass``...) are refused; use Ansible Vault.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from lrelease import schema_check
from lrelease.errors import ConfigError, LreleaseError
from lrelease.schema import ENV_NAME_EXPECTED, ENV_NAME_RE, Checker, dump_yaml, gc_paused, join, load_yaml_mapping

CANARY_TAG = "canary"
TAG_GROUP_PREFIX = "tag_"
# Whole-string patterns (fullmatch; the \Z also guards a .match): the safe sets of docs/design.md.
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
TAG_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,31}\Z")
VAR_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
_DNS_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
_IP_CHARS_RE = re.compile(r"[0-9A-Fa-f.:]+\Z")  # no IPv6 zone ("%eth0"): it may hold anything
# An IPv4 address as ipaddress writes it (no leading zeros): valid and its own canonical form, so a
# fleet of them needs no ipaddress parsing (the slowest step of loading 10,000 nodes).
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4_RE = re.compile(rf"({_OCTET}\.){{3}}{_OCTET}\Z")
SECRET_HINT = "keep {key} in Ansible Vault (group_vars/host_vars) or an environment variable"


@dataclass(frozen=True)
class FleetNode:
    name: str
    environment: str
    address: str
    tags: tuple[str, ...]
    vars: dict  # as written under the node; see Fleet.host_vars for the merged view

    @property
    def canary(self) -> bool:
        return CANARY_TAG in self.tags


@dataclass(frozen=True)
class Layout:
    """Groups and host vars of an inventory, in order; rendered as YAML or fed to the plugin."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (group, hosts); environments first
    hostvars: tuple[tuple[str, dict], ...]  # (host, vars), in the order hosts first appear


@dataclass(frozen=True)
class Fleet:
    path: Path  # the file read
    defaults: dict  # defaults.vars
    nodes: tuple[FleetNode, ...]  # in file order

    @property
    def environments(self) -> tuple[str, ...]:
        """Environments that have nodes, in the order they first appear."""
        return tuple(dict.fromkeys(node.environment for node in self.nodes))

    def nodes_in(self, env: str) -> tuple[FleetNode, ...]:
        """The nodes of ``env``: canary-tagged first, then the rest, each in file order."""
        nodes = self._by_environment.get(env)
        if not nodes:
            known = ", ".join(self.environments)
            raise ConfigError(str(self.path), "nodes", f"a node in environment {env!r}; environments here: {known}")
        return nodes

    @cached_property
    def _by_environment(self) -> dict[str, tuple[FleetNode, ...]]:
        """Every environment's nodes in :meth:`nodes_in` order, sorted out in one pass over the fleet."""
        canaries: dict[str, list[FleetNode]] = {}
        others: dict[str, list[FleetNode]] = {}
        for node in self.nodes:
            (canaries if node.canary else others).setdefault(node.environment, []).append(node)
        return {env: tuple(canaries.get(env, []) + others.get(env, [])) for env in self.environments}

    def hosts(self, env: str) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes_in(env))

    def host_vars(self, node: FleetNode) -> dict:
        """``ansible_host`` from the address, then defaults.vars < node vars (a fresh copy)."""
        merged = {"ansible_host": node.address, **_fresh(self.defaults), **_fresh(node.vars)}
        return merged

    def groups(self, env: str | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(group, hosts) in order: each environment's group (one, or with ``env=None`` every
        environment's), then ``tag_<tag>`` for each tag, by name, its hosts in that same order."""
        envs = self.environments if env is None else (env,)
        groups: list[tuple[str, tuple[str, ...]]] = []
        by_tag: dict[str, list[str]] = {}
        for name in envs:
            nodes = self.nodes_in(name)
            groups.append((name, tuple(n.name for n in nodes)))
            for node in nodes:
                for tag in node.tags:
                    by_tag.setdefault(tag, []).append(node.name)
        groups += [(TAG_GROUP_PREFIX + tag, tuple(by_tag[tag])) for tag in sorted(by_tag)]
        return tuple(groups)

    def layout(self, env: str | None = None) -> Layout:
        """One environment's groups, or with ``env=None`` every environment's."""
        envs = self.environments if env is None else (env,)
        ordered = [node for name in envs for node in self.nodes_in(name)]
        return Layout(groups=self.groups(env), hostvars=tuple((n.name, self.host_vars(n)) for n in ordered))

    def inventory(self, env: str) -> dict:
        """An Ansible YAML inventory (as a dict) for ``env``: host vars sit under the
        environment group, tag groups list their hosts only."""
        lay = self.layout(env)
        hostvars = dict(lay.hostvars)
        children: dict[str, Any] = {}
        for group, hosts in lay.groups:
            if group == env:
                children[group] = {"hosts": {h: hostvars[h] for h in hosts}}
            else:
                children[group] = {"hosts": {h: {} for h in hosts}}
        return {"all": {"children": children}}


_IMMUTABLE = (str, int, float, bool, type(None), bytes, datetime.date)  # date covers datetime


def _fresh(value: Any) -> Any:
    """A deep copy of a value read from YAML (mappings, lists, sets of scalars), several times
    faster than copy.deepcopy, which a 10,000-host inventory called 20,000 times; anything else
    goes to copy.deepcopy."""
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) is dict:
        return {k: _fresh(v) for k, v in value.items()}
    if type(value) is list:
        return [_fresh(v) for v in value]
    return copy.deepcopy(value)


def render_inventory(fleet: Fleet, env: str) -> str:
    """The text of ``<env>.yml``: a header naming the source, then the inventory. Same
    fleet in, same bytes out."""
    header = (
        f"# Generated by lrelease from {fleet.path} (environment {env}); do not edit.\n"
        "# Change the fleet file and run `lrelease inventory generate` instead.\n"
    )
    with gc_paused():
        return header + _inventory_yaml(fleet, env)


_WIDTH = 1000  # dump_yaml's: where long values are folded
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_HOST_VARS_INDENT = " " * 10  # all > children > group > hosts > host > its vars


def _inventory_yaml(fleet: Fleet, env: str) -> str:
    """``dump_yaml(fleet.inventory(env))``, byte for byte (tests/unit/test_inventory_text.py holds
    it to that), without emitting 10,000 hosts node by node: the groups, host names and addresses
    are written as text (each name plain, or quoted exactly as libyaml quotes it), and each
    distinct set of host vars besides ``ansible_host`` is dumped once and indented into place."""
    groups = fleet.groups(env)
    if len({group for group, _ in groups}) != len(groups):  # an environment named like a tag group
        return dump_yaml(fleet.inventory(env))
    nodes = {node.name: node for node in fleet.nodes_in(env)}
    name = _NameText()
    dumped: dict[str, str] = {}
    out = ["all:\n  children:\n"]
    for group, hosts in groups:
        out.append(f"    {name(group)}:\n      hosts:\n")
        if group != env:
            out += [f"        {name(host)}: {{}}\n" for host in hosts]
            continue
        for host in hosts:
            node = nodes[host]
            out.append(f"        {name(host)}:\n          ansible_host: {name(node.address)}\n")
            rest = {**fleet.defaults, **node.vars}  # host_vars without ansible_host, in its order
            if rest:
                key = repr(rest)  # equal reprs: equal keys, values and types, in the same order
                if key not in dumped:
                    text = dump_yaml(rest, width=_WIDTH - len(_HOST_VARS_INDENT))  # folded where it will be
                    dumped[key] = "".join(_HOST_VARS_INDENT + line if line.strip("\n") else line
                                          for line in text.splitlines(keepends=True))
                out.append(dumped[key])
    return "".join(out)


class _NameText:
    """A group name, host name or address as dump_yaml writes it: plain when it is a plain word
    YAML reads back as a string, else as libyaml writes it (``'yes'``, ``'1:2:3:4:5:6:7:8'``)."""

    def __init__(self) -> None:
        self._resolver = yaml.resolver.Resolver()
        self._quoted: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        if _PLAIN_NAME_RE.fullmatch(text) and self._resolver.resolve(yaml.ScalarNode, text, (True, False)) == _STR_TAG:
            return text
        if text not in self._quoted:
            self._quoted[text] = dump_yaml({text: None})[: -len(": null\n")]
        return self._quoted[text]


def write_inventories(fleet: Fleet, out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<env>.yml`` for every environment of the fleet (sorted by name).
    Each file is replaced atomically; files of other environments are left alone."""
    out = Path(out_dir)
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for env in sorted(fleet.environments):
            target = out / f"{env}.yml"
            tmp = out / f".{env}.yml.{os.getpid()}.tmp"
            try:
                tmp.write_text(render_inventory(fleet, env), encoding="utf-8")
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(target)
    except (OSError, ValueError) as exc:  # not a directory, no permission, name too long, a NUL...
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise LreleaseError(f"{out}: cannot write inventories there ({reason})") from None
    return written


# -- loading ------------------------------------------------------------------------------
def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet file; raises ConfigError naming the file and the key."""
    with gc_paused():
        return _load_fleet(Path(path))


def _load_fleet(path: Path) -> Fleet:
    data = load_yaml_mapping(path, "fleet file")
    check = Checker(str(path))
    for key, value in _vars_sections(data):  # a secret alone, before anything is echoed
        check.no_secrets(value, key, SECRET_HINT)
    schema_check.check(data, "fleet", str(path))  # every structural mistake at once
    check.mapping(data, "", required=("nodes",), optional=("defaults",))
    defaults: dict = {}
    if data.get("defaults") is not None:
        d = check.mapping(data["defaults"], "defaults", optional=("vars",), example="{vars: {ansible_user: root}}")
        defaults = _vars(check, d.get("vars", {}), "defaults.vars")
    nodes_data = check.mapping(data["nodes"], "nodes", example="{node1: {environment: production, address: ...}}")
    if not nodes_data:
        check.fail("nodes", "at least one node, e.g. {node1: {environment: production, address: 198.18.77.11}}")
    nodes = tuple(_node(check, name, value) for name, value in nodes_data.items())
    _distinct_addresses(check, nodes)
    return Fleet(path=path, defaults=defaults, nodes=nodes)


def _vars_sections(data: dict) -> list[tuple[str, Any]]:
    """The ``vars`` mappings of a fleet file as written (defaults' and each node's), with their keys."""
    out = []
    defaults, nodes = data.get("defaults"), data.get("nodes")
    if isinstance(defaults, dict):
        out.append(("defaults.vars", defaults.get("vars")))
    if isinstance(nodes, dict):
        out += [(join(join("nodes", str(name)), "vars"), node.get("vars")) for name, node in nodes.items()
                if isinstance(node, dict)]
    return out


def _distinct_addresses(check: Checker, nodes: tuple[FleetNode, ...]) -> None:
    """Two nodes at one address would be deployed, drained and counted twice: refused, naming
    both (IP addresses compared as addresses, DNS names without case or a final dot)."""
    seen: dict[str, str] = {}
    for node in nodes:
        if _CANONICAL_IPV4_RE.fullmatch(node.address):
            same = node.address
        else:
            try:
                same = str(ipaddress.ip_address(node.address))
            except ValueError:
                same = node.address.lower().rstrip(".")
        if same in seen:
            check.fail(join(join("nodes", node.name), "address"),
                       f"an address of its own; node {seen[same]} has {node.address} too")
        seen[same] = node.name


def _node(check: Checker, name: str, value: Any) -> FleetNode:
    key = join("nodes", name)
    if not NODE_NAME_RE.fullmatch(name):
        check.fail(key, "a host name of letters, digits, '.', '_' and '-' (at most 63 characters)")
    node = check.mapping(value, key, required=("environment", "address"), optional=("tags", "vars"),
                         example="{environment: production, address: 198.18.77.11}")
    env = check.string(node["environment"], join(key, "environment"), pattern=ENV_NAME_RE,
                       describe=f"an environment name of {ENV_NAME_EXPECTED}")
    address = check.string(node["address"], join(key, "address"), test=_address_ok,
                           describe="an IP address or a DNS name")
    tags_value = node.get("tags", [])
    if not isinstance(tags_value, list):
        check.fail(join(key, "tags"), "a list of tags such as [canary]")
    for i, tag in enumerate(tags_value):
        check.string(tag, join(join(key, "tags"), i), pattern=TAG_RE,
                     describe="a tag of lower-case letters, digits and '_' (it becomes group tag_<tag>)")
    if len(set(tags_value)) != len(tags_value):
        check.fail(join(key, "tags"), "each tag once")
    node_vars = _vars(check, node.get("vars", {}), join(key, "vars"))
    return FleetNode(name=name, environment=env, address=address, tags=tuple(tags_value), vars=node_vars)


def _vars(check: Checker, value: Any, key: str) -> dict:
    if value is None:
        return {}
    check.mapping(value, key, example="{ansible_user: root}")
    check.no_secrets(value, key, SECRET_HINT)
    for name in value:
        if not VAR_NAME_RE.fullmatch(name):
            check.fail(join(key, name), "a variable name of letters, digits and '_' not starting with a digit "
                                        "(at most 128 characters)")
        if name == "ansible_host":
            check.fail(join(key, name), "no ansible_host here; the node's address sets it")
    return dict(value)


def _address_ok(text: str) -> bool:
    if _CANONICAL_IPV4_RE.fullmatch(text):
        return True
    if _IP_CHARS_RE.fullmatch(text):
        try:
            ipaddress.ip_address(text)
            return True
        except ValueError:
            pass
    if len(text) > 253 or re.fullmatch(r"[0-9.]+", text):  # a mistyped IPv4 is not a DNS name
        return False
    return all(_DNS_LABEL_RE.fullmatch(label) for label in text.rstrip(".").split("."))
