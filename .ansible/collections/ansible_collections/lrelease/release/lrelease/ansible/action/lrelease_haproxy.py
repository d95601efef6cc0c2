# Copyright lrelease contributors
# Apache-2.0
"""lrelease_haproxy, action side: on a local connection (the usual ``delegate_to: localhost``)
run the module's code in-process, saving a Python start per call (two per host per wave);
anywhere else execute the module on the target as usual."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ansible.plugins.action import ActionBase

_MODULE_PATH = Path(__file__).resolve().parents[1] / "modules" / "lrelease_haproxy.py"
_LOCAL = {"local", "ansible.builtin.local", "ansible.legacy.local"}


def _module():
    spec = importlib.util.spec_from_file_location("_lrelease_haproxy_module", _MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        transport = getattr(self._connection, "transport", "") or getattr(self._connection, "_load_name", "")
        if transport not in _LOCAL:
            result.update(self._execute_module(module_name=self._task.action, module_args=self._task.args,
                                               task_vars=task_vars))
            return result
        module = _module()
        _, args = self.validate_argument_spec(argument_spec=module.ARGUMENT_SPEC)
        try:
            result.update(module.apply(args, self._task.check_mode))
        except module.RuntimeApiError as exc:
            result.update(failed=True, msg=str(exc))
        return result
