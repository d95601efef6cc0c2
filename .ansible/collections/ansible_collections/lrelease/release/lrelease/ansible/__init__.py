"""Ansible plugins shipped in the package (action, modules, inventory, lookup); put on Ansible's plugin path
by the wrapper (``plugin_paths``) and by the project's ansible.cfg (for ansible-playbook,
molecule and AWX). The checkout is also the collection ``lrelease.release`` (galaxy.yml; its
plugins/<type> are symlinks to these directories), found through ``collections/`` at the root."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT = PACKAGE_DIR.parents[1]
# A non-editable install carries a copy of the collection (setup.py builds it into the wheel).
_INSTALLED = PACKAGE_DIR.parent / "_content"
IN_CHECKOUT = (_CHECKOUT / "galaxy.yml").is_file() and (_CHECKOUT / "playbooks").is_dir()
if IN_CHECKOUT:
    # roles/ and playbooks/ live at the repository root, next to the package;
    # collections/ansible_collections/lrelease/release -> the repository root (the collection's FQCNs).
    REPO_ROOT = _CHECKOUT
    COLLECTIONS_DIR = REPO_ROOT / "collections"
    PLUGINS_DIR = PACKAGE_DIR
else:
    REPO_ROOT = _INSTALLED / "ansible_collections" / "lrelease" / "release"
    COLLECTIONS_DIR = _INSTALLED
    PLUGINS_DIR = REPO_ROOT / "plugins"


def plugin_paths() -> dict[str, str]:
    """Environment variables that put the package's plugins and the repo's roles on Ansible's path."""
    return {
        "ANSIBLE_ACTION_PLUGINS": str(PLUGINS_DIR / "action"),
        "ANSIBLE_LIBRARY": str(PLUGINS_DIR / "modules"),
        "ANSIBLE_INVENTORY_PLUGINS": str(PLUGINS_DIR / "inventory"),
        "ANSIBLE_LOOKUP_PLUGINS": str(PLUGINS_DIR / "lookup"),
        "ANSIBLE_ROLES_PATH": str(REPO_ROOT / "roles"),
        # This checkout (or the installed copy) first, then Ansible's default places (collections a user installed).
        "ANSIBLE_COLLECTIONS_PATH": ":".join([str(COLLECTIONS_DIR), "~/.ansible/collections",
                                              "/usr/share/ansible/collections"]),
    }
