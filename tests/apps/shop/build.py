"""Pack a shop build the way a build tool does: shop-<version>.tar.gz, every member under
shop-<version>/, next to shop-<version>.tar.gz.sha256 ("<hex>  <file name>").

A build is parametrised by how it misbehaves: ``error_rate`` (share of GET / answered 500) and
``extra_latency_ms`` (added to every GET /); both are written to shop.json in the build."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {"shop.py": 0o755, "bin/shop-ctl": 0o755, "bin/migrate": 0o755}
MTIME = 1_704_067_200  # fixed, so the same build always gives the same bytes


@dataclass(frozen=True)
class Build:
    version: str
    path: Path
    sha256: str


def build(out_dir: Path, version: str, *, error_rate: float = 0.0, extra_latency_ms: float = 0.0) -> Build:
    top = f"shop-{version}"
    generated = {"VERSION": f"{version}\n",
                 "shop.json": json.dumps({"error_rate": error_rate, "extra_latency_ms": extra_latency_ms}) + "\n"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for directory in (top, f"{top}/bin"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, MTIME
            tar.addfile(info)
        members = {name: ((HERE / name).read_bytes(), mode) for name, mode in FILES.items()}
        members.update({name: (text.encode(), 0o644) for name, text in generated.items()})
        for name, (data, mode) in sorted(members.items()):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), mode, MTIME
            tar.addfile(info, io.BytesIO(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{top}.tar.gz"
    path.write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    return Build(version, path, digest)
