# Copyright lrelease contributors
# Apache-2.0
"""lrelease_release, action side: with ``artifact`` (a controller path) send the artifact
straight to ``src`` on the host (``<root>/.lrelease/incoming/...``) in one transfer, then run
the module on it. That is one transfer and one module run, where ``copy`` + module takes six
round trips. The shell command that makes the incoming directory also reads the release's
manifest: a release already complete with this sha256 is not sent again (the module confirms it),
so the caller need not read the host first."""

from __future__ import annotations

import json
import os
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # no temporary directory: the artifact goes straight to `src`
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        artifact = args.pop("artifact", None)
        if artifact and not self._task.check_mode:
            if args.get("state") != "staged" or not args.get("src"):
                raise AnsibleActionFail("lrelease_release: artifact needs state=staged and src (where it goes on the host)")
            if not os.path.isfile(artifact):
                raise AnsibleActionFail("artifact %s is not a file on the controller" % artifact)
            incoming = os.path.dirname(args["src"])
            manifest = os.path.join(args["root"], "releases", args.get("build") or "", ".lrelease-manifest.json")
            mkdir = self._low_level_execute_command("mkdir -p -m 0700 %s && { cat %s 2>/dev/null || true; }" % (
                shlex.quote(incoming), shlex.quote(manifest)))
            if mkdir["rc"] != 0:
                raise AnsibleActionFail("cannot create %s on the host: %s" % (incoming, mkdir["stderr"].strip()))
            if _staged_sha256(mkdir["stdout"]) != (args.get("sha256") or "").lower():
                self._transfer_file(artifact, args["src"])
            args["remove_src"] = True
        result.update(self._execute_module(module_name=self._task.action, module_args=args, task_vars=task_vars))
        return result


def _staged_sha256(text):
    """The sha256 a complete release's manifest records ('' when there is none or it is unreadable)."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    return str(data.get("sha256") or "").lower() if isinstance(data, dict) else ""
