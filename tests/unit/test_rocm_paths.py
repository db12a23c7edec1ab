"""The rocm role's derived paths (roles/rocm/vars/main.yml), rendered by Ansible's own
templating: AMD's repository layout, the .0 rule, the pinned host, the rocBLAS source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = Path(__file__).resolve().parents[2] / "roles" / "rocm"
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
VARS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
DEBIAN12 = yaml.safe_load((ROLE / "vars" / "Debian-12.yml").read_text())


def trusted(value):
    """What Ansible does for variables read from a role's files: their templates may be rendered."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def render(expression: str, **overrides) -> str:
    variables = {**DEFAULTS, **VARS, **DEBIAN12, "ansible_facts": {"kernel": "6.1.0-28-amd64"}, **overrides}
    return Templar(loader=DataLoader(), variables=trusted(variables)).template(trust_as_template(expression))


@pytest.mark.parametrize(
    ("version", "rocm", "amdgpu", "number", "prefix"),
    [
        ("6.4.2", "rocm/apt/6.4.2", "amdgpu/6.4.2/ubuntu", "60402", "/opt/rocm-6.4.2"),
        # AMD publishes a .0 release without the suffix, but installs it under its full number.
        ("6.4.0", "rocm/apt/6.4", "amdgpu/6.4/ubuntu", "60400", "/opt/rocm-6.4.0"),
        ("6.3.10", "rocm/apt/6.3.10", "amdgpu/6.3.10/ubuntu", "60310", "/opt/rocm-6.3.10"),
    ],
)
def test_release_paths(version, rocm, amdgpu, number, prefix):
    assert render("{{ _rocm_apt_url }}", rocm_version=version) == f"https://repo.radeon.com/{rocm}"
    assert render("{{ _rocm_amdgpu_url }}", rocm_version=version) == f"https://repo.radeon.com/{amdgpu}"
    assert render("{{ _rocm_version_number }}", rocm_version=version) == number
    assert render("{{ _rocm_path }}", rocm_version=version) == prefix


@pytest.mark.parametrize(
    ("base", "host", "apt"),
    [
        ("https://repo.radeon.com", "repo.radeon.com", "https://repo.radeon.com/rocm/apt/6.4.2"),
        ("http://172.17.0.1:8765/repo.radeon.com/", "172.17.0.1", "http://172.17.0.1:8765/repo.radeon.com/rocm/apt/6.4.2"),
        ("https://mirror.example.org/amd", "mirror.example.org", "https://mirror.example.org/amd/rocm/apt/6.4.2"),
    ],
)
def test_a_mirror_is_pinned_by_its_host(base, host, apt):
    assert render("{{ _rocm_repo_host }}", rocm_repo_base_url=base) == host
    assert render("{{ _rocm_apt_url }}", rocm_repo_base_url=base) == apt
    assert render("{{ rocm_apt_key_url }}", rocm_repo_base_url="https://m.example") == "https://m.example/rocm/rocm.gpg.key"


def test_debian_12_uses_jammy_and_its_packages():
    assert render("{{ _rocm_suite }}") == "jammy"
    assert render("{{ _rocm_gfx906_package }}") == "rocblas=4.3.0.60303-74~22.04"
    assert render("{{ _rocm_gfx906_repo_url }}") == "https://repo.radeon.com/rocm/apt/6.3.3"
    assert render("{{ _rocm_gfx906_source_dir }}").endswith("/opt/rocm-6.3.3/lib/rocblas/library")


def test_the_suite_can_be_forced():
    assert render("{{ _rocm_suite }}", rocm_apt_suite="noble") == "noble"
    assert render("{{ _rocm_gfx906_package }}", rocm_apt_suite="noble") == "rocblas=4.3.0.60303-74~24.04"


# `dkms status -m amdgpu -v <version> -k <kernel>` as dkms 2.8 (Ubuntu 22.04) and 3.x (Debian 12, Ubuntu 24.04)
# (dkms-project/dkms, do_status): 2.8 separates module and version with a comma, 3.x with a slash.
@pytest.mark.parametrize(
    ("status", "missing"),
    [
        ("amdgpu, 6.12.12-2187269.22.04, 6.1.0-28-amd64, x86_64: installed", False),
        ("amdgpu, 6.12.12-2187269.22.04, 6.1.0-28-amd64, x86_64: installed (original_module exists)", False),
        ("amdgpu/6.12.12-2187269.22.04, 6.1.0-28-amd64, x86_64: installed", False),
        ("amdgpu/6.12.12-2187269.22.04, 6.1.0-28-amd64, x86_64: installed (WARNING! Diff between built and installed "
         "module!)", False),
        ("amdgpu, 6.12.12-2187269.22.04, 6.1.0-28-amd64, x86_64: built", True),
        ("amdgpu, 6.12.12-2187269.22.04: added", True),
        ("amdgpu/6.12.12-2187269.22.04: added", True),
        ("amdgpu, 6.12.12-2187269.22.04, 6.1.0-27-amd64, x86_64: installed", True),
        ("", True),
    ],
    ids=["2.8-installed", "2.8-original", "3.x-installed", "3.x-diff-warning", "2.8-built-only", "2.8-added",
         "3.x-added", "2.8-other-kernel", "nothing"],
)
def test_dkms_status_of_either_dkms_says_whether_amdgpu_is_missing(status, missing):
    files = {"stdout": "/usr/src/amdgpu-6.12.12-2187269.22.04\n/usr/src/amdgpu-6.12.12-2187269.22.04/Makefile\n"}
    got = render("{{ _rocm_dkms_missing }}", __rocm_dkms_files=files, __rocm_dkms_status={"stdout": status + "\n"})
    assert str(got) == str(missing)
