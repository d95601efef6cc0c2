#!/usr/bin/python
# Copyright lrelease contributors
# Apache-2.0
"""lrelease_gate: documentation of the action plugin of the same name
(lrelease/ansible/action/lrelease_gate.py), which does all its work on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lrelease_gate
short_description: Judge whether a host that just took a build may keep it
description:
  - "Runs on the controller, once per host (not C(run_once)): every host of a wave is judged
    and a failing host fails its own task."
  - "With C(kind=apm) the wave is judged once: the task of the batch's first host judges every
    host of the batch, each on its own against the same reference hosts, and hands each other
    host's task its verdict and evidence, which that task returns as its own (lrelease.gate.wave;
    not when C(lrelease_gate_continue) hands back halted judgements)."
  - "Bakes for O(bake_seconds), then asks the decider named by O(kind). The C(http) decider polls
    O(url) for up to O(timeout) seconds and passes on the first O(successes) answers in a row
    that pass the health check (O(expect_status), O(body_json), O(body_contains): the same rule
    as the APM gate's health step, lrelease.healthcheck); C(port) passes once C(tcp://host:port)
    accepts a connection."
options:
  url:
    description: Health URL of this host as the controller reaches it (C(tcp://host:port) for C(port)).
    type: str
    required: true
  kind:
    description: Registered decider (lrelease.gate), C(http) or C(port).
    type: str
    default: http
  bake_seconds:
    description: Seconds to wait before judging.
    type: float
    default: 0
  timeout:
    description: Seconds to keep polling after the bake.
    type: float
    default: 30
  interval:
    description: Seconds between polls.
    type: float
    default: 1
  expect_status:
    description: Healthy status codes; empty (the default) is any 2xx.
    type: list
    elements: int
    default: []
  body_json:
    description:
      - "Optional: the body is JSON whose C(field) (a dotted path, e.g. C(checks.db)) holds one of
        C(values) (compared as JSON values). Empty: no body rule."
    type: dict
    default: {}
  body_contains:
    description: "Optional: a substring the body must contain. Empty: no such rule."
    type: str
    default: ""
  successes:
    description: Healthy answers in a row needed to pass.
    type: int
    default: 1
  request_timeout:
    description: Seconds allowed for one request.
    type: float
    default: 2
  apm:
    description:
      - "Settings of the C(apm) decider (the C(gate:) section of lrelease.yml as the extra var
        C(lrelease_gate_apm)): provider, provider settings, judge. The canary is this host; the
        reference is every host of the play after the current batch (not switched yet)."
    type: dict
  switched_at:
    description: Unix time the wave started (C(apm) compares the last wave with its own window before it).
    type: float
  health_path:
    description: Path of the app's health endpoint (C(apm) fails a canary at once when it fails).
    type: str
    default: /health
  on_host:
    description: "O(kind=port) only: make the check on the host itself (M(ansible.builtin.wait_for) run there,
      O(url) C(tcp://HOST:PORT) as the host sees it, O(timeout) in whole seconds), for an app that only listens
      on the host's loopback. Otherwise the controller connects."
    type: bool
    default: false
  settle:
    description: "A path on the host removed (C(rm -f), one shell command, no Python started there) once the
      check passed, in the same task: the switch and rollback roles settle their switch this way
      (C(.lrelease/pending): a later run no longer needs to restart the host for it). Empty: nothing is removed.
      A removal that fails fails the task."
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Judge this host after its switch
  lrelease.release.lrelease_gate:
    kind: http
    url: "http://{{ ansible_host }}:8080/healthz"
    bake_seconds: 30
    timeout: 60
    successes: 3
    expect_status: [200]
  delegate_to: localhost
  register: __lrelease_gate
"""

RETURN = r"""
verdict: {description: "C(pass) or C(fail).", type: str, returned: always}
evidence: {description: Status codes, truncated bodies, errors and timings behind the verdict., type: dict, returned: always}
settled: {description: The path O(settle) removed on the host., type: str, returned: when O(settle) was given and the check passed}
"""
