"""What the rocm role left on both instances after converge and idempotence.

Everything from AMD's side is a stand-in: the packages come from a mirror built
at test time (tests/lab/fixtures/rocm_mirror.py) with AMD's names and versions,
signed with a throwaway key. apt, dpkg, gpg, the groups, the shell and the
gpu_backend role are the real thing.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import (CARD, MANIFEST, MIRROR, NOCARD, ROCBLAS_DIR, ROCM_PATH, STANDIN, installed_versions, login_env,
                      mirror_fingerprint, name, read_fact, rocblas_library)

SOURCES = {
    "rocm": f"deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] {MIRROR}/rocm/apt/6.4.2 jammy main",
    "amdgpu": f"deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.gpg] {MIRROR}/amdgpu/6.4.2/ubuntu jammy main",
}
# AMD's 6.4.2 packages the role must have installed, at AMD's jammy versions.
INSTALLED = {p["name"]: f"{p['version'].split(':')[-1]}~22.04" for p in STANDIN.PACKAGES
             if p["repo"] == STANDIN.ROCM_642}


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_source_points_at_the_mirror_and_is_signed_by_the_checked_key(host, source):
    file = host.file(f"/etc/apt/sources.list.d/{source}.list")
    assert file.mode == 0o644
    assert lines(file.content_string) == [SOURCES[source]]


def test_keyring_is_dearmored_and_holds_only_the_expected_key(host):
    keyring = host.file("/etc/apt/keyrings/rocm.gpg")
    assert keyring.user == "root" and keyring.mode == 0o644
    assert not keyring.content.startswith(b"-----BEGIN")  # binary, as signed-by wants it
    colons = host.check_output("d=$(mktemp -d) && gpg --homedir $d --batch --with-colons --show-keys "
                               "/etc/apt/keyrings/rocm.gpg; rm -rf $d")
    primary = re.findall(r"(?m)^pub:.*\nfpr:{9}([0-9A-F]+):", colons)
    assert primary == [mirror_fingerprint()]


def test_pin_names_the_mirror_host(host):
    pin = lines(host.file("/etc/apt/preferences.d/rocm-pin-600").content_string)
    assert pin == ["Package: *", 'Pin: origin "172.17.0.1"', "Pin-Priority: 600"]


def test_apt_prefers_amds_rocminfo_over_debians_higher_version(host):
    policy = host.check_output("LC_ALL=C apt-cache policy rocminfo")
    assert re.search(r"Candidate: 1\.0\.0\.60402-120~22\.04\b", policy), policy
    # Debian's own rocminfo is there and sorts higher: only the pin makes AMD's win.
    assert re.search(r"^\s+5\.2\.3-\S+ 500$", policy, re.M), policy
    assert re.search(rf"^\s+600 {re.escape(MIRROR)}/rocm/apt/6\.4\.2 jammy/main amd64 Packages$", policy, re.M), policy


@pytest.mark.parametrize("package", sorted(INSTALLED))
def test_amds_package_is_installed_at_amds_version(host, package):
    assert installed_versions(host).get(package) == INSTALLED[package]


def test_release_file_says_642(host):
    assert host.file(f"{ROCM_PATH}/.info/version").content_string.startswith("6.4.2-")


def test_render_is_a_system_group_and_the_user_is_in_render_and_video(host):
    render = host.group("render")
    assert render.exists and render.gid < 1000
    assert host.group("video").exists
    assert {"render", "video"} <= set(host.user("alice").groups)


def test_login_shell_finds_rocm_first(host):
    env = login_env(host)
    assert env["ROCM_PATH"] == ROCM_PATH
    assert env["PATH"].split(":")[0] == f"{ROCM_PATH}/bin"
    assert f"{ROCM_PATH}/lib" in env["LD_LIBRARY_PATH"].split(":")
    assert env["WHICH"] == f"{ROCM_PATH}/bin/rocminfo"


def test_hsa_override_only_where_configured(host):
    # mi50-rocm-nocard sets rocm_hsa_override_gfx_version: 9.0.6; the default leaves it unset.
    expected = "9.0.6" if name(host) == NOCARD else None
    assert login_env(host).get("HSA_OVERRIDE_GFX_VERSION") == expected


def test_linker_searches_rocm_libraries(host):
    conf = host.file("/etc/ld.so.conf.d/rocm.conf")
    assert lines(conf.content_string) == [f"{ROCM_PATH}/lib", f"{ROCM_PATH}/lib64"]
    scanned = host.check_output("ldconfig -v -N 2>/dev/null | grep -v '^\\s' | cut -d: -f1")
    assert f"{ROCM_PATH}/lib" in scanned.splitlines()


def test_udev_rule_gives_kfd_and_render_nodes_to_render_only(host):
    # Containers run no udev: the rule is checked as written, not as applied.
    rule = lines(host.file("/etc/udev/rules.d/70-rocm.rules").content_string)
    assert rule == ['KERNEL=="kfd", GROUP="render", MODE="0660"',
                    'SUBSYSTEM=="drm", KERNEL=="renderD*", GROUP="render", MODE="0660"']


@pytest.mark.parametrize("filename", STANDIN.ROCBLAS_633_GFX906)
def test_gfx906_rocblas_file_from_633_only_on_the_card(host, filename):
    file = rocblas_library(host).get(filename)
    if name(host) == CARD:
        assert file and file["mode"] == 0o644
        assert "rocblas 4.3.0.60303-74~22.04" in file["head"]
    else:
        assert file is None


def test_other_targets_and_the_library_directory_are_left_alone(host):
    library = host.file(ROCBLAS_DIR)
    assert library.is_directory and library.mode == 0o755
    files = rocblas_library(host)
    # 6.3.3's files for other targets are not copied over 6.4.2's own.
    for own in STANDIN.ROCBLAS_642_LIBRARY:
        assert "rocblas 4.4.1.60402-120~22.04" in files[own]["head"], own
    assert len([f for f in files if "gfx906" in f]) == (len(STANDIN.ROCBLAS_633_GFX906) if name(host) == CARD else 0)


def test_manifest_lists_exactly_the_added_files(host):
    manifest = host.file(MANIFEST)
    if name(host) != CARD:
        assert not manifest.exists
        return
    data = json.loads(manifest.content_string)
    assert data["source_package"] == "rocblas=4.3.0.60303-74~22.04"
    assert data["target_dir"] == ROCBLAS_DIR
    assert sorted(data["files"]) == sorted(STANDIN.ROCBLAS_633_GFX906)
    files = rocblas_library(host)
    assert {f: files[f]["sha1"] for f in data["files"]} == data["files"]


def test_recorded_tier(host):
    fact = read_fact(host)
    assert fact["versions"]["rocm"] == "6.4.2"
    if name(host) == CARD:
        assert fact["tier"] == "rocm"
        assert fact["device"]["gfx_target"] == "gfx906"
        assert fact["device"]["name"] == "AMD Instinct MI50/MI60"
        assert fact["rejected"] == {}
    else:
        assert fact["tier"] == "cpu"
        assert "ROCk module is NOT loaded" in fact["rejected"]["rocm"]


def test_dkms_module_installed_and_reboot_reported_not_done(host):
    dkms = installed_versions(host).get("amdgpu-dkms")
    if name(host) != NOCARD:
        assert dkms is None
        assert not host.file("/var/run/reboot-required").exists
        return
    assert dkms == "1:6.12.12.60402-2187269.22.04"
    assert host.file("/var/run/reboot-required").content_string == "*** System restart required ***\n"
    assert "amdgpu-dkms" in host.file("/var/run/reboot-required.pkgs").content_string.splitlines()
    # /run is a tmpfs of the container: this marker from prepare would be gone after a reboot.
    assert host.file("/run/mi50-rocm-not-rebooted").exists
