"""Ansible inventory plugin ``lrelease_fleet``: the lrelease fleet file as a live inventory.

For AWX inventory sources and plain ``ansible-playbook``; gives the same groups, host order
and vars as the inventories ``lrelease inventory generate`` writes, because both come from
``lrelease.fleet.Fleet.layout``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin


def _load_fleet():
    """lrelease.fleet's loader and error, imported only when a fleet file is parsed: Ansible loads
    every enabled inventory plugin at each start, and lrelease.fleet with its schema check
    (jsonschema) takes ~0.1 s to import, which a run with another kind of inventory would pay for
    nothing."""
    try:
        from lrelease.errors import LreleaseError
        from lrelease.fleet import load_fleet
    except ImportError:  # run from a project checkout where the package is not installed (AWX)
        sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
        from lrelease.errors import LreleaseError
        from lrelease.fleet import load_fleet
    return load_fleet, LreleaseError

DOCUMENTATION = r"""
    name: lrelease_fleet
    short_description: Hosts and groups from an lrelease fleet file
    description:
      - Reads the fleet file of an lrelease project (nodes with environment, address, tags and vars).
      - One group per environment, canary-tagged hosts first and then the rest in file order, so
        C(serial) starts with the canary; one group C(tag_<tag>) per tag.
      - C(ansible_host) is the node's address; host vars are C(defaults.vars) overridden by the node's C(vars).
      - The configuration file is YAML whose C(plugin) key is C(lrelease.release.lrelease_fleet)
        (the collection's name) or C(lrelease_fleet) (the plugin on a plugin path).
    options:
      plugin:
        description: Marks the file as a source for this plugin.
        required: true
        choices: ['lrelease.release.lrelease_fleet', 'lrelease_fleet']
        type: str
      fleet:
        description: The fleet file; a relative path starts at the directory of this configuration file.
        required: true
        type: str
      environment:
        description: Only the nodes of this environment; all environments when not set.
        required: false
        type: str
"""

EXAMPLES = r"""
# inventories/production.lrelease_fleet.yml
plugin: lrelease.release.lrelease_fleet
fleet: fleet.yml
environment: production
"""

_PLUGIN_LINE = re.compile(r"^plugin:\s*['\"]?(lrelease\.release\.)?lrelease_fleet['\"]?\s*(#.*)?$", re.MULTILINE)


class InventoryModule(BaseInventoryPlugin):
    NAME = "lrelease_fleet"
    # The fleet file is written by the project like a YAML inventory is, so templates in its
    # vars are trusted the same way.
    trusted_by_default = True

    def verify_file(self, path: str) -> bool:
        """Only YAML files that say ``plugin: lrelease.release.lrelease_fleet`` or ``lrelease_fleet`` (so others go to the next plugin)."""
        if not super().verify_file(path) or not path.endswith((".yml", ".yaml")):
            return False
        try:
            with open(path, encoding="utf-8") as fh:
                return bool(_PLUGIN_LINE.search(fh.read(65536)))
        except (OSError, UnicodeDecodeError):
            return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet_path = Path(str(self.get_option("fleet"))).expanduser()
        if not fleet_path.is_absolute():
            fleet_path = Path(path).resolve().parent / fleet_path
        env = self.get_option("environment")
        load_fleet, LreleaseError = _load_fleet()
        try:
            layout = load_fleet(fleet_path).layout(str(env) if env else None)
        except LreleaseError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from None
        for group, hosts in layout.groups:
            self.inventory.add_group(group)
            for host in hosts:
                self.inventory.add_host(host, group=group)
        for host, host_vars in layout.hostvars:
            for name, value in host_vars.items():
                self.inventory.set_variable(host, name, value)
