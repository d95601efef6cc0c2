"""docs/reference.md is generated from the JSON Schemas; the committed page must be the generated one."""

from __future__ import annotations

import subprocess
import sys

from lrelease import schema_doc
from lrelease.schema_doc import REFERENCE, ROOT, render, schema_keys


def test_the_committed_reference_is_the_generated_one():
    # Given the schemas as they are, When the page is generated
    # Then it is what docs/reference.md holds (run `python -m lrelease.schema_doc` after a schema change)
    assert REFERENCE.read_text(encoding="utf-8") == render()


def test_the_reference_lists_every_key_of_both_schemas():
    text = render()
    for name in ("lrelease", "fleet"):
        for key in schema_keys(name):
            assert f"| `{key.path}` |" in text, key.path


def test_check_mode_fails_on_a_stale_page_and_passes_on_a_fresh_one(tmp_path, monkeypatch):
    # Given a stale page
    page = tmp_path / "reference.md"
    page.write_text("# old\n")
    monkeypatch.setattr(schema_doc, "REFERENCE", page)
    monkeypatch.setattr(schema_doc, "ROOT", tmp_path)
    # Then --check says so, and writing it makes it pass
    assert schema_doc.main(["--check"]) == 1
    assert schema_doc.main([]) == 0 and page.read_text() == render()
    assert schema_doc.main(["--check"]) == 0


def test_the_module_runs_as_a_command():
    run = subprocess.run([sys.executable, "-m", "lrelease.schema_doc", "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_the_page_tells_how_to_hook_up_editors_and_links_nowhere_outside():
    text = render()
    assert "# yaml-language-server: $schema=lrelease/schemas/lrelease.schema.json" in text
    assert '"yaml.schemas"' in text and "JetBrains" in text
    assert "http://" not in text.split("## lrelease.yml")[0] and "https://" not in text.split("## lrelease.yml")[0]
