"""The amdgpu driver as real boxes meet it (see ../molecule.yml).

mi50-dkms-fails: AMD's amdgpu-dkms cannot build for the running kernel (the real
dkms runs the stand-in source, which fails on a kernel newer than 6.14 as the
real one does, against headers that declare the kernel's real version); the
run ends on vulkan with the reason, and apt and dpkg still work.
mi50-distro-driver: rocm on the kernel's own driver, with Debian's firmware.
Stand-ins: the card, AMD's packages and the kernel headers; real: dkms, apt,
dpkg, Mesa's lavapipe, the roles."""

from __future__ import annotations

import json

import pytest

DKMS_FAILS = "mi50-dkms-fails"
DISTRO = "mi50-distro-driver"


def name(host) -> str:
    return host.backend.get_hostname()


def local_fact(host, fact: str) -> dict:
    return json.loads(host.file(f"/etc/ansible/facts.d/{fact}.fact").content_string)


def only(host, wanted: str) -> None:
    if name(host) != wanted:
        pytest.skip(f"about {wanted}")


def kernel_newer_than_amds_range(host) -> bool:
    major, minor = (int(n) for n in host.check_output("uname -r").split(".")[:2])
    return (major, minor) > (6, 14)


# --------------------------------------------------------------------- a build that fails

def test_dkms_failure_ends_on_vulkan_with_the_reason(host):
    only(host, DKMS_FAILS)
    kernel = host.check_output("uname -r")
    gpu = local_fact(host, "gpu_backend")
    assert gpu["tier"] == "vulkan", gpu
    reason = gpu["rejected"]["rocm"]
    assert f"amdgpu-dkms could not build its module for kernel {kernel}." in reason
    # The last error of DKMS's make.log (what the stand-in source printed, as a compiler would).
    assert "make.log: amdgpu_drv.c:" in reason and "error:" in reason
    assert "rocm_dkms: false" in reason
    if kernel_newer_than_amds_range(host):
        assert f"Kernel {kernel} is newer than 6.14, the newest amdgpu-dkms 6.4.2 builds for" in reason


def test_the_failure_is_recorded_and_reported(host):
    only(host, DKMS_FAILS)
    rocm = local_fact(host, "rocm")
    assert rocm["dkms"]["state"] == "failed"
    assert rocm["dkms"]["kernel"] == host.check_output("uname -r")
    assert rocm["dkms"]["make_log"].startswith("/var/lib/dkms/amdgpu/")
    report = json.loads(host.file("/var/lib/mi50-llm-stack/report.json").content_string)
    assert report["gpu"]["tier"] == "vulkan"
    assert report["gpu"]["rejected"]["rocm"] == local_fact(host, "gpu_backend")["rejected"]["rocm"]


def test_dpkg_is_left_consistent_and_apt_works(host):
    only(host, DKMS_FAILS)
    assert host.run_expect([0], "dpkg --audit").stdout.strip() == ""
    status = host.run("dpkg-query -W -f='${db:Status-Abbrev}' amdgpu-dkms")
    assert status.stdout.strip() in ("", "un", "rc"), status.stdout
    host.run_expect([0], "apt-get check")
    # A later apt run works (the half-configured package no longer fails it).
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install --yes --quiet --simulate hello")
    assert "amdgpu" not in host.check_output("dkms status")


def test_rocm_user_space_stays_installed(host):
    only(host, DKMS_FAILS)
    assert host.package("rocm").is_installed
    assert host.file("/opt/rocm-6.4.2/bin/rocminfo").exists


# --------------------------------------------------------------------- the distribution's driver

def test_distribution_driver_gets_its_firmware(host):
    only(host, DISTRO)
    assert host.package("firmware-amd-graphics").is_installed
    # The MI50's (Vega 20) firmware files, which the in-tree amdgpu loads.
    assert host.run_expect([0], "ls /lib/firmware/amdgpu/ | grep -c '^vega20_'").stdout.strip() != "0"
    sources = host.file("/etc/apt/sources.list.d/mi50-amdgpu-firmware.list").content_string
    assert " bookworm non-free-firmware" in sources


def test_distribution_driver_path_serves_rocm_without_dkms(host):
    only(host, DISTRO)
    assert local_fact(host, "rocm")["dkms"] == {"wanted": False, "state": "off"}
    assert local_fact(host, "gpu_backend")["tier"] == "rocm"
    assert not host.package("amdgpu-dkms").is_installed
