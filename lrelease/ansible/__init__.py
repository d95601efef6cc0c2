"""Ansible plugins shipped in the package (action, modules, inventory, lookup); put on Ansible's plugin path
by the wrapper (``plugin_paths``) and by the project's ansible.cfg (for ansible-playbook,
molecule and AWX). The checkout is also the collection ``lrelease.release`` (galaxy.yml; its
plugins/<type> are symlinks to these directories), found through ``collections/`` at the root."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# roles/ and playbooks/ live at the repository root, next to the package.
REPO_ROOT = PACKAGE_DIR.parents[1]
# collections/ansible_collections/lrelease/release -> the repository root (the collection's FQCNs).
COLLECTIONS_DIR = REPO_ROOT / "collections"


def plugin_paths() -> dict[str, str]:
    """Environment variables that put the package's plugins and the repo's roles on Ansible's path."""
    return {
        "ANSIBLE_ACTION_PLUGINS": str(PACKAGE_DIR / "action"),
        "ANSIBLE_LIBRARY": str(PACKAGE_DIR / "modules"),
        "ANSIBLE_INVENTORY_PLUGINS": str(PACKAGE_DIR / "inventory"),
        "ANSIBLE_LOOKUP_PLUGINS": str(PACKAGE_DIR / "lookup"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        # This checkout first, then Ansible's default places (collections a user installed).
        "ANSIBLE_COLLECTIONS_PATH": ":".join([str(COLLECTIONS_DIR), "~/.ansible/collections",
                                              "/usr/share/ansible/collections"]),
    }
