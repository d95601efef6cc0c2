"""Pack the demo app into a release artifact: ``demoapp-<build>.tar.gz`` plus its ``.sha256``."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import math
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from lrelease.errors import ConfigError

APP_SCRIPT = Path(__file__).with_name("app.py")
SERVICE_SCRIPT = Path(__file__).with_name("service.sh")

BUILD_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MAX_PAD_MB = 256
# Fixed member metadata so the same inputs always give the same bytes (2024-01-01T00:00:00Z).
_MTIME = 1_704_067_200
_WHERE = "demo build"


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(_WHERE, key, expected)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Behaviour:
    """How a build misbehaves on purpose; written to ``behaviour.json`` and read by app.py."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    health_fail: bool = False
    start_fail: bool = False

    def __post_init__(self) -> None:
        _check(_is_number(self.error_rate) and 0 <= self.error_rate <= 1, "error_rate", "a number from 0 to 1")
        _check(_is_number(self.latency_ms) and self.latency_ms >= 0, "latency_ms", "a number >= 0")
        _check(isinstance(self.health_fail, bool), "health_fail", "true or false")
        _check(isinstance(self.start_fail, bool), "start_fail", "true or false")


@dataclass(frozen=True)
class Artifact:
    """A built artifact and its checksum file."""

    build: str
    path: Path
    sha256: str
    sha256_path: Path


def artifact_paths(build: str, out_dir: Path) -> tuple[Path, Path]:
    """Where the tarball and its checksum file for ``build`` live under ``out_dir``."""
    ok = isinstance(build, str) and bool(BUILD_PATTERN.match(build))
    _check(ok, "build", f"a name matching {BUILD_PATTERN.pattern}")
    tarball = Path(out_dir) / f"demoapp-{build}.tar.gz"
    return tarball, tarball.with_name(tarball.name + ".sha256")


def build_artifact(build: str, out_dir: Path, behaviour: Behaviour = Behaviour(), *, pad_mb: int = 0) -> Artifact:
    """Write the artifact for ``build``; byte-for-byte reproducible when ``pad_mb`` is 0.

    ``pad_mb`` adds a ``pad.bin`` of that many MiB of random bytes (for size benchmarks).
    """
    tarball, sha_path = artifact_paths(build, out_dir)
    _check(
        isinstance(pad_mb, int) and not isinstance(pad_mb, bool) and 0 <= pad_mb <= MAX_PAD_MB,
        "pad_mb",
        f"an integer from 0 to {MAX_PAD_MB}",
    )
    members = {
        "VERSION": (f"{build}\n".encode(), 0o644),
        "app.py": (APP_SCRIPT.read_bytes(), 0o755),
        "behaviour.json": (json.dumps(dataclasses.asdict(behaviour), indent=2, sort_keys=True).encode() + b"\n", 0o644),
    }
    if pad_mb:
        members["pad.bin"] = (os.urandom(pad_mb * 1024 * 1024), 0o644)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_name(f".{tarball.name}.partial")
    with partial.open("wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for name in sorted(members):
                    data, mode = members[name]
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), mode, _MTIME
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    os.replace(partial, tarball)
    sha_path.write_text(f"{digest}  {tarball.name}\n", encoding="ascii")
    return Artifact(build=build, path=tarball, sha256=digest, sha256_path=sha_path)
