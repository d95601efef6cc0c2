"""The ``lrelease`` command. The only layer that prints or chooses exit codes."""

from lrelease.cli.main import main

__all__ = ["main"]
