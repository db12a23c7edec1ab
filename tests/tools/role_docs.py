#!/usr/bin/env python3
"""Generate the README's variable tables from each role's meta/argument_specs.yml.

    role_docs.py            rewrite the tables in README.md in place
    role_docs.py --check    exit 1 when a table is out of date

A table sits between `<!-- BEGIN ROLE VARS: <role> -->` and
`<!-- END ROLE VARS: <role> -->`; roles without such markers are skipped, and
tests/unit/test_role_specs.py checks that every role has them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- BEGIN ROLE VARS: (?P<role>[\w-]+) -->\n)(?P<body>.*?)(<!-- END ROLE VARS: (?P=role) -->)", re.S)


def load_options(role: str) -> dict:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"].get("options") or {}


def render_default(value: object) -> str:
    if value is None:
        return ""
    text = json.dumps(value) if not isinstance(value, str) else value
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text}`" if text != "" else '`""`'


def table(role: str) -> str:
    rows = ["| Variable | Type | Default | Description |", "|---|---|---|---|"]
    for name, spec in load_options(role).items():
        kind = spec.get("type", "str")
        if kind == "list" and spec.get("elements"):
            kind = f"list of {spec['elements']}"
        if spec.get("choices"):
            kind += " (" + ", ".join(str(c) for c in spec["choices"]) + ")"
        description = " ".join(spec["description"]) if isinstance(spec.get("description"), list) else spec.get("description", "")
        default = "required" if spec.get("required") else render_default(spec.get("default"))
        description = description.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {default} | {description} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    def replace(match: re.Match) -> str:
        if not (ROOT / "roles" / match.group("role") / "meta" / "argument_specs.yml").exists():
            return match.group(0)  # a section written ahead of its role
        return match.group(1) + table(match.group("role")) + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    current = README.read_text()
    wanted = render(current)
    if args.check:
        if current != wanted:
            print("README.md variable tables are out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
