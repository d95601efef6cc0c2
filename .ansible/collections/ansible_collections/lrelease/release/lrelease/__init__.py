"""lrelease: node-by-node releases over Ansible, with health gates and automatic rollback."""

__version__ = "0.1.0"
