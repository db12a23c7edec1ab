"""The OpenCL tier on real PoCL, beside Mesa's OpenCL.

The instance was converged with gpu_backend_accept_software_devices on, so the
recorded tier is opencl on PoCL's CPU device. The tests that change an input
rerun only gpu_backend (molecule/opencl/gpu_backend.yml) against the instance,
read what it recorded, and restore the converged state afterwards."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[1]
FACT = "/etc/ansible/facts.d/gpu_backend.fact"
POCL_ICD = "/etc/OpenCL/vendors/pocl.icd"


def run_playbook(host, playbook: str, extra: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               # One line per message (the YAML format wraps long ones).
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", json.dumps(extra or {}), *args, str(HERE / playbook)],
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
    result = run_playbook(host, "gpu_backend.yml")
    assert result.returncode == 0, result.stdout
    assert fact(host)["tier"] == "opencl"


@pytest.mark.parametrize("package", ["ocl-icd-libopencl1", "clinfo", "mesa-opencl-icd", "pocl-opencl-icd"])
def test_opencl_stack_is_installed(host, package):
    assert host.package(package).is_installed


def test_without_rocm_the_rocm_opencl_runtime_is_not_installed(host):
    assert not host.package("rocm-opencl-runtime").is_installed


@pytest.mark.parametrize("icd", ["pocl.icd", "mesa.icd", "rusticl.icd"])
def test_icd_files_are_registered(host, icd):
    assert host.file(f"/etc/OpenCL/vendors/{icd}").is_file


def test_clinfo_lists_pocl_and_mesa(host):
    out = host.check_output("clinfo -l")
    for platform in ("Portable Computing Language", "rusticl", "Clover"):
        assert platform in out


def test_rocm_opencl_is_chosen_when_rocm_is_installed(host):
    """auto reads the host (ROCm's release file), not the rocm role's variables."""
    host.run_expect([0], "mkdir -p /opt/rocm/.info && echo 6.4.2-120 > /opt/rocm/.info/version")
    try:
        # Check mode, and no ROCm package to install: only the decision is exercised.
        result = run_playbook(host, "opencl.yml", {"opencl_rocm_packages": []}, "--check")
    finally:
        host.run("rm -rf /opt/rocm")
    assert result.returncode == 0, result.stdout
    assert "OpenCL implementation: rocm (/opt/rocm/.info/version exists: ROCm is installed)" in result.stdout


def test_mesa_opencl_is_chosen_without_rocm(host):
    result = run_playbook(host, "opencl.yml", {}, "--check")
    assert result.returncode == 0, result.stdout
    assert "OpenCL implementation: mesa (/opt/rocm/.info/version is missing: ROCm is not installed)" in result.stdout


def test_recorded_tier_is_opencl_on_pocl(host):
    recorded = fact(host)
    assert recorded["tier"] == "opencl" and recorded["forced"] is False
    assert recorded["device"]["software"] is True and recorded["device"]["type"] == "cpu"
    assert recorded["device"]["name"].startswith("pthread-")
    assert recorded["available"] == ["opencl"]
    assert recorded["versions"] == {"opencl": "3.0"}


@pytest.mark.parametrize(("tier", "reason"), [("rocm", "rocminfo not installed"), ("vulkan", "vulkaninfo not installed")])
def test_tiers_not_installed_are_rejected_as_such(host, tier, reason):
    assert fact(host)["rejected"][tier] == reason


def test_removing_the_icd_file_changes_the_recorded_tier_and_reason(host, restore):
    """Break the probe's input: without PoCL's ICD file the loader no longer
    offers PoCL, so OpenCL is rejected with the platforms that remain."""
    assert fact(host)["tier"] == "opencl" and "opencl" not in fact(host)["rejected"]
    host.run_expect([0], f"mv {POCL_ICD} /root/pocl.icd.moved")
    try:
        result = run_playbook(host, "gpu_backend.yml", {"gpu_backend_allow_cpu": True})
        broken = fact(host)
    finally:
        host.run_expect([0], f"mv /root/pocl.icd.moved {POCL_ICD}")
    assert result.returncode == 0, result.stdout
    assert broken["tier"] == "cpu"
    assert broken["rejected"]["opencl"] == "clinfo lists no device on its platforms (rusticl, Clover)"
    assert "Rejected opencl: clinfo lists no device on its platforms (rusticl, Clover)" in result.stdout


def test_without_the_switch_opencl_is_rejected_as_software(host, restore):
    result = run_playbook(host, "gpu_backend.yml", {"gpu_backend_accept_software_devices": False,
                                                     "gpu_backend_allow_cpu": True})
    assert result.returncode == 0, result.stdout
    recorded = fact(host)
    assert recorded["tier"] == "cpu"
    assert recorded["rejected"]["opencl"].startswith("clinfo lists no GPU device, only software devices: pthread-")
    assert recorded["rejected"]["opencl"].endswith("(cpu, Portable Computing Language)")
