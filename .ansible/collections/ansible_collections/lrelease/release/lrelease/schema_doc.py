"""docs/reference.md, generated from the JSON Schemas: ``python -m lrelease.schema_doc`` writes it,
``--check`` exits 1 when the committed page differs (tests/unit/test_schema_doc.py does the same).

:func:`schema_keys` walks a schema into every key a file may hold, as dotted paths in which
``<name>`` stands for a name the user chooses (an environment, a node) and ``[]`` for the items
of a list; the reference page and the tests (the example files hold every key) share it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrelease.schema_check import load_schema, refused_key

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
NAME = "<name>"


@dataclass(frozen=True)
class SchemaKey:
    path: str  # environments.<name>.gate.provider.url
    node: Mapping[str, Any]  # its schema, $ref resolved
    only_with: str = ""  # e.g. "kind: prometheus" (a provider's own settings)


def schema_keys(name: str) -> list[SchemaKey]:
    """Every key the schema ``name`` accepts, in schema order (each path and context once)."""
    root = load_schema(name)
    seen: dict[tuple[str, str], SchemaKey] = {}
    for key in _walk(root, root, "", ""):
        seen.setdefault((key.path, key.only_with), key)
    return list(seen.values())


def _resolve(root: Mapping, node: Mapping) -> Mapping:
    if "$ref" not in node:
        return node
    target: Any = root
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(root, target), **{k: v for k, v in node.items() if k != "$ref"}}


def _walk(root: Mapping, node: Mapping, path: str, only_with: str) -> Iterator[SchemaKey]:
    node = _resolve(root, node)
    for prop, sub in node.get("properties", {}).items():
        sub = _resolve(root, sub)
        if refused_key(sub):
            continue  # a key named only to refuse it (ansible_host under vars, a hook's on)
        if only_with and "const" in sub:
            continue  # the discriminator itself (provider.kind), listed once without a context
        here = f"{path}.{prop}" if path else prop
        yield SchemaKey(here, sub, only_with)
        yield from _walk(root, sub, here, only_with)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and "properties" in _resolve(root, extra):
        here = f"{path}.{NAME}"
        yield SchemaKey(here, _resolve(root, extra), only_with)
        yield from _walk(root, extra, here, only_with)
    items = node.get("items")
    if isinstance(items, Mapping) and "properties" in _resolve(root, items):
        yield from _walk(root, items, path + "[]", only_with)
    for branch in ("then", "else"):
        if isinstance(node.get(branch), Mapping):
            yield from _walk(root, node[branch], path, only_with)
    for part in node.get("allOf", []):
        kind = part.get("if", {}).get("properties", {}).get("kind", {}).get("const")
        yield from _walk(root, part, path, f"kind: {kind}" if kind else only_with)


# -- the page -----------------------------------------------------------------------------
INTRO = """\
# Reference: every key of lrelease.yml and the fleet file

Generated from the JSON Schemas `lrelease/schemas/lrelease.schema.json` and
`lrelease/schemas/fleet.schema.json` by `python -m lrelease.schema_doc`; do not edit by hand (a
test compares this page with the schemas). The commented examples are `lrelease.example.yml` and
`inventories/fleet.example.yml`; every key below appears in them.

`lrelease` checks a file against its schema first and reports every mistake at once, one line
each: the file, the key (`environments.production.waves[2]`) and what was expected (the
"expected" column below), then exits 2 having changed nothing. A key that looks like a secret
(`api_key`, `token`, `password`...) is refused before that, alone and never echoed. The checks a
schema cannot express (a URL that parses, a port in range, two nodes at one address) follow once
the structure is right, and stop at the first mistake.

## Editors

The schemas are plain JSON Schema (draft 2020-12), so editors validate and complete these files
as you type. They keep to the keywords that editors implementing only draft-07 (VS Code's YAML
extension, for one) read the same way, but for `prefixItems` (the first entry of an argv list
`service.command` is checked as an argument there, not as a path); `lrelease` itself checks that
on load. A hook's `run_on` was once `on`, a key YAML 1.1 reads as `true`: editors flag an `on:`
left in a hook as renamed, and `lrelease` refuses it.

- VS Code with the YAML extension (Red Hat): put the schema on the file's first line, with a path
  relative to the file,

  ```yaml
  # yaml-language-server: $schema=lrelease/schemas/lrelease.schema.json
  ```

  (`../lrelease/schemas/fleet.schema.json` for `inventories/fleet.yml`), or map file names to
  schemas once in `.vscode/settings.json`:

  ```json
  {
    "yaml.schemas": {
      "lrelease/schemas/lrelease.schema.json": ["lrelease.yml", "lrelease.example.yml"],
      "lrelease/schemas/fleet.schema.json": ["inventories/fleet*.yml"]
    }
  }
  ```

- JetBrains IDEs: Settings, Languages & Frameworks, Schemas and DTDs, JSON Schema Mappings: add
  each schema file (JSON Schema version 2020-12) with the file patterns above. Recent versions
  also read an inline comment of their own on the file's first line, `# $schema: <path>`.

Outside this repository, point at the schema files inside the installed package
(`python -c "import lrelease.schema_check as s; print(s.SCHEMA_DIR)"`).
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _types(node: Mapping) -> str:
    kinds = node.get("type")
    if kinds is None:
        if "enum" in node:
            return " | ".join(f"`{v}`" for v in node["enum"])
        if "const" in node:
            return f"`{node['const']}`"
        return "any"
    words = {"object": "mapping", "array": "list", "null": "null"}
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(words.get(k, k) for k in kinds)


def _default(node: Mapping) -> str:
    if "default" not in node:
        return "(required)" if node.get("_required") else "—"
    return f"`{json.dumps(node['default'], ensure_ascii=False)}`"


def _table(name: str) -> list[str]:
    root = load_schema(name)
    required = _required_paths(root)
    lines = ["| key | type | default | what it does | expected |", "|---|---|---|---|---|"]
    for key in schema_keys(name):
        node = dict(key.node)
        node["_required"] = key.path in required
        what = key.node.get("description", "")
        if key.only_with:
            what = f"(with `{key.only_with}`) {what}"
        lines.append(f"| `{_cell(key.path)}` | {_cell(_types(node))} | {_cell(_default(node))} | {_cell(what)} "
                     f"| {_cell(key.node.get('errorMessage', ''))} |")
    return lines


def _required_paths(root: Mapping) -> set[str]:
    out: set[str] = set()

    def visit(node: Mapping, path: str) -> None:
        node = _resolve(root, node)
        for req in node.get("required", []):
            out.add(f"{path}.{req}" if path else req)
        for prop, sub in node.get("properties", {}).items():
            visit(sub, f"{path}.{prop}" if path else prop)
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping):
            visit(extra, f"{path}.{NAME}")

    visit(root, "")
    return out


def render() -> str:
    """The text of docs/reference.md."""
    parts = [INTRO]
    for name, title, example in (("lrelease", "lrelease.yml", "lrelease.example.yml"),
                                 ("fleet", "The fleet file", "inventories/fleet.example.yml")):
        schema = load_schema(name)
        parts.append(f"## {title}\n\nSchema: `lrelease/schemas/{name}.schema.json`; commented example: `{example}`. "
                     "`<name>` is a name you choose; `[]` marks the entries of a list.\n")
        parts.append("\n".join(_table(name)) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrelease.schema_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/reference.md is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if current != text:
            print(f"{REFERENCE.relative_to(ROOT)} is out of date: run python -m lrelease.schema_doc", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
