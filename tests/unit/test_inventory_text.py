"""`inventory generate` writes a 10,000-host inventory as text, not node by node through the YAML
emitter; what it writes is byte for byte what dumping the inventory's dict writes, for any fleet.
And its groups are built in one pass, however many tags there are."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from lrelease import schema
from lrelease.fleet import Fleet, FleetNode, render_inventory
from lrelease.schema import dump_yaml
from tests.unit.test_fuzz import fuzz, values

# Names YAML could read as something else, or that libyaml writes quoted, beside ordinary ones.
WORDS = ["yes", "no", "on", "off", "Off", "true", "null", "y", "n", "1e5", "1e3", "0x1f", "123", "0123", "1_000",
         "1.0", "tag_eu", "_a", "a-b", "a.", "web1", "production"]
ADDRESSES = ["10.0.0.1", "10.0.0.2", "198.18.77.11", "2001:db8::2", "::1", "fe80::1", "1:2:3:4:5:6:7:8",
             "2001:db8::", "web1.example.com", "1e5", "1.5e-5", "yes", "0x1f.example", "a-b.c"]
names = st.one_of(st.sampled_from(WORDS), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,12}", fullmatch=True))
var_names = st.one_of(st.sampled_from(["on", "yes", "null", "true", "y", "_", "ansible_user", "port"]),
                      st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True))
var_maps = st.dictionaries(var_names, values, max_size=3)
long_text = st.text(alphabet=st.sampled_from("ab é🚀\n'\":#-"), min_size=900, max_size=1100)  # folds near the width


@st.composite
def fleets(draw) -> Fleet:
    envs = draw(st.lists(st.sampled_from(["production", "next", "on", "yes", "null", "tag_eu", "e1"]), min_size=1,
                         max_size=3, unique=True))
    hosts = draw(st.lists(names, min_size=1, max_size=12, unique=True))
    defaults = draw(st.one_of(var_maps, st.fixed_dictionaries({"motd": long_text})))
    nodes = []
    for host in hosts:
        tags = draw(st.lists(st.sampled_from(["canary", "eu", "on", "yes", "a1"]), max_size=3, unique=True))
        nodes.append(FleetNode(name=host, environment=draw(st.sampled_from(envs)),
                               address=draw(st.sampled_from(ADDRESSES)), tags=tuple(tags),
                               vars=draw(st.one_of(st.just({}), var_maps))))
    return Fleet(path=Path("fleet.yml"), defaults=defaults, nodes=tuple(nodes))


@fuzz(300)
@given(fleet=fleets())
def test_the_written_inventory_is_byte_for_byte_the_dumped_one(fleet):
    # Given any fleet: tricky host, group and environment names, addresses, nested and long vars
    for env in fleet.environments:
        # When its inventory is written
        text = render_inventory(fleet, env)
        # Then the body is exactly what dumping the inventory's dict writes
        body = text.split("\n", 2)[2]
        assert body == dump_yaml(fleet.inventory(env)), env


def test_a_ten_thousand_host_inventory_reads_back_as_its_dict(tmp_path):
    # Given 10,000 hosts, every tenth with vars of its own, every hundredth with a tag of its own
    nodes = tuple(FleetNode(name=f"web{i:05d}", environment="production",
                            address=f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                            tags=(("canary",) if i == 0 else (f"t{i}",) if i % 100 == 0 else ()),
                            vars=({"port": 8000 + i % 7} if i % 10 == 0 else {}))
                  for i in range(10_000))
    fleet = Fleet(path=Path("fleet.yml"), defaults={"ansible_user": "root", "opts": {"tls": True}}, nodes=nodes)
    # When its inventory is written and read back by the strict loader
    out = tmp_path / "production.yml"
    out.write_text(render_inventory(fleet, "production"))
    # Then it reads back as the inventory's dict: every host, its vars, canary first, a group per tag
    read = schema.load_yaml_mapping(out, "inventory")
    assert read == fleet.inventory("production")
    groups = read["all"]["children"]
    assert list(groups["production"]["hosts"])[:2] == ["web00000", "web00001"]
    assert len(groups) == 1 + 1 + 99  # production, tag_canary, tag_t100 ... tag_t9900
    assert groups["tag_t9900"] == {"hosts": {"web09900": {}}}


def test_groups_keep_their_order_with_a_tag_per_host():
    # Given a fleet where each host has a tag of its own, and one shared tag on every other host
    nodes = tuple(FleetNode(name=f"h{i}", environment="production", address=f"10.0.{i // 250}.{i % 250 + 1}",
                            tags=(f"own{i}",) + (("even",) if i % 2 == 0 else ()), vars={}) for i in range(2000))
    fleet = Fleet(path=Path("fleet.yml"), defaults={}, nodes=nodes)
    # When its groups are listed
    groups = dict(fleet.groups("production"))
    # Then every tag group holds exactly its hosts, in inventory order, tags sorted by name
    assert groups["tag_even"] == tuple(f"h{i}" for i in range(0, 2000, 2))
    assert all(groups[f"tag_own{i}"] == (f"h{i}",) for i in range(2000))
    assert list(groups)[:3] == ["production", "tag_even", "tag_own0"]
