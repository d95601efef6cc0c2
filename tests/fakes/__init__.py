"""Test-only stand-ins for services that cannot run here (never shipped in the lrelease package)."""
