# Copyright lrelease contributors
# Apache-2.0
"""lrelease_settings: one task that checks several roles' settings on a host (their argument
specs, then their rules), in place of an argument-spec task and a rules task per role.

A task costs Ansible a worker process per host whether it does much or nothing, so deploy.yml
checks the stage, switch and cleanup roles' settings with one task per host instead of six."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from ansible.errors import AnsibleError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

# DOCUMENTATION, EXAMPLES and RETURN: lrelease/ansible/modules/lrelease_settings.py (where ansible-doc looks).

ARGUMENT_SPEC = {
    "roles": {"type": "list", "elements": "str", "required": True},
    "entry_point": {"type": "str", "default": "main"},
    "rules": {"type": "list", "elements": "str", "default": []},
}
_OWN_COLLECTION = "lrelease.release"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def role_argument_spec(role: str, entry_point: str = "main") -> dict:
    """The options of `role`'s entry point in its meta/argument_specs.yml. `role` is a role of a
    collection (FQCN, or a bare name of this collection), found where Ansible's collection loader
    found the collection: a checkout, an installed collection, or a wheel's copy alike."""
    namespace, name, short = role.split(".") if role.count(".") == 2 else (*_OWN_COLLECTION.split("."), role)
    try:
        package = importlib.import_module(f"ansible_collections.{namespace}.{name}")
    except ImportError as exc:
        raise AnsibleError(f"role {role}: collection {namespace}.{name} is not installed") from exc
    for base in getattr(package, "__path__", []):
        path = Path(base) / "roles" / short / "meta" / "argument_specs.yml"
        if path.is_file():
            specs = (yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER) or {}).get("argument_specs") or {}
            if entry_point not in specs:
                raise AnsibleError(f"role {role} has no argument spec for entry point {entry_point!r} ({path})")
            return specs[entry_point].get("options") or {}
    raise AnsibleError(f"role {role}: no meta/argument_specs.yml under the collection {namespace}.{name}")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        problems: list[str] = []
        for role in args["roles"]:
            spec = role_argument_spec(role, args["entry_point"])
            # As ansible.builtin.validate_argument_spec reads a role's arguments: the variables of
            # the spec's names (the role's defaults, when the play imports the role), templated.
            given = self._templar.template({key: task_vars[key] for key in spec if key in task_vars})
            errors = ArgumentSpecValidator(spec).validate(given, validate_role_argument_spec=True).error_messages
            problems.extend(f"role {role.rsplit('.', 1)[-1]}: {error}" for error in errors)
        if not problems:
            # The rules span fields and assume the types above: read only once those hold. Each
            # names a variable holding a list of messages, '' for a rule that holds.
            for name in args["rules"]:
                if name not in task_vars:
                    raise AnsibleError(f"lrelease_settings: rules variable {name!r} is not defined")
                messages = self._templar.template(task_vars[name])
                if not isinstance(messages, list):
                    raise AnsibleError(f"lrelease_settings: rules variable {name!r} is not a list of messages")
                problems.extend(str(m).strip() for m in messages if m and str(m).strip())
        result["changed"] = False
        if problems:
            result.update(failed=True, msg="; ".join(problems), problems=problems)
        else:
            result["msg"] = f"the settings of {', '.join(args['roles'])} are valid"
        return result
