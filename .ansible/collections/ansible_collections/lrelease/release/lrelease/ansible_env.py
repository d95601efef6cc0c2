"""The environment the wrapper gives ansible-playbook: the user's Ansible configuration, merged
with what lrelease needs.

The user's ansible.cfg is found the way Ansible finds it (``ANSIBLE_CONFIG``, ``./ansible.cfg``
in the directory lrelease runs from, ``~/.ansible.cfg``, ``/etc/ansible/ansible.cfg``) and passed
as ``ANSIBLE_CONFIG``: ansible-playbook runs in the package's directory, where Ansible's own
search would otherwise find the checkout's ansible.cfg. With no user config, an empty one is used.

On top of it the wrapper sets, as environment variables (which Ansible ranks above ansible.cfg):

- needs, path lists: ours first, then the user's (environment, then ansible.cfg), so the
  user's collections, roles and plugins stay reachable: collections, roles, action/module/
  inventory/lookup plugin paths, and the enabled inventory plugins (the fleet plugin);
- needs, values: no colour in the output lrelease shows and keeps;
- preferences (set only when neither the user's environment nor ansible.cfg sets them):
  pipelining and SSH ControlPersist (about 4x faster), host-key checking on, forks 24, no cows.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from lrelease.ansible import plugin_paths

# ansible.cfg (section, key) of each variable, for merging and for "does the user set it".
_INI = {
    "ANSIBLE_COLLECTIONS_PATH": ("defaults", "collections_path"),
    "ANSIBLE_ROLES_PATH": ("defaults", "roles_path"),
    "ANSIBLE_ACTION_PLUGINS": ("defaults", "action_plugins"),
    "ANSIBLE_LIBRARY": ("defaults", "library"),
    "ANSIBLE_INVENTORY_PLUGINS": ("defaults", "inventory_plugins"),
    "ANSIBLE_LOOKUP_PLUGINS": ("defaults", "lookup_plugins"),
    "ANSIBLE_INVENTORY_ENABLED": ("inventory", "enable_plugins"),
    "ANSIBLE_PIPELINING": ("ssh_connection", "pipelining"),
    "ANSIBLE_SSH_ARGS": ("ssh_connection", "ssh_args"),
    "ANSIBLE_HOST_KEY_CHECKING": ("defaults", "host_key_checking"),
    "ANSIBLE_FORKS": ("defaults", "forks"),
    "ANSIBLE_NOCOWS": ("defaults", "nocows"),
}
_PATH_LISTS = {"ANSIBLE_COLLECTIONS_PATH", "ANSIBLE_ROLES_PATH", "ANSIBLE_ACTION_PLUGINS",
               "ANSIBLE_LIBRARY", "ANSIBLE_INVENTORY_PLUGINS", "ANSIBLE_LOOKUP_PLUGINS"}
# Ansible's default inventory plugins, kept after ours when the user names none.
_DEFAULT_INVENTORY = "host_list, script, auto, yaml, ini, toml"
NEEDS = {
    "ANSIBLE_INVENTORY_ENABLED": "lrelease.release.lrelease_fleet, lrelease_fleet",
    "ANSIBLE_FORCE_COLOR": "0",
}
PREFERENCES = {
    "ANSIBLE_PIPELINING": "True",
    "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=15",
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_FORKS": "24",
    "ANSIBLE_NOCOWS": "1",
}


def user_config(environ: Mapping[str, str], cwd: Path, home: Path) -> Path | None:
    """The ansible.cfg Ansible would read for a user running from ``cwd``, or None."""
    candidates = []
    if environ.get("ANSIBLE_CONFIG"):
        path = Path(os.path.expanduser(environ["ANSIBLE_CONFIG"]))
        if not path.is_absolute():
            path = cwd / path
        candidates.append(path / "ansible.cfg" if path.is_dir() else path)
    candidates += [cwd / "ansible.cfg", home / ".ansible.cfg", Path("/etc/ansible/ansible.cfg")]
    return next((p.resolve() for p in candidates if p.is_file()), None)


def _ini_values(cfg: Path | None) -> dict[str, str]:
    if cfg is None:
        return {}
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    try:
        parser.read(cfg, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return {}  # Ansible itself reports a broken config, with its own message
    values = {}
    for var, (section, key) in _INI.items():
        if parser.has_option(section, key):
            value = parser.get(section, key)
            if var in _PATH_LISTS:  # Ansible resolves relative paths against the config's directory
                value = ":".join(str((cfg.parent / os.path.expanduser(p.strip()))) for p in value.split(":") if p.strip())
            values[var] = value
    return values


def _join(ours: str, theirs: str | None, sep: str) -> str:
    return ours if not theirs else f"{ours}{sep}{theirs}"


def ansible_env(blank_config: Path, environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                home: Path | None = None) -> dict[str, str]:
    """Variables to add to ansible-playbook's environment (which also inherits ``environ``).

    ``blank_config`` is an empty file used as ``ANSIBLE_CONFIG`` when the user has none."""
    environ = os.environ if environ is None else environ
    cfg = user_config(environ, cwd or Path.cwd(), home or Path.home())
    ini = _ini_values(cfg)
    if cfg is None:
        blank_config.write_text("# lrelease: the user has no ansible.cfg\n")
    env = {"ANSIBLE_CONFIG": str(cfg or blank_config)}
    for var, ours in plugin_paths().items():
        env[var] = _join(ours, environ.get(var) or ini.get(var), ":")
    user_inventory = environ.get("ANSIBLE_INVENTORY_ENABLED") or ini.get("ANSIBLE_INVENTORY_ENABLED") or _DEFAULT_INVENTORY
    env["ANSIBLE_INVENTORY_ENABLED"] = _join(NEEDS["ANSIBLE_INVENTORY_ENABLED"], user_inventory, ", ")
    env["ANSIBLE_FORCE_COLOR"] = NEEDS["ANSIBLE_FORCE_COLOR"]
    for var, value in PREFERENCES.items():
        if var not in environ and var not in ini:
            env[var] = value
    return env
