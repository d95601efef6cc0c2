"""One strict YAML loader for every file lrelease reads: libyaml's parser when PyYAML has it, the
pure-Python one otherwise, and either way a key written twice is refused with one clear line.
Inventories are written with libyaml's emitter and read back the same. Addresses of a big fleet
are checked without ipaddress where that changes nothing."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lrelease import schema
from lrelease.cli.main import cli
from lrelease.errors import ConfigError
from lrelease.fleet import _CANONICAL_IPV4_RE, load_fleet, render_inventory

LOADERS = sorted(schema.STRICT_LOADERS)

FLEET_TWICE = ("nodes:\n  node1: {environment: production, address: 10.0.0.1}\n"
               "  node1: {environment: production, address: 10.0.0.2}\n")
CONFIG_TWICE = ("version: 1\napp: shop\nfleet: fleet.yml\nenvironments:\n"
                "  production: {deploy_root: /srv/shop, service: {systemd: shop}}\n"
                "  production: {deploy_root: /srv/shop2, service: {systemd: shop}}\n")
FLEET_OK = "nodes:\n  node1: {environment: production, address: 10.0.0.1}\n"
CONFIG_OK = ("version: 1\napp: shop\nfleet: fleet.yml\nenvironments:\n"
             "  production: {deploy_root: /srv/shop, service: {systemd: shop}}\n")


@pytest.fixture(params=LOADERS)
def loader(request, monkeypatch):
    """Each strict loader in turn as the one load_yaml_mapping uses."""
    monkeypatch.setattr(schema, "_StrictLoader", schema.STRICT_LOADERS[request.param])
    return request.param


def test_libyaml_is_used_when_pyyaml_has_it():
    # Given this machine's PyYAML, built with libyaml
    assert yaml.__with_libyaml__
    # Then both loaders exist and the one in use is libyaml's
    assert LOADERS == ["libyaml", "python"]
    assert issubclass(schema._StrictLoader, yaml.CSafeLoader)
    assert issubclass(schema.STRICT_LOADERS["python"], yaml.SafeLoader)


@pytest.mark.parametrize("config, fleet, where, line, key", [
    (CONFIG_TWICE, FLEET_OK, "lrelease.yml", "line 6, column 3", "production"),
    (CONFIG_OK, FLEET_TWICE, "fleet.yml", "line 3, column 3", "node1"),
], ids=["lrelease.yml", "fleet"])
def test_a_key_written_twice_is_refused_in_one_line_on_either_loader(tmp_path, loader, config, fleet, where, line,
                                                                       key):
    # Given a project whose lrelease.yml or fleet file names one key twice in one mapping
    (tmp_path / "lrelease.yml").write_text(config)
    (tmp_path / "fleet.yml").write_text(fleet)
    before = sorted(p.name for p in tmp_path.iterdir())
    # When plan reads it (with this loader)
    result = CliRunner().invoke(cli, ["plan", "--env", "production", "--config", str(tmp_path / "lrelease.yml")])
    # Then it exits 2 with one line naming the file, the line and the key, and changes nothing
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1, result.output
    assert where in lines[0] and line in lines[0] and f"key '{key}' appears twice in one mapping" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_both_loaders_read_the_same_values(tmp_path):
    # Given a fleet with every kind of scalar in its vars
    path = tmp_path / "fleet.yml"
    path.write_text("defaults:\n  vars: {a: 1, b: 1.5, c: true, d: null, e: 'yes', f: 2024-01-02, g: [x, {y: z}],"
                    " h: \"é 🚀\", i: 0x1f, j: ~, k: '007'}\n" + FLEET_OK)
    # When each loader reads it
    read = {}
    for name, cls in schema.STRICT_LOADERS.items():
        original = schema._StrictLoader
        schema._StrictLoader = cls
        try:
            read[name] = schema.load_yaml_mapping(path, "fleet file")
        finally:
            schema._StrictLoader = original
    # Then they read the same document
    assert read["libyaml"] == read["python"]
    assert read["python"]["defaults"]["vars"]["i"] == 31 and read["python"]["defaults"]["vars"]["k"] == "007"


@pytest.mark.parametrize("text, problem", [
    ("nodes: &a {n1: {environment: production, address: 10.0.0.1}}\nother: *a\n", "no YAML aliases"),
    ("nodes:\n  n1: {environment: production, address: 10.0.0.1, vars: {big: 99999999999999999999}}\n",
     "a number below 2**63"),
    ("nodes:\n  n1: {environment: production, address: 10.0.0.1, vars: {x: .nan}}\n", "a finite number"),
    ("nodes:\n  n1: {environment: production, address: 10.0.0.1, vars: {d: 2024-02-30}}\n", "a real date"),
], ids=["alias", "huge-int", "nan", "bad-date"])
def test_the_node_checks_still_name_the_key_on_either_loader(tmp_path, loader, text, problem):
    # Given a fleet with an alias, a huge integer, a NaN or an impossible date
    path = tmp_path / "fleet.yml"
    path.write_text(text)
    # When it is loaded
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    # Then the one line says what was expected, under the key where it was found
    assert problem in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))


def test_the_inventory_reads_back_as_the_fleet_says_on_both_loaders(tmp_path):
    # Given a fleet whose vars hold unicode beyond U+FFFF, quotes, YAML words and multi-line text
    path = tmp_path / "fleet.yml"
    path.write_text(yaml.safe_dump({"defaults": {"vars": {"motd": "é ünï 🚀", "word": "yes", "num": "0x1",
                                                          "multi": "a\nb: c", "q": "it's \"x\""}},
                                    "nodes": {"node1": {"environment": "production", "address": "10.0.0.1",
                                                        "tags": ["canary"]},
                                              "on": {"environment": "production", "address": "web.example.com"}}},
                                   allow_unicode=True))
    fleet = load_fleet(path)
    # When its inventory is rendered
    text = render_inventory(fleet, "production")
    # Then each loader reads back exactly the inventory the fleet describes
    out = tmp_path / "production.yml"
    out.write_text(text)
    for cls in schema.STRICT_LOADERS.values():
        original = schema._StrictLoader
        schema._StrictLoader = cls
        try:
            assert schema.load_yaml_mapping(out, "inventory") == fleet.inventory("production")
        finally:
            schema._StrictLoader = original
    # And the same fleet gives the same bytes
    assert render_inventory(load_fleet(path), "production") == text


def test_the_ipv4_shortcut_accepts_exactly_what_ipaddress_writes_back_unchanged():
    # Given every octet from 0 to 999, with and without leading zeros, and some non-numbers, in each position
    octets = [str(i) for i in range(1000)] + [f"0{i}" for i in range(100)] + [f"00{i}" for i in range(10)]
    octets += ["", "a", "-1", "1 ", "٣"]  # an Arabic-Indic digit: \d would take it, ipaddress does not
    for octet in octets:
        for position in range(4):
            parts = ["1", "2", "3", "4"]
            parts[position] = octet
            text = ".".join(parts)
            try:
                canonical = str(ipaddress.ip_address(text)) == text
            except ValueError:
                canonical = False
            # Then the shortcut takes it exactly when ipaddress reads it and writes it back unchanged
            assert bool(_CANONICAL_IPV4_RE.fullmatch(text)) == canonical, text


def test_two_nodes_at_one_address_are_still_refused_whatever_its_spelling(tmp_path):
    # Given two nodes at one IPv4 address, the second written with a leading zero (not the shortcut's form)
    path = tmp_path / "fleet.yml"
    path.write_text("nodes:\n  a: {environment: production, address: 10.0.0.1}\n"
                    "  b: {environment: production, address: '10.0.0.01'}\n")
    # When it is loaded
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    # Then it is refused on that node's address (ipaddress refuses the leading zero)
    assert "nodes.b.address" in str(err.value)
    # And two plain spellings of one address are refused as the same address
    path.write_text("nodes:\n  a: {environment: production, address: 10.0.0.1}\n"
                    "  b: {environment: production, address: 10.0.0.1}\n")
    with pytest.raises(ConfigError, match="node a has 10.0.0.1 too"):
        load_fleet(Path(path))


def test_each_hosts_vars_are_a_deep_copy_nested_values_included(tmp_path):
    # Given defaults whose vars nest a mapping, a list and a set
    path = tmp_path / "fleet.yml"
    path.write_text("defaults:\n"
                    "  vars: {app: {ports: [8080, 8081], opts: {tls: true}}, when: 2024-01-02, s: !!set {a}}\n"
                    "nodes:\n  a: {environment: production, address: 10.0.0.1}\n"
                    "  b: {environment: production, address: 10.0.0.2}\n")
    fleet = load_fleet(path)
    a, b = (fleet.host_vars(node) for node in fleet.nodes)
    # When one host's nested vars are changed
    a["app"]["ports"].append(9090)
    a["app"]["opts"]["tls"] = False
    a["s"].add("b")
    # Then neither the other host's nor the fleet's defaults change
    assert b["app"] == {"ports": [8080, 8081], "opts": {"tls": True}} and b["s"] == {"a"}
    assert fleet.defaults["app"] == {"ports": [8080, 8081], "opts": {"tls": True}} and fleet.defaults["s"] == {"a"}
    assert a["when"] == b["when"]


def test_the_cycle_collector_is_paused_while_a_fleet_is_read_and_back_after_even_on_an_error(tmp_path, monkeypatch):
    import gc

    from lrelease import fleet as fleet_module

    # Given a fleet file, and a schema check that notes whether the collector runs meanwhile
    path = tmp_path / "fleet.yml"
    path.write_text(FLEET_OK)
    seen = []
    real_check = fleet_module.schema_check.check
    monkeypatch.setattr(fleet_module.schema_check, "check", lambda *a: (seen.append(gc.isenabled()), real_check(*a)))
    assert gc.isenabled()
    # When it is read
    load_fleet(path)
    # Then the collector was off while it was read, and is on again after
    assert seen == [False] and gc.isenabled()
    # And after a file that is refused too
    path.write_text(FLEET_TWICE)
    with pytest.raises(ConfigError):
        load_fleet(path)
    assert gc.isenabled()
    # And a collector that was off stays off
    gc.disable()
    try:
        path.write_text(FLEET_OK)
        load_fleet(path)
        assert not gc.isenabled()
    finally:
        gc.enable()
