"""Inventory plugin ``lrelease_fleet`` (a directory on ANSIBLE_INVENTORY_PLUGINS; a package so it ships)."""
