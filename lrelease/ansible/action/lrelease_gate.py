# Copyright lrelease contributors
# Apache-2.0
"""lrelease_gate: the controller-side health gate between waves (thin; the decision lives in
``lrelease.gate``)."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from ansible.plugins.action import ActionBase

try:
    from lrelease import secrets
    from lrelease.errors import LreleaseError
    from lrelease.gate import GateRequest, evaluate
except ImportError:  # run from a checkout whose package is not installed (AWX project sync)
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from lrelease import secrets
    from lrelease.errors import LreleaseError
    from lrelease.gate import GateRequest, evaluate

# DOCUMENTATION, EXAMPLES and RETURN: lrelease/ansible/modules/lrelease_gate.py (where ansible-doc looks).

ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "kind": {"type": "str", "default": "http"},
    "bake_seconds": {"type": "float", "default": 0.0},
    "timeout": {"type": "float", "default": 30.0},
    "interval": {"type": "float", "default": 1.0},
    "expect_status": {"type": "list", "elements": "int", "default": []},
    "body_json": {"type": "dict", "default": {}},
    "body_contains": {"type": "str", "default": ""},
    "successes": {"type": "int", "default": 1},
    "request_timeout": {"type": "float", "default": 2.0},
    "apm": {"type": "dict"},
    "switched_at": {"type": "float"},
    "health_path": {"type": "str", "default": "/health"},
    "on_host": {"type": "bool", "default": False},
    "settle": {"type": "str", "default": ""},
}
_DECIDER_PARAMS = ("expect_status", "body_json", "body_contains", "successes", "request_timeout")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        secrets.register_url(args["url"])  # a health URL's token= never leaves in the result
        if self._task.check_mode:
            result.update(skipped=True, msg="the gate does not run in check mode")
            return result
        host = task_vars.get("inventory_hostname", "?")
        if args["on_host"]:
            if args["kind"] != "port":
                result.update(failed=True, msg="lrelease_gate: on_host goes with kind port only, got kind %s" % args["kind"])
                return result
            result.update(self._port_on_host(args, task_vars))
        else:
            result.update(self._decide(args, task_vars, host))
        if not result.get("failed") and args["settle"]:
            result.update(self._settle(args["settle"]))
        return secrets.scrub_data(result)

    def _port_on_host(self, args, task_vars):
        """The port check made on the host itself (ansible.builtin.wait_for there): for an app that
        only listens on the host's loopback."""
        where = urlsplit(args["url"])
        if where.scheme != "tcp" or not where.hostname or where.port is None:
            return {"failed": True, "verdict": "fail", "msg": "lrelease_gate: a port check's url is tcp://HOST:PORT, "
                    "got %r" % args["url"]}
        ran = self._execute_module(module_name="ansible.builtin.wait_for", task_vars=task_vars, module_args={
            "host": where.hostname, "port": where.port, "timeout": max(1, int(args["timeout"]))})
        passed = not ran.get("failed")
        return {"verdict": "pass" if passed else "fail", "evidence": {"on_host": ran}, "changed": False,
                "failed": not passed,
                "msg": "port check %s on the host: %s" % ("passed" if passed else "failed", ran.get("msg", ""))}

    def _settle(self, path):
        """After a pass: remove the marker of an unsettled switch (``.lrelease/pending``) on the
        host, one shell command (no Python started there), as the switch's own step would."""
        ran = self._low_level_execute_command("rm -f -- %s" % shlex.quote(path))
        if ran.get("rc", 1) != 0:
            return {"failed": True, "msg": "passed, but removing %s on the host failed (exit %s): %s" % (
                path, ran.get("rc"), (ran.get("stderr") or ran.get("stdout") or "").strip())}
        return {"changed": True, "settled": path}

    def _decide(self, args, task_vars, host):
        result = {}
        try:
            params = {k: args[k] for k in _DECIDER_PARAMS}
            params["expect_status"] = params["expect_status"] or "2xx"  # [] (the extra var's default): any 2xx
            if args["kind"] == "apm":
                params.update(_apm_params(args, task_vars))
            request = GateRequest(
                host=host, url=args["url"], bake_seconds=args["bake_seconds"], timeout=args["timeout"],
                interval=args["interval"], params=params,
            )
            outcome = evaluate(request, args["kind"])
        except LreleaseError as err:
            result.update(failed=True, verdict="fail", evidence={}, msg=str(err))
            return result
        result.update(outcome.to_dict(), changed=False)
        what = "port check" if args["kind"] == "port" else "gate"
        if outcome.passed:
            result["msg"] = f"{what} passed on {host}: {outcome.reason}"
        else:
            result.update(failed=True, msg=f"{what} failed on {host}: {outcome.reason}")
        return result


def _app_url(name, hostvars):
    hv = hostvars.get(name, {})
    return "http://%s:%s" % (hv.get("ansible_host", name), hv.get("lrelease_app_port", 8080))


def _halted_judgement(host, data):
    """This host's entry of lrelease_gate_continue (set by ``lrelease resume``), or None."""
    if not data:
        return None
    if not isinstance(data, dict):
        raise LreleaseError("lrelease_gate_continue: expected a mapping of host -> halted judgement, got %r" % (data,))
    return data.get(host)


