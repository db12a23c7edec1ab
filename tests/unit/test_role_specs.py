"""Every role's public inputs: defaults, argument specs and README agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "tools"))
import role_docs  # noqa: E402

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def defaults(role: str) -> dict:
    path = ROOT / "roles" / role / "defaults" / "main.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_specs_name_the_same_inputs(role):
    assert set(defaults(role)) == set(role_docs.load_options(role))


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_role_defaults(role):
    for name, spec in role_docs.load_options(role).items():
        if "default" in spec:
            assert spec["default"] == defaults(role)[name], name


@pytest.mark.parametrize("role", ROLES)
def test_inputs_are_prefixed_typed_and_described(role):
    for name, spec in role_docs.load_options(role).items():
        assert name.startswith(role + "_"), name
        assert spec.get("type"), name
        assert spec.get("description"), name


@pytest.mark.parametrize("role", ROLES)
def test_readme_documents_the_role(role):
    text = role_docs.README.read_text()
    assert f"<!-- BEGIN ROLE VARS: {role} -->" in text


def test_readme_tables_are_current():
    assert role_docs.render(role_docs.README.read_text()) == role_docs.README.read_text(), "run `make docs`"


@pytest.mark.parametrize("role", ROLES)
def test_templates_start_with_ansible_managed(role):
    for template in (ROOT / "roles" / role / "templates").rglob("*.j2"):
        head = template.read_text().splitlines()[:3]
        assert any(re.search(r"ansible_managed", line) for line in head), template
