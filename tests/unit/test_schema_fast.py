"""The compiled yes-or-unsure schema check (lrelease.schema_fast) agrees with jsonschema.

It may only ever say "valid" where jsonschema finds nothing; schema_check then skips jsonschema,
so a fleet of 10,000 nodes is checked in milliseconds, and a wrong one is still explained key by key.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrelease import schema_check
from lrelease.errors import ConfigError
from lrelease.schema_fast import compile_schema
from tests.unit.test_fuzz import FLEET, fuzz, mutate


def jsonschema_finds_nothing(doc) -> bool:
    return not list(schema_check._validator("fleet").iter_errors(doc))


def string_keys_only(doc) -> bool:
    return not list(schema_check._non_string_keys(doc, ()))


FAST = compile_schema(schema_check.load_schema("fleet"))


def big_fleet(count: int) -> dict:
    nodes = {f"node{i:05d}": {"environment": "production", "address": f"10.0.{i // 250}.{i % 250 + 1}"}
             for i in range(count)}
    nodes["node00000"]["tags"] = ["canary"]
    return {"defaults": {"vars": {"ansible_user": "root"}}, "nodes": nodes}


def test_the_fleet_schema_compiles_and_the_project_schema_is_left_to_jsonschema():
    # Given the two shipped schemas
    # Then the fleet's (the one that grows with the fleet) compiles
    assert FAST is not None
    # And lrelease.yml's, which uses keywords the fast check does not know (oneOf, if/then...), does not
    assert compile_schema(schema_check.load_schema("lrelease")) is None


@pytest.mark.parametrize("schema", [
    {"type": "object", "oneOf": [{"required": ["a"]}]},
    {"properties": {"a": {"minimum": 1}}},
    {"not": {"type": "string"}},
    {"$ref": "https://example.com/other.json"},
    {"type": "decimal"},
], ids=["oneOf", "minimum-deep-inside", "not-a-schema", "remote-ref", "unknown-type"])
def test_a_schema_with_anything_it_does_not_know_does_not_compile(schema):
    # Given a schema with a keyword (or a form of one) the fast check does not know
    # Then it does not compile: jsonschema checks every document of it
    assert compile_schema(schema) is None


@fuzz(400)
@given(data=st.data())
def test_it_says_valid_exactly_when_jsonschema_finds_nothing(data):
    # Given the shipped fleet file mutated at random (near misses, random values, keys renamed...)
    doc = mutate(data, FLEET)
    # When both check it
    fast = FAST(doc)
    # Then the fast check says "valid" exactly when jsonschema finds no mistake (and every key is a string)
    assert fast == (string_keys_only(doc) and jsonschema_finds_nothing(doc)), doc


@pytest.mark.parametrize("edit, key", [
    (lambda n: n["node00007"].update(environment="production\n"), "nodes.node00007.environment"),
    (lambda n: n["node00007"].update(tags=["canary", "canary"]), "nodes.node00007.tags"),
    (lambda n: n["node00007"].update(tags=[1]), "nodes.node00007.tags[0]"),
    (lambda n: n["node00007"].update(vars={"ansible_host": "x"}), "nodes.node00007.vars.ansible_host"),
    (lambda n: n["node00007"].update(vars={"9lives": 1}), "nodes.node00007.vars.9lives"),
    (lambda n: n["node00007"].update(colour="red"), "nodes.node00007.colour"),
    (lambda n: n["node00007"].pop("address"), "nodes.node00007.address"),
    (lambda n: n.update({"bad name": {"environment": "production", "address": "10.9.9.9"}}), "nodes.bad name"),
], ids=["newline", "tag-twice", "tag-number", "ansible_host", "var-name", "unknown-key", "missing", "node-name"])
def test_one_bad_node_among_ten_thousand_is_still_explained(edit, key):
    # Given a 10,000-node fleet with one mistake in one node
    doc = big_fleet(10_000)
    edit(doc["nodes"])
    # When its structure is checked
    found = schema_check.problems(doc, "fleet", "fleet.yml")
    # Then that one key is reported, in jsonschema's full explanation
    assert [e.key for e in found] == [key]
    assert all(isinstance(e, ConfigError) for e in found)


def test_a_right_fleet_of_ten_thousand_nodes_never_reaches_jsonschema(monkeypatch):
    # Given a right 10,000-node fleet, and jsonschema made to fail if it is asked
    doc = big_fleet(10_000)

    def asked(name):
        raise AssertionError("jsonschema was asked about a fleet the fast check knows is right")

    monkeypatch.setattr(schema_check, "_validator", asked)
    # When its structure is checked
    # Then nothing is wrong, and only the fast check looked at it
    assert schema_check.problems(doc, "fleet", "fleet.yml") == []
