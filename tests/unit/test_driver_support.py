"""The kernel range AMD's amdgpu-dkms builds for (mi50.stack data/amdgpu_dkms.yml), as
preflight and the rocm role read it through the amdgpu_dkms_kernel filter."""

from __future__ import annotations

import pytest
from ansible_collections.mi50.stack.plugins.filter.driver import amdgpu_dkms_kernel, rocm_driver_veto


@pytest.mark.parametrize("kernel", ["5.15.0-119-generic", "6.1.0-28-amd64", "6.8.0-40-generic",
                                    "6.11.0-29-generic", "6.14.0-24-generic"])
def test_kernels_in_range_pass(kernel):
    found = amdgpu_dkms_kernel(kernel, "6.4.2")
    assert found["known"] and found["supported"], found
    assert "within 5.15-6.14" in found["message"]


@pytest.mark.parametrize(("kernel", "words"), [
    ("6.15.0-rc1", "newer than 6.14"),
    ("6.18.44-fc-v1300", "newer than 6.14"),
    ("5.10.0-30-amd64", "older than 5.15"),
])
def test_kernels_out_of_range_are_named_with_the_source(kernel, words):
    found = amdgpu_dkms_kernel(kernel, "6.4.2")
    assert found["supported"] is False
    assert words in found["message"] and "ROCm issue #4619" in found["message"]
    assert found["message"].startswith(f"Kernel {kernel} ")


def test_unknown_release_is_not_refused_on_a_guess():
    found = amdgpu_dkms_kernel("6.18.0", "7.0.0")
    assert found["known"] is False and found["supported"] is True
    assert "not known" in found["message"]


def test_major_minor_compare_numerically_not_as_text():
    # "6.9" sorts after "6.14" as text; as numbers it is inside the range.
    assert amdgpu_dkms_kernel("6.9.0", "6.4.2")["supported"] is True


# --------------------------------------------------------------------- gpu_backend's veto

FAILED = {"schema": 1, "rocm_version": "6.4.2",
          "dkms": {"wanted": True, "state": "failed", "kernel": "6.18.44-fc-v1300",
                   "reason": "amdgpu-dkms could not build its module for kernel 6.18.44-fc-v1300."}}


def probes(rocm_ok: bool) -> dict:
    device = {"name": "gfx906", "type": "gpu", "gfx_target": "gfx906", "software": False}
    return {"rocm": {"tool": "rocminfo", "ok": rocm_ok, "reason": "" if rocm_ok else "rocminfo lists no GPU agent",
                     "devices": [device] if rocm_ok else [], "device": device if rocm_ok else None, "version": "6.4.2"},
            "vulkan": {"tool": "vulkaninfo", "ok": True, "reason": "", "devices": [], "device": None, "version": None}}


def test_a_failed_dkms_build_rejects_rocm_with_its_reason():
    vetoed = rocm_driver_veto(probes(False), FAILED, "6.18.44-fc-v1300")
    assert vetoed["rocm"]["ok"] is False
    assert vetoed["rocm"]["reason"] == FAILED["dkms"]["reason"]
    assert vetoed["vulkan"]["ok"] is True


def test_a_card_seen_on_the_kernels_own_driver_is_named_with_the_choice():
    vetoed = rocm_driver_veto(probes(True), FAILED, "6.18.44-fc-v1300")
    assert vetoed["rocm"]["ok"] is False and vetoed["rocm"]["device"] is None
    assert "kernel's own driver" in vetoed["rocm"]["reason"] and "rocm_dkms: false" in vetoed["rocm"]["reason"]


@pytest.mark.parametrize("fact", [
    {},
    {"dkms": {"wanted": False, "state": "off"}},
    {"dkms": {"wanted": True, "state": "installed"}},
    # Recorded for another kernel: the rocm role tries that kernel again itself.
    {"dkms": {**FAILED["dkms"], "kernel": "6.8.0-40-generic"}},
])
def test_no_veto_without_a_failure_for_this_kernel(fact):
    assert rocm_driver_veto(probes(True), fact, "6.18.44-fc-v1300")["rocm"]["ok"] is True


# --------------------------------------------------------------------- what apt says an install takes

from ansible_collections.mi50.stack.plugins.filter.packages import apt_install_size  # noqa: E402

APT_ROCM = """Reading package lists...
Building dependency tree...
Reading state information...
The following additional packages will be installed:
  comgr composablekernel-dev half hip-dev hip-doc hip-runtime-amd hip-samples hipblas hipblas-dev
0 upgraded, 187 newly installed, 0 to remove and 3 not upgraded.
Need to get 3,952 MB of archives.
After this operation, 26.1 GB of additional disk space will be used.
Do you want to continue? [Y/n] N
Abort.
"""


def test_apt_sizes_are_read_in_gb():
    assert apt_install_size(APT_ROCM) == {"known": True, "download_gb": 3.952, "install_gb": 26.1}


def test_partly_downloaded_and_small_installs():
    text = "0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.\nNeed to get 0 B/512 kB of archives.\n" \
           "After this operation, 1,536 kB of additional disk space will be used.\n"
    assert apt_install_size(text) == {"known": True, "download_gb": 0.000512, "install_gb": 0.001536}


def test_nothing_to_install_and_unknown_text():
    assert apt_install_size("0 upgraded, 0 newly installed, 0 to remove and 3 not upgraded.\n") == {
        "known": True, "download_gb": 0.0, "install_gb": 0.0}
    assert apt_install_size("E: Unable to locate package rocm")["known"] is False
