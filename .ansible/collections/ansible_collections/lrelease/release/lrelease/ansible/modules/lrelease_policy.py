#!/usr/bin/python
# Copyright lrelease contributors
# Apache-2.0
"""lrelease_policy: documentation of the action plugin of the same name
(lrelease/ansible/action/lrelease_policy.py), which does all its work on the controller."""

from __future__ import annotations

DOCUMENTATION = r"""
module: lrelease_policy
short_description: Take the release lock, check the policies and record a roll-out run by plain ansible-playbook or AWX
description:
  - "Runs on the controller, C(run_once) for O(step=begin) and O(step=end), per host for O(step=record).
    deploy.yml and rollback.yml call it; see docs/design.md, \"Plain and AWX runs: the policy step\"."
  - "O(step=begin) with O(lock) (the lrelease wrapper runs the playbook): checks that the state
    database's lock of the environment still carries the wrapper's fencing token, and records nothing
    (the wrapper records). Fails, before any host changed, when it does not."
  - "O(step=begin) without O(lock) (plain ansible-playbook, AWX, cron): takes the environment's lock
    (bound to ansible-playbook's process, with a fencing token), checks the release policies
    (C(lrelease.policies.check_start)), records the roll-out (action, build, actor, reason, AWX job id)
    and starts a detached guardian process that beats the lock's heartbeat while ansible-playbook
    lives and, if the playbook ends without O(step=end) (a failed play, a kill), records how it ended
    from the host phases and releases the lock. Fails with one line naming the holder when another
    live roll-out holds the lock, or with the policy's reason (recorded as C(refused))."
  - "O(step=record): records this host's phase (C(staged), C(switched), C(gate_passed), C(gate_failed),
    C(failed), C(rolled_back)...; the wrapper's vocabulary) and, with O(gate), the gate's verdict.
    Never fails the host: a write that cannot be made is reported as a warning."
  - "O(step=end): records how the run ended (C(succeeded), C(rollback_failed) for failed hosts, C(interrupted)
    when O(stopped), C(paused) when O(window_closed)) and releases the lock."
options:
  step:
    description: Which part of the policy step.
    type: str
    choices: [begin, record, end]
    required: true
  action:
    description: "O(step=begin): what the playbook does."
    type: str
    choices: [deploy, rollback]
    default: deploy
  env:
    description: "O(step=begin): the environment whose lock is taken (C(lrelease_env), default C(lrelease_hosts))."
    type: str
  build:
    description: "O(step=begin): the build deployed, or the build rolled back (or to)."
    type: str
    default: ""
  lock:
    description: "O(step=begin): C(lrelease_lock) as the wrapper passes it, C({db, env, token}); given, the
      step only verifies it."
    type: dict
  state_db:
    description: "O(step=begin): the SQLite file of the state (C(lrelease_state_db)); empty: the URL in
      E(LRELEASE_STATE_URL) or the file E(LRELEASE_STATE_URL_FILE) names, else C(.lrelease/lrelease.db)
      in the directory above the playbooks (the checkout's default C(state_dir))."
    type: str
    default: ""
  actor:
    description: "O(step=begin): who runs it (C(lrelease_actor)); empty: E(LRELEASE_USER), then O(awx_user),
      then the OS user."
    type: str
    default: ""
  awx_user:
    description: "O(step=begin): AWX's C(awx_user_name) (or C(tower_user_name))."
    type: str
    default: ""
  job_id:
    description: "O(step=begin): AWX's C(awx_job_id) (or C(tower_job_id)), recorded and shown by C(lrelease history)."
    type: str
    default: ""
  rollout_id:
    description: "O(step=begin): C(lrelease_rollout_id) if given: the id the hosts' ledgers carry (and the
      row's id unless that id was recorded before)."
    type: str
    default: ""
  reason:
    description: "O(step=begin): why (C(lrelease_reason)), recorded."
    type: str
    default: ""
  force_reason:
    description: "O(step=begin): C(lrelease_force_reason): passed to the policies as a forced start's reason."
    type: str
    default: ""
  skip_next_reason:
    description: "O(step=begin): C(lrelease_skip_next_reason): lets a deploy of a build not yet proven on the
      environment it C(requires) through, recorded with this reason (the CLI's C(--skip-next --reason))."
    type: str
    default: ""
  config:
    description: "O(step=begin): C(lrelease_config): the lrelease.yml whose environment settings the policies
      read (C(captain: required), C(requires)); default the checkout's lrelease.yml beside C(playbooks/) when
      there is one. Without a file only the state store's policies apply (an environment pause, a release
      captain). A file that does not name the environment refuses the run."
    type: str
    default: ""
  undo:
    description: "O(step=begin), rollback: C(lrelease_rollback_undo); the first id recorded is the roll-out undone."
    type: list
    elements: str
    default: []
  hosts:
    description: "O(step=begin): the play's hosts (recorded in the plan); O(step=record): hosts to record at once
      (default this host)."
    type: list
    elements: str
    default: []
  serial:
    description: "O(step=begin): C(lrelease_waves), to number the waves of the gates recorded."
    type: list
    elements: raw
    default: []
  policy:
    description: "O(step=record) and O(step=end): the result of O(step=begin) (registered)."
    type: dict
  phase:
    description: "O(step=record): the phase (lrelease/statedb.py PHASES)."
    type: str
  detail:
    description: "O(step=record): details kept with the phase."
    type: dict
    default: {}
  gate:
    description: "O(step=record): the C(lrelease_gate) task's result; its verdict and evidence are recorded."
    type: dict
  failed:
    description: "O(step=end): hosts that failed in the run (recorded as C(failed))."
    type: list
    elements: str
    default: []
  stopped:
    description: "O(step=end): the run stopped at a safe point (ends C(interrupted))."
    type: bool
    default: false
  window_closed:
    description: "O(step=end): the run stopped at a wave boundary because its deploy window closed (ends
      C(paused), exit code 5, when no host failed)."
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: lrelease policy
  lrelease.release.lrelease_policy:
    step: begin
    action: deploy
    env: "{{ lrelease_env | default(lrelease_hosts | default('all')) }}"
    build: "{{ lrelease_build }}"
    lock: "{{ lrelease_lock | default(omit) }}"
    job_id: "{{ awx_job_id | default('') }}"
  run_once: true
  register: __lrelease_policy

- name: lrelease policy record switched
  lrelease.release.lrelease_policy:
    step: record
    policy: "{{ __lrelease_policy }}"
    phase: switched
  when: __lrelease_policy.record | default(false)
"""

RETURN = r"""
record:
  description: True when this run records (no wrapper); the record and end steps run only then.
  type: bool
  returned: step=begin
rollout_id: {description: The roll-out's id in the state database., type: str, returned: step=begin}
ledger_id: {description: The id the hosts' ledgers carry (lrelease_rollout_id)., type: str, returned: step=begin}
lock:
  description: "C({db, env, token, closes_at}): what the fencing check before each wave reads (as C(lrelease_lock));
    C(closes_at) is when the deploy window the run started in closes (ISO 8601; empty: no window)."
  type: dict
  returned: step=begin
status: {description: How the run was recorded as ended., type: str, returned: step=end}
"""


from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=False)
    module.fail_json(msg="lrelease_policy runs on the controller as an action plugin; put the package's "
                         "action plugins on Ansible's path (ansible.cfg action_plugins)")


if __name__ == "__main__":
    main()
