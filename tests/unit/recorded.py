"""Recorded vendor answers, written from the vendors' documented formats: one JSON file per
case under fixtures/apm/<vendor>/ with the HTTP ``status``, the ``body`` (a string, or JSON
written inline) and what the parser must ``expect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "apm"


def recorded(vendor: str) -> list[Path]:
    return sorted((FIXTURES / vendor).glob("*.json"))


def load_case(path: Path) -> tuple[dict[str, Any], str]:
    """The case, and its body as the vendor sent it (text)."""
    case = json.loads(path.read_text())
    return case, case["body"] if isinstance(case["body"], str) else json.dumps(case["body"])
