"""The demo web app deployed to the sandbox fleet, its artifact builder and its node service script."""

from lrelease.sandbox.demoapp.build import (
    APP_SCRIPT,
    SERVICE_SCRIPT,
    Artifact,
    Behaviour,
    artifact_paths,
    build_artifact,
)

__all__ = ["APP_SCRIPT", "SERVICE_SCRIPT", "Artifact", "Behaviour", "artifact_paths", "build_artifact"]
