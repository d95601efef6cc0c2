# Copyright lrelease contributors
# Apache-2.0
"""lrelease_record: records a host that Ansible could not reach into a plain run's record (the
policy step's; lrelease/policystep.py). No task and no rescue runs on an unreachable host, so the
playbooks cannot record it themselves; this callback sees it in ansible-playbook's own process."""

from __future__ import annotations

import sys
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: lrelease_record
type: notification
short_description: Record the hosts a plain or AWX run of deploy.yml or rollback.yml could not reach
description:
  - "When C(playbooks/deploy.yml) or C(playbooks/rollback.yml) runs without the lrelease wrapper
    (plain ansible-playbook, an AWX job template, cron), their policy step (M(lrelease.release.lrelease_policy))
    records the roll-out and each host's progress in the lrelease state. A host that Ansible cannot
    reach (SSH fails: the node is gone) runs no further task, not even a C(rescue), so the playbook
    cannot record it; without this callback such a run ends C(interrupted), as if it had been killed."
  - "This callback watches the policy step's result (C(step=begin)) to learn the run's id and where
    its state is, and records each unreachable host as C(unreachable) (a failed host, as the
    wrapper records it) with the SSH error (scrubbed of secrets, cut to 500 characters). The run then
    ends as a run with a failed host does: C(halted) (exit 5) when hosts had moved onto the build,
    C(rolled_back) (exit 1) when none had; a rollback C(rollback_failed) (exit 3).
    C(lrelease history) and C(lrelease show) name the unreachable host."
  - "It does nothing when the lrelease wrapper runs the playbook (the wrapper records from
    ansible-runner's events), when no policy step ran, after the run's end step, or for a task with
    C(ignore_unreachable) (the host goes on). It opens the
    state only for an unreachable host, so it costs nothing otherwise; a write that cannot be made is a
    warning, never a failure."
  - "The checkout's C(ansible.cfg), which AWX projects use too, enables it. With an ansible.cfg of your
    own (or the installed collection), enable it there:
    C(callbacks_enabled = lrelease.release.lrelease_record) in C([defaults]), or
    E(ANSIBLE_CALLBACKS_ENABLED=lrelease.release.lrelease_record)."
requirements:
  - "the lrelease Python package on the controller (as for the policy step)"
options: {}
"""

EXAMPLES = r"""
# In your own ansible.cfg, [defaults]: callbacks_enabled = lrelease.release.lrelease_record
# or in the environment ansible-playbook runs with (a cron job's, an AWX execution environment's):
environment:
  ANSIBLE_CALLBACKS_ENABLED: lrelease.release.lrelease_record
"""

_POLICY = "lrelease_policy"  # the policy step's action (by its short name or lrelease.release.lrelease_policy)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "lrelease.release.lrelease_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None):
        super().__init__(display=display, options=options)
        self._policy = None  # the policy step's result of a recorded plain run (its run id, its lock)

    def v2_runner_on_ok(self, result):
        task = result.task
        if str(task.action or "").rsplit(".", 1)[-1] != _POLICY:
            return
        data = result.result
        if data.get("record") is True and data.get("rollout_id") and isinstance(data.get("lock"), dict):
            self._policy = {"rollout_id": data["rollout_id"], "lock": dict(data["lock"])}
        elif data.get("record") is False:  # the wrapper runs the playbook: it records
            self._policy = None

    def v2_runner_on_unreachable(self, result):
        if self._policy is None or result.task.ignore_unreachable:  # (a task that says so goes on with the host)
            return
        host, data = result.host.get_name(), result.result
        try:
            recorded = _record(self._policy, host, str(data.get("msg") or ""), result.task_name or "")
        except Exception as exc:  # never fail or stop the run for its record: say so
            self._display.warning("lrelease_record: %s unreachable, not recorded: %s" % (host, _scrub(str(exc))))
            return
        if recorded:
            self._display.vv("lrelease_record: %s recorded unreachable in roll-out %s" % (host, self._policy["rollout_id"]))


def _lrelease():
    """The package, imported only when a host is unreachable (a run's start pays nothing for it)."""
    try:
        from lrelease import policystep, secrets
        from lrelease.state import LockLost
    except ImportError:  # run from a checkout whose package is not installed (AWX project sync)
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        from lrelease import policystep, secrets
        from lrelease.state import LockLost
    return policystep, secrets, LockLost


def _record(policy, host, error, task):
    policystep, _, LockLost = _lrelease()
    try:
        store = policystep.open_recorded(policy)
    except LockLost:  # the run has ended (or was taken over): nothing of it to record
        return False
    with store:
        return policystep.unreachable(store, policy["rollout_id"], host, error, task)


def _scrub(text):
    try:
        return _lrelease()[1].scrub(text)
    except ImportError:  # no package, hence no store and no secret of it in the text
        return text
