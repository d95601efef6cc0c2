# Copyright lrelease contributors
# Apache-2.0
"""lrelease_policy: the policy step of deploy.yml and rollback.yml, on the controller (thin; the
logic lives in ``lrelease.policystep``). Its documentation (for ansible-doc) is in
lrelease/ansible/modules/lrelease_policy.py, as modules document their action plugins."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ansible.plugins.action import ActionBase

try:
    from lrelease import guardian, policystep, secrets
    from lrelease.errors import ExitCode, LreleaseError
    from lrelease.state import LockLost, StateStore
    from lrelease.statedb import DB_ERRORS
except ImportError:  # run from a checkout whose package is not installed (AWX project sync)
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from lrelease import guardian, policystep, secrets
    from lrelease.errors import ExitCode, LreleaseError
    from lrelease.state import LockLost, StateStore
    from lrelease.statedb import DB_ERRORS

ARGUMENT_SPEC = {
    "step": {"type": "str", "required": True, "choices": ["begin", "record", "end"]},
    "action": {"type": "str", "default": "deploy", "choices": ["deploy", "rollback"]},
    "env": {"type": "str"},
    "build": {"type": "str", "default": ""},
    "lock": {"type": "dict"},
    "state_db": {"type": "str", "default": ""},
    "actor": {"type": "str", "default": ""},
    "awx_user": {"type": "str", "default": ""},
    "job_id": {"type": "str", "default": ""},
    "rollout_id": {"type": "str", "default": ""},
    "reason": {"type": "str", "default": ""},
    "force_reason": {"type": "str", "default": ""},
    "skip_next_reason": {"type": "str", "default": ""},
    "config": {"type": "str", "default": ""},
    "undo": {"type": "list", "elements": "str", "default": []},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "serial": {"type": "list", "elements": "raw", "default": []},
    "policy": {"type": "dict"},
    "phase": {"type": "str"},
    "detail": {"type": "dict", "default": {}},
    "gate": {"type": "dict"},
    "failed": {"type": "list", "elements": "str", "default": []},
    "stopped": {"type": "bool", "default": False},
    "window_closed": {"type": "bool", "default": False},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            result.update(getattr(self, "_" + args["step"])(args, task_vars))
        except LreleaseError as err:
            result.update(failed=True, msg=str(err), exit_code=int(getattr(err, "exit_code", ExitCode.USAGE)))
        result["changed"] = False
        return secrets.scrub_data(result)

    # -- begin -------------------------------------------------------------------------------
    def _begin(self, args, task_vars):
        env = args["env"] or "all"
        if args["lock"] is not None:  # the wrapper runs us: it holds the lock and records
            policystep.verify(args["lock"])
            return {"record": False, "msg": "run by the lrelease wrapper: lock of %s verified" % env}
        playbooks = self._playbooks_dir(task_vars)
        where = policystep.locate(args["state_db"], playbooks, args["config"])
        extra = {"lrelease_actor": args["actor"], "awx_user_name": args["awx_user"], "awx_job_id": args["job_id"]}
        start = policystep.Start(
            env=env, action=args["action"], build=args["build"], actor=policystep.actor(extra),
            owner_pid=os.getppid(),  # this task runs in a worker forked from ansible-playbook
            reason=args["reason"], force_reason=args["force_reason"], ledger_id=args["rollout_id"],
            via=policystep.via(extra), undo=args["undo"], hosts=args["hosts"], serial=args["serial"],
            skip_next_reason=args["skip_next_reason"],
            environment=policystep.environment_settings(args["config"], env, playbooks))
        with StateStore(where.target) as store:
            began = policystep.begin(store, start)
            try:
                pid = guardian.spawn(where.db, env, began["rollout_id"], began["token"], start.owner_pid)
            except OSError as exc:
                store.finish_rollout(began["rollout_id"], "crashed", int(ExitCode.INTERNAL))
                store.release_lock(env, began["rollout_id"])
                raise LreleaseError("cannot start the run's guardian (%s); nothing changed" % exc) from None
        lock = {"db": where.db, "env": env, "token": began["token"], "closes_at": began["closes_at"]}
        return {"record": True, "env": env, "lock": lock, "rollout_id": began["rollout_id"],
                "ledger_id": began["ledger_id"], "actor": start.actor, "via": start.via, "guardian": pid,
                "hosts": list(start.hosts), "serial": list(start.serial),
                "msg": "%s %s of %s to %s by %s: lock taken (token %d), recorded in %s" % (
                    start.action, began["rollout_id"], start.build, env, start.actor, began["token"], where.shown)}

    # -- record ------------------------------------------------------------------------------
    def _record(self, args, task_vars):
        policy, phase = args["policy"] or {}, args["phase"]
        if not policy.get("record") or not phase:
            return {"skipped": True, "msg": "nothing to record"}
        hosts = args["hosts"] or [task_vars.get("inventory_hostname")]
        gate = args["gate"]
        try:
            with self._store(policy) as store:
                wave = policystep.wave_of(hosts[0], policy.get("hosts") or [], policy.get("serial") or [])
                detail = dict(args["detail"])
                if gate is not None:
                    detail = {"host": hosts[0], "wave": wave, "verdict": gate.get("verdict", "fail"),
                              "reason": str(gate.get("reason") or gate.get("msg") or ""),
                              "evidence": gate.get("evidence") or {}}
                for host in hosts:
                    policystep.record(store, policy["rollout_id"], host, phase, detail, gate=gate, wave=wave)
        except (LreleaseError, *DB_ERRORS) as exc:  # never fail a host for its record (a lost lock: the wave check)
            return {"recorded": False, "warnings": ["lrelease_policy: %s not recorded: %s" % (phase, exc)]}
        return {"recorded": True, "msg": "%s: %s" % (", ".join(hosts), phase)}

    # -- end ---------------------------------------------------------------------------------
    def _end(self, args, task_vars):
        policy = args["policy"] or {}
        if not policy.get("record"):
            return {"skipped": True, "msg": "run by the lrelease wrapper: it records the end"}
        with self._store(policy, adopt=False) as store:
            try:
                store.adopt_lock(policy["env"], policy["rollout_id"], int(policy["lock"]["token"]))
            except LockLost:
                pass  # end() records lock_lost on our row only
            status, code = policystep.end(store, policy["env"], policy["rollout_id"], failed=args["failed"],
                                          stopped=args["stopped"], window_closed=args["window_closed"])
        return {"status": status, "exit_code": code, "failed": code not in (0,),
                "msg": "roll-out %s ended %s (exit code %d); lock released" % (policy["rollout_id"], status, code)}

    def _playbooks_dir(self, task_vars):
        """The directory of the playbook this task is in (deploy.yml's, also when another playbook
        imports it: molecule, a site.yml), whose parent is the checkout."""
        path = (self._task.get_path() or "").rsplit(":", 1)[0]
        return os.path.dirname(path) if path else (task_vars.get("playbook_dir") or "")

    @staticmethod
    def _store(policy, adopt=True):
        return policystep.open_recorded(policy, adopt=adopt)
