"""Every module and filter plugin of the project documents itself in YAML that
parses (ansible-doc and ansible-lint read it; a broken one is silently skipped)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = sorted(p for pattern in ("collections/ansible_collections/*/*/plugins/*/*.py", "roles/*/library/*.py",
                                   "roles/*/filter_plugins/*.py") for p in ROOT.glob(pattern)
                 if p.name != "__init__.py")


def docs(path: Path) -> dict:
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
            found[node.targets[0].id] = node.value.value
    return found


@pytest.mark.parametrize("path", PLUGINS, ids=[str(p.relative_to(ROOT)) for p in PLUGINS])
def test_documentation_parses(path):
    found = docs(path)
    assert "DOCUMENTATION" in found, "no DOCUMENTATION"
    for name, text in found.items():
        assert yaml.safe_load(text) is not None, name
