"""The Vulkan tier on real Mesa lavapipe.

The instance was converged with gpu_backend_accept_software_devices on, so the
recorded tier is vulkan on llvmpipe. The tests that change a gpu_backend input
rerun only gpu_backend (molecule/vulkan/gpu_backend.yml) with extra vars against
the instance, read what it recorded, and restore the converged fact afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
FACT = "/etc/ansible/facts.d/gpu_backend.fact"


def run_gpu_backend(host, extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               # One line per message (the YAML format wraps long ones).
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", json.dumps(extra or {}), str(HERE / "gpu_backend.yml")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    result.stdout += result.stderr
    return result


def fact(host) -> dict:
    return json.loads(host.file(FACT).content_string)


@pytest.fixture(scope="module")
def restore(host):
    """Put the converged decision back once the tests that change it are done.
    (Each rerun costs ~10-20 s, so it runs once per module; the tests that read
    the converged state come first in this file.)"""
    yield
    result = run_gpu_backend(host)
    assert result.returncode == 0, result.stdout
    assert fact(host)["tier"] == "vulkan"


@pytest.mark.parametrize("package", ["mesa-vulkan-drivers", "libvulkan1", "vulkan-tools"])
def test_vulkan_stack_is_installed(host, package):
    assert host.package(package).is_installed


@pytest.mark.parametrize("group", ["render", "video"])
def test_gpu_groups_exist_as_system_groups(host, group):
    assert host.group(group).exists
    assert host.group(group).gid < 1000


@pytest.mark.parametrize("group", ["render", "video"])
def test_user_is_in_gpu_group(host, group):
    assert group in host.user("alice").groups


def test_vulkaninfo_lists_lavapipe(host):
    out = host.check_output("vulkaninfo --summary 2>/dev/null")
    assert "PHYSICAL_DEVICE_TYPE_CPU" in out and "llvmpipe" in out


def test_fact_file_is_root_owned_json(host):
    f = host.file(FACT)
    assert f.user == "root" and f.group == "root" and f.mode == 0o644
    assert fact(host)["schema"] == 1


def test_recorded_tier_is_vulkan_on_the_software_device(host):
    recorded = fact(host)
    instance = re.search(r"Vulkan Instance Version: (\S+)", host.check_output("vulkaninfo --summary 2>/dev/null"))
    assert recorded["tier"] == "vulkan"
    assert recorded["forced"] is False
    assert recorded["order"] == ["rocm", "vulkan"]
    assert recorded["device"]["name"].startswith("llvmpipe")
    assert recorded["device"]["software"] is True
    assert recorded["available"] == ["vulkan"]
    assert recorded["versions"]["vulkan"] == instance.group(1)


def test_rocm_is_rejected_as_not_installed(host):
    assert fact(host)["rejected"] == {"rocm": "rocminfo not installed"}


def test_local_fact_is_visible_to_later_roles(host):
    """The role re-reads local facts: a later task of the same play, which gathered no facts, sees the tier."""
    result = run_gpu_backend(host)
    assert result.returncode == 0, result.stdout
    assert "Tier seen by later roles: vulkan" in result.stdout


def test_without_the_switch_vulkan_is_rejected_as_software(host, restore):
    result = run_gpu_backend(host, {"gpu_backend_accept_software_devices": False, "gpu_backend_allow_cpu": True})
    assert result.returncode == 0, result.stdout
    recorded = fact(host)
    assert recorded["tier"] == "cpu" and recorded["device"] is None
    assert recorded["available"] == []
    assert recorded["rejected"]["vulkan"].startswith("vulkaninfo lists no GPU device, only software devices: llvmpipe")
    assert "Rejected vulkan: vulkaninfo lists no GPU device" in result.stdout


def test_without_the_switch_and_without_cpu_the_role_fails_and_records_nothing(host, restore):
    before = host.file(FACT).content_string
    result = run_gpu_backend(host, {"gpu_backend_accept_software_devices": False})
    assert result.returncode != 0
    assert "No GPU runtime tier passed its probe" in result.stdout
    assert "vulkan: vulkaninfo lists no GPU device, only software devices" in result.stdout
    assert host.file(FACT).content_string == before


def test_forcing_a_rejected_tier_is_refused(host, restore):
    result = run_gpu_backend(host, {"gpu_backend_accept_software_devices": False, "gpu_backend_force_tier": "vulkan"})
    assert result.returncode != 0
    assert "gpu_backend_force_tier is vulkan, but its probe failed" in result.stdout


def test_forcing_unchecked_records_the_tier_with_a_warning(host, restore):
    result = run_gpu_backend(host, {"gpu_backend_accept_software_devices": False, "gpu_backend_force_tier": "vulkan",
                                    "gpu_backend_force_unchecked": True})
    assert result.returncode == 0, result.stdout
    recorded = fact(host)
    assert recorded["tier"] == "vulkan" and recorded["forced"] is True and recorded["device"] is None
    assert "vulkan" in recorded["rejected"]
    assert "WARNING: Tier vulkan is forced although its probe failed" in result.stdout


def test_a_hung_probe_is_killed_and_rejected(host, restore):
    """A rocminfo that never answers costs the timeout, not the play."""
    host.run_expect([0], "printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/local/bin/rocminfo && chmod 0755 /usr/local/bin/rocminfo")
    try:
        result = run_gpu_backend(host, {"gpu_backend_probe_timeout": 3})
    finally:
        host.run("rm -f /usr/local/bin/rocminfo")
    assert result.returncode == 0, result.stdout
    assert fact(host)["rejected"]["rocm"] == "rocminfo did not answer within 3 s (timed out)"
    assert fact(host)["tier"] == "vulkan"
