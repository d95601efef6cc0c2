# Copyright lrelease contributors
# Apache-2.0
"""lrelease_release, action side: with ``artifact`` (a controller path) send the artifact
straight to ``src`` on the host (``<root>/.lrelease/incoming/...``) in one transfer, then run
the module on it. That is one transfer and one module run, where ``copy`` + module takes six
round trips."""

from __future__ import annotations

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
            mkdir = self._low_level_execute_command("mkdir -p -m 0700 %s" % shlex.quote(incoming))
            if mkdir["rc"] != 0:
                raise AnsibleActionFail("cannot create %s on the host: %s" % (incoming, mkdir["stderr"].strip()))
            self._transfer_file(artifact, args["src"])
            args["remove_src"] = True
        result.update(self._execute_module(module_name=self._task.action, module_args=args, task_vars=task_vars))
        return result