def _past_since(given, play, hostvars, build):
    """The latest of ``given`` (lrelease_gate_past_since) and the moments the play's hosts last
    changed build before this roll-out (``current_changed_at`` of the staging step's
    ``lrelease_stage_info``): a build another run, another checkout or a human rolled back
    minutes ago is not the old build, and its minutes would read as dispersion. Hosts already on
    ``build`` (switched by the roll-out a resume continues) are left out: their change is this
    roll-out's own. None when nothing is known."""
    times = []
    for host in play:
        staged = hostvars.get(host, {}).get("lrelease_stage_info")
        if not isinstance(staged, dict) or (build and staged.get("current") == build):
            continue
        changed = staged.get("current_changed_at")
        if isinstance(changed, (int, float)) and not isinstance(changed, bool):
            times.append(changed)
    if given not in (None, ""):
        try:
            times.append(float(given))
        except (TypeError, ValueError):
            return given  # not a time: the decider names lrelease_gate_past_since
    return max(times, default=None)


def _apm_params(args, task_vars):
    """The canary (this host) and the reference: hosts of the play after the current batch.
    Batches run in play order, so those are exactly the hosts not switched yet; hosts a resume
    left out of the play are already on the build and rightly not part of it."""
    import lrelease.gate.canary  # noqa: F401  registers the ``apm`` decider
    from lrelease.gate.judge import FEW_REFERENCE_HOSTS

    if not args.get("apm"):
        raise LreleaseError("lrelease_gate: kind apm needs the apm settings (extra var lrelease_gate_apm)")
    hostvars = task_vars.get("hostvars", {})
    play = list(task_vars.get("ansible_play_hosts_all") or [])
    batch = set(task_vars.get("ansible_play_batch") or [])
    after = max((play.index(h) for h in batch if h in play), default=len(play) - 1) + 1
    me = task_vars.get("inventory_hostname")
    apm = dict(args["apm"])
    # Each gate task is its own process: keep scrape readings in one file per roll-out, so
    # later waves (and the last one, judged against its own past) can use earlier readings.
    # The CLI names a file in its state dir (removed when the roll-out ends); a plain
    # ansible-playbook or AWX run keeps it in the temp dir under the roll-out's id, or under
    # this ansible-playbook run (the gate runs in a worker forked from it) without one.
    rollout = str(task_vars.get("lrelease_rollout_id") or task_vars.get("awx_job_id") or "run-%d" % os.getppid())
    readings = task_vars.get("lrelease_gate_readings") or os.path.join(
        tempfile.gettempdir(), "lrelease-scrape-%s.json" % rollout)
    if apm.get("provider") == "scrape":
        settings = dict(apm.get("provider_settings") or {})
        settings.setdefault("state_path", readings)
        apm["provider_settings"] = settings
    # One judgement per wave (lrelease.gate.wave): the task of the batch's first host judges
    # every host of the batch and leaves the others' results on a board beside the readings;
    # not when a resume hands back halted judgements (each goes on from its own evidence).
    wave = [h for h in (task_vars.get("ansible_play_batch") or []) if h in play] or [me]
    continuing = bool(task_vars.get("lrelease_gate_continue"))
    past_since = task_vars.get("lrelease_gate_past_since")
    return {
        "wave": [] if continuing else [
            {"name": h, "url": _app_url(h, hostvars),
             "switched_at": hostvars.get(h, {}).get("lrelease_wave_started_at", args.get("switched_at"))}
            for h in wave],
        "board": readings + ".waves",
        # This ansible-playbook run (the gate runs in a worker forked from it): a board is never
        # read by a later run of the same roll-out (a resume).
        "run": "%s/%d" % (rollout, os.getppid()),
        "apm": apm,
        "canary": {"name": me, "url": _app_url(me, hostvars)},
        "reference": [{"name": h, "url": _app_url(h, hostvars)} for h in play[after:]],
        "switched_at": args.get("switched_at"),
        "health_path": args["health_path"],
        # A resume hands back this host's halted judgement (lrelease_gate_continue: {host: ...});
        # the decider goes on from it when its evidence is still sound.
        "continue": _halted_judgement(me, task_vars.get("lrelease_gate_continue")),
        # The window before the switch starts no earlier than the last change of the fleet's
        # builds: the environment's previous roll-out (the wrapper sets it from the state store)
        # or any play host's `current` as staging read it (whoever changed it).
        # Read only where the decider uses that window (fewer reference hosts than FEW_REFERENCE_HOSTS):
        # it reads every play host's staging result, which a task of a large wave need not do.
        "past_since": _past_since(past_since, play, hostvars, task_vars.get("lrelease_build"))
        if len(play) - after < FEW_REFERENCE_HOSTS else past_since,
        # The same health check as the http gate and the verify steps (lrelease.healthcheck).
        "health_check": {"expect_status": args["expect_status"] or "2xx", "body_json": args["body_json"],
                         "body_contains": args["body_contains"]},
    }
