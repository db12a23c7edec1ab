"""The rocm role and gpu_backend with other inputs, run again against the converged
instances: a key that is not the expected one, the gfx906 switch, a probe whose
input breaks, and check mode with reboots allowed. These tests change the
instances, so they run after test_rocm.py (pytest runs files in name order) and
put back what they changed.
"""

from __future__ import annotations

import json

import pytest
from conftest import MANIFEST, ROCBLAS_DIR, STANDIN, read_fact, run_playbook

GFX906_FILES = [f"{ROCBLAS_DIR}/{f}" for f in STANDIN.ROCBLAS_633_GFX906]


def test_a_key_other_than_the_expected_one_is_never_trusted(card):
    """The mirror serves Debian's archive keys instead of the one whose fingerprint is set."""
    before = card.check_output("sha256sum /etc/apt/keyrings/rocm.gpg /etc/apt/sources.list.d/*.list")
    result = run_playbook(card, "converge.yml",
                          {"rocm_apt_key_url": "file:///usr/share/keyrings/debian-archive-keyring.gpg"},
                          "--tags", "rocm_install")
    assert result.returncode != 0, result.stdout
    assert "not exactly one key with the expected" in result.stdout
    assert "Nothing from this repository was trusted" in result.stdout
    assert card.check_output("sha256sum /etc/apt/keyrings/rocm.gpg /etc/apt/sources.list.d/*.list") == before


def test_switching_gfx906_kernels_off_removes_them_and_on_restores_them(card):
    """Off removes exactly the listed files; on restores them, and moves them after a ROCm upgrade."""
    off = run_playbook(card, "converge.yml", {"rocm_rocblas_gfx906_kernels": False}, "--tags", "rocm_gfx906")
    assert off.returncode == 0, off.stdout
    assert f"removed {len(GFX906_FILES)} file(s) listed in {MANIFEST}" in off.stdout
    assert not any(card.file(path).exists for path in GFX906_FILES)
    assert not card.file(MANIFEST).exists
    assert card.file(f"{ROCBLAS_DIR}/TensileLibrary_lazy_gfx90a.dat").exists  # AMD's own files stay

    # As if an earlier run had added files to the previous release's rocBLAS (ROCm was upgraded since).
    old = "/opt/rocm-6.4.1/lib/rocblas/library"
    previous = {"schema": 1, "target_dir": old, "files": {"TensileLibrary_lazy_gfx906.dat": "0" * 40}}
    card.run_expect([0], f"mkdir -p {old} && touch {old}/TensileLibrary_lazy_gfx906.dat {old}/keep-me.dat")
    card.run_expect([0], f"cat > {MANIFEST} <<'EOF'\n{json.dumps(previous)}\nEOF")
    on = run_playbook(card, "converge.yml", None, "--tags", "rocm_gfx906")
    assert on.returncode == 0, on.stdout
    assert f"{len(GFX906_FILES)} gfx906 file(s) from rocblas=4.3.0.60303-74~22.04" in on.stdout
    assert all(card.file(path).exists for path in GFX906_FILES)
    assert ROCBLAS_DIR in card.file(MANIFEST).content_string
    assert not card.file(f"{old}/TensileLibrary_lazy_gfx906.dat").exists  # the earlier release's copy is gone
    assert card.file(f"{old}/keep-me.dat").exists  # and nothing else there was touched
    card.run_expect([0], "rm -rf /opt/rocm-6.4.1")


@pytest.mark.parametrize(
    ("break_with", "reason"),
    [
        # No amdgpu driver any more: the real rocminfo's own message becomes the reason.
        ("remove", "rocminfo lists no GPU agent: ROCk module is NOT loaded, possibly no GPU devices"),
        # Driver and /dev/kfd still there, but the runtime sees no GPU node: only the CPU agent is listed.
        ("hide", "rocminfo lists no GPU agent, only: "),
    ],
    ids=["driver-gone", "gpu-node-gone"],
)
def test_breaking_rocminfos_input_changes_the_recorded_tier(card, break_with, reason):
    card.run_expect([0], "simulate-gpu add")
    card.run_expect([0], f"simulate-gpu {break_with}")
    try:
        result = run_playbook(card, "probe.yml")
        assert result.returncode == 0, result.stdout
        fact = read_fact(card)
        assert fact["tier"] == "cpu"
        assert fact["device"] is None
        assert fact["rejected"]["rocm"].startswith(reason), fact["rejected"]
    finally:
        card.run_expect([0], "simulate-gpu add")


def test_restoring_the_card_restores_the_rocm_tier(card):
    result = run_playbook(card, "probe.yml")
    assert result.returncode == 0, result.stdout
    fact = read_fact(card)
    assert fact["tier"] == "rocm" and fact["device"]["gfx_target"] == "gfx906"


def test_without_the_pin_the_role_refuses_debians_rocminfo(nocard):
    """Debian's rocminfo 5.2.3 sorts above AMD's 1.0.0.60402: without the pin apt would take it."""
    nocard.run_expect([0], "mv /etc/apt/preferences.d/rocm-pin-600 /root/rocm-pin-600")
    try:
        result = run_playbook(nocard, "converge.yml", None, "--tags", "rocm_verify")
    finally:
        nocard.run_expect([0], "mv /root/rocm-pin-600 /etc/apt/preferences.d/rocm-pin-600")
    assert result.returncode != 0, result.stdout
    assert "apt would install rocminfo from somewhere else than ROCm 6.4.2" in result.stdout
    assert "Candidate: 5.2.3" in result.stdout


def test_check_mode_never_reboots_even_when_allowed(nocard):
    """amdgpu-dkms changed since boot (converge installed it); check mode only says so."""
    result = run_playbook(nocard, "converge.yml", {"rocm_reboot_allowed": True}, "--check", "--tags", "rocm_verify")
    assert result.returncode == 0, result.stdout
    assert "REBOOT NEEDED" in result.stdout and "check mode never reboots" in result.stdout
    assert nocard.file("/run/mi50-rocm-not-rebooted").exists


def test_a_package_set_that_does_not_fit_is_refused_before_anything_is_installed(nocard):
    """apt's own figure for the set, plus the margin, against the free space under /opt."""
    nocard.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get remove --yes --quiet rocm-hip-sdk")
    try:
        result = run_playbook(nocard, "converge.yml", {"rocm_package_set": "hip-sdk", "rocm_disk_margin_gb": 1000000},
                              "--tags", "rocm_install")
        assert result.returncode != 0, result.stdout
        assert "apt says rocm-hip-sdk (rocm_package_set: hip-sdk) download" in result.stdout
        assert "Nothing was installed. Free space there, or choose a smaller set" in result.stdout
        assert not nocard.package("rocm-hip-sdk").is_installed
    finally:
        restored = run_playbook(nocard, "converge.yml", None, "--tags", "rocm_install")
        assert restored.returncode == 0, restored.stdout[-3000:]
    assert nocard.package("rocm").is_installed and nocard.package("rocm-hip-sdk").is_installed
