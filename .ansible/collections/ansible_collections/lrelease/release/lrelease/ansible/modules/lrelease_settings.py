#!/usr/bin/python
# Copyright lrelease contributors
# Apache-2.0
"""lrelease_settings: documentation of the action plugin of the same name
(lrelease/ansible/action/lrelease_settings.py), which does all its work on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lrelease_settings
short_description: Check several roles' settings on a host in one task
description:
  - "Runs on the controller, per host. For each role in O(roles), validates the host's variables named in
    that role's C(meta/argument_specs.yml) (entry point O(entry_point)) against the spec, as
    M(ansible.builtin.validate_argument_spec) does for a role; once every spec holds, reads the rules:
    each variable named in O(rules) is a list of messages, empty for a rule that holds."
  - "Fails with every problem found, in one line (C(role lrelease_switch: argument ...; ...) for the specs), and changes nothing.
    deploy.yml checks the stage, switch and cleanup roles with it before any host changes: one task
    per host instead of an argument-spec task and a rules task per role (each task costs Ansible a
    worker process per host)."
  - "The roles' defaults must be visible where the task runs: the play imports the roles
    (M(ansible.builtin.import_role) exposes a role's defaults and vars to its whole play)."
options:
  roles:
    description: The roles whose argument specs are checked, as C(namespace.collection.role), or a bare
      role name of this collection (C(lrelease.release)).
    type: list
    elements: str
    required: true
  entry_point:
    description: The entry point of each role's argument specs.
    type: str
    default: main
  rules:
    description: Names of variables, each a list of messages (empty strings for the rules that hold), read
      only when every argument spec holds (rules may assume the types).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Check the roles' settings
  ansible.builtin.import_role:  # exposes the role's defaults to the play, at no cost
    name: lrelease.release.lrelease_switch
    tasks_from: noop.yml
    rolespec_validate: false

- name: Check the switch role's settings on every host
  lrelease.release.lrelease_settings:
    roles: [lrelease.release.lrelease_switch]
    rules: [__lrelease_switch_problems]
"""

RETURN = r"""
problems: {description: Every problem found (spec errors prefixed with the role)., type: list, elements: str, returned: failure}
"""
