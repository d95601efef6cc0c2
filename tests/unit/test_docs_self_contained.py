"""The repository's docs are self-contained: no Markdown link in the README or docs/ leaves the
repository, and every relative link names a file that is there (a clone has what they point at)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
# [text](target) and <scheme://...> autolinks; code spans are left out first (they show commands
# and URLs as text, not links).
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)|<((?:https?|ftp)://[^>]+)>")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def links(page: Path) -> list[str]:
    text = CODE.sub("", page.read_text(encoding="utf-8"))
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository_and_every_link_resolves(page):
    outside = [t for t in links(page) if re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]
    assert outside == [], f"{page.relative_to(ROOT)} links outside the repository"
    missing = [t for t in links(page) if not t.startswith("#")
               and not (page.parent / t.split("#", 1)[0]).exists()]
    assert missing == [], f"{page.relative_to(ROOT)} links to files that are not in the repository"


def test_the_check_finds_an_outside_link_and_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See [the product](https://example.com/x), [here](missing.md) and `http://not-a-link`.\n")
    assert links(page) == ["https://example.com/x", "missing.md"]
