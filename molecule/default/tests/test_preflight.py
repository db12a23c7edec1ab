"""Preflight on the lab container: it refuses what cannot work, says what to
change, and changes nothing. The refusals are provoked by running the preflight
playbook again against the converged container with inputs a real host could
present (an old kernel requirement, a missing GPU, a tiny disk, an Ollama release
the first GPU tier cannot run on a simulated MI50)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
NOTHING_CHANGED = "Nothing was changed on this host."
# A fake PCI tree with one MI50 (Vega 20, gfx906), for the checks that need a GPU.
FAKE_PCI = "/tmp/fake-pci-mi50"
# What the ollama role installs per tier when no version is pinned.
OLLAMA_BY_TIER = {"rocm": "0.12.3", "vulkan": "0.32.7", "opencl": "0.32.7"}


def run_preflight(host, extra: dict) -> subprocess.CompletedProcess:
    """Run playbooks/preflight.yml against this scenario's instance with extra vars."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    result = subprocess.run(
        [
            "ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
            "--limit", host.backend.get_hostname(),
            "-e", json.dumps(extra), str(PROJECT / "playbooks" / "preflight.yml"),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )
    # ansible-core prints task failures on stderr; the tests read both.
    result.stdout += result.stderr
    return result


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"preflight_min_kernel": "99.0"}, "is older than 99.0"),
        ({"preflight_require_gpu": True}, "No AMD GPU (PCI vendor 0x1002) found"),
        (
            {"preflight_disk_requirements": [{"path": "/var/lib/nowhere/models", "min_free_gb": 1e9,
                                              "purpose": "The models"}]},
            "The models needs 1000000000.0 GB free under /var/lib/nowhere/models",
        ),
        # ROCm's package set counted where it installs (a fresh /opt), with a size no disk has.
        (
            {"preflight_rocm_package_set": "full", "preflight_rocm_path": "/tmp/fresh-opt",
             "_preflight_rocm_set_gb": {"full": 1e9}},
            "ROCm's full package set (an estimate; AMD publishes none) needs 1000000000.0 GB free under /tmp/fresh-opt",
        ),
        # The container is Debian 12; pretend only Ubuntu 24.04 were supported.
        ({"_preflight_supported_platforms": {"Ubuntu": ["24.04"]}}, "Debian 12 is not supported"),
        # An Ollama newer than 0.12.3 cannot drive a gfx906 card over ROCm, the first tier.
        (
            {"preflight_pci_devices_path": FAKE_PCI, "preflight_engine": "ollama", "preflight_engine_version": "0.13.0"},
            ("Tier rocm (first in gpu_tiers): Ollama 0.13.0 cannot use gfx906 on the ROCm tier",
             'Pin ollama_version "0.12.3" for the ROCm tier', "or put vulkan first in gpu_tiers"),
        ),
        # Ollama's Linux archives carry the Vulkan libraries only from 0.13.0.
        (
            {"preflight_pci_devices_path": FAKE_PCI, "preflight_engine": "ollama", "preflight_engine_version": "0.12.3",
             "preflight_gpu_tiers": ["vulkan", "rocm"]},
            ("Tier vulkan (first in gpu_tiers): Ollama 0.12.3 cannot use gfx906 on the Vulkan tier",
             'Pin ollama_version "0.13.0" or newer'),
        ),
        # 0.12.11 reads OLLAMA_VULKAN, but its archives lack the Vulkan libraries (ollama issue #13104).
        (
            {"preflight_pci_devices_path": FAKE_PCI, "preflight_engine": "ollama", "preflight_engine_version": "0.12.11",
             "preflight_gpu_tiers": ["vulkan", "rocm"]},
            ("Tier vulkan (first in gpu_tiers): Ollama 0.12.11 cannot use gfx906 on the Vulkan tier",
             "carry no Vulkan libraries before 0.13.0", "ollama issue #13104", 'Pin ollama_version "0.13.0" or newer'),
        ),
    ],
    ids=["old-kernel", "no-gpu", "no-disk", "no-disk-for-rocm", "unsupported-os", "ollama-too-new-for-rocm",
         "ollama-too-old-for-vulkan", "ollama-0.12.11-vulkan-without-libraries"],
)
def test_refuses_with_the_fix_and_changes_nothing(host, fake_mi50, extra, expected):
    before = host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort")
    result = run_preflight(host, extra)
    assert result.returncode != 0, result.stdout
    flat = " ".join(result.stdout.split())  # the YAML callback wraps long lines
    for text in [expected] if isinstance(expected, str) else expected:
        assert text in flat
    assert NOTHING_CHANGED in result.stdout
    assert host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort") == before


@pytest.fixture()
def fake_mi50(host):
    """An MI50 on a fake PCI bus (the checks read sysfs through preflight_pci_devices_path)."""
    fake = f"{FAKE_PCI}/0000:03:00.0"
    host.run_expect([0], f"mkdir -p {fake} && echo 0x1002 > {fake}/vendor && echo 0x66a1 > {fake}/device"
                         f" && echo 0x038000 > {fake}/class")
    yield FAKE_PCI
    host.run(f"rm -rf {FAKE_PCI}")


def test_reports_a_simulated_mi50(host, fake_mi50):
    """A fake PCI tree with a Vega 20 card passes and is named with its gfx target; Ollama
    with its per-tier versions passes the engine check, with a warning for the OpenCL fallback."""
    result = run_preflight(host, {"preflight_require_gpu": True, "preflight_pci_devices_path": fake_mi50,
                                  "preflight_engine": "ollama", "preflight_engine_version_by_tier": OLLAMA_BY_TIER})
    assert result.returncode == 0, result.stdout
    flat = " ".join(result.stdout.split())  # the YAML callback wraps long lines
    assert "0000:03:00.0 1002:66a1 AMD" in result.stdout
    assert "gfx906" in result.stdout
    assert "Ollama 0.12.3 can use gfx906 on the ROCm tier" in flat
    assert "WARNING: If gpu_backend falls back to opencl: Ollama 0.32.7 cannot use gfx906" in flat
    assert "preflight passed" in result.stdout


# --------------------------------------------------------------------- the driver AMD's DKMS builds

FAKE_EFIVARS = "/tmp/fake-efivars"
SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
# amdgpu-dkms 6.4.2 builds for kernels 5.15 to 6.14 (ROCm issue #4619; mi50.stack data/amdgpu_dkms.yml).
DKMS_RANGE = ((5, 15), (6, 14))


def flatten(output: str) -> str:
    """The output as one line: the YAML callback wraps long lines and doubles quotes in quoted scalars."""
    return " ".join(output.split()).replace("''", "'")


def kernel_in_dkms_range(host) -> bool:
    major, minor = (int(n) for n in host.check_output("uname -r").split(".")[:2])
    return DKMS_RANGE[0] <= (major, minor) <= DKMS_RANGE[1]


@pytest.fixture()
def secure_boot(host):
    """A fake efivarfs whose SecureBoot variable says on (4 attribute bytes, then 1)."""
    host.run_expect([0], f"mkdir -p {FAKE_EFIVARS} && printf '\\006\\000\\000\\000\\001' > {FAKE_EFIVARS}/{SECURE_BOOT_VAR}")
    yield FAKE_EFIVARS
    host.run(f"rm -rf {FAKE_EFIVARS}")


def test_a_kernel_amdgpu_dkms_cannot_build_for_is_refused_with_the_choices(host):
    """The containers run the host's kernel; on this machine (6.18) amdgpu-dkms 6.4.2 cannot build, and
    preflight says so before anything changes. On a kernel inside the range the same run passes."""
    before = host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort")
    result = run_preflight(host, {"preflight_rocm_dkms": True})
    flat = flatten(result.stdout)
    kernel = host.check_output("uname -r")
    if kernel_in_dkms_range(host):
        assert result.returncode == 0, flat
        assert "amdgpu-dkms" not in flat
    else:
        assert result.returncode != 0, flat
        assert f"Kernel {kernel} is newer than 6.14, the newest amdgpu-dkms 6.4.2 builds for (ROCm issue #4619" in flat
        assert "set rocm_dkms: false to use the kernel's own amdgpu driver" in flat
        assert "preflight_dkms_unsupported_kernel: fallback" in flat
        assert NOTHING_CHANGED in flat
    assert host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort") == before


def test_fallback_tries_the_build_with_a_warning(host):
    result = run_preflight(host, {"preflight_rocm_dkms": True, "preflight_dkms_unsupported_kernel": "fallback"})
    flat = flatten(result.stdout)
    assert result.returncode == 0, flat
    if not kernel_in_dkms_range(host):
        assert "The build will be tried (preflight_dkms_unsupported_kernel: fallback)" in flat


def test_secure_boot_with_dkms_is_refused_unless_allowed(host, secure_boot):
    extra = {"preflight_rocm_dkms": True, "preflight_dkms_unsupported_kernel": "fallback",
             "preflight_efivars_path": secure_boot}
    refused = run_preflight(host, extra)
    flat = flatten(refused.stdout)
    assert refused.returncode != 0, flat
    assert "Secure Boot is on, and amdgpu-dkms builds a module the kernel only loads once it is signed" in flat
    assert "preflight_secure_boot_dkms: allow" in flat and NOTHING_CHANGED in flat
    allowed = run_preflight(host, {**extra, "preflight_secure_boot_dkms": "allow"})
    flat = flatten(allowed.stdout)
    assert allowed.returncode == 0, flat
    assert "DKMS signs the amdgpu module with this machine's MOK key" in flat
    # Without DKMS nothing is built, and Secure Boot is no concern of ours.
    assert run_preflight(host, {**extra, "preflight_rocm_dkms": False}).returncode == 0


def test_secure_boot_off_or_absent_passes(host, secure_boot):
    host.run_expect([0], f"printf '\\006\\000\\000\\000\\000' > {secure_boot}/{SECURE_BOOT_VAR}")
    extra = {"preflight_rocm_dkms": True, "preflight_dkms_unsupported_kernel": "fallback"}
    assert run_preflight(host, {**extra, "preflight_efivars_path": secure_boot}).returncode == 0
    assert run_preflight(host, {**extra, "preflight_efivars_path": "/nonexistent"}).returncode == 0


# --------------------------------------------------------------------- what is installed already

def test_an_installed_rocm_is_not_counted_again(host):
    """The same impossible size passes once ROCm's version file is there: a re-run is not refused."""
    extra = {"preflight_rocm_package_set": "full", "preflight_rocm_path": "/tmp/fresh-opt",
             "_preflight_rocm_set_gb": {"full": 1e9}}
    host.run_expect([0], "mkdir -p /tmp/fresh-opt/rocm/.info && echo 6.4.2-120 > /tmp/fresh-opt/rocm/.info/version")
    try:
        result = run_preflight(host, extra)
        assert result.returncode == 0, result.stdout
    finally:
        host.run("rm -rf /tmp/fresh-opt")


@pytest.fixture()
def docker_snap(host):
    """Docker as the Ubuntu Server installer offers it: /snap/bin/docker, a symlink to snapd's launcher
    (a stand-in: preflight only looks for it)."""
    host.run_expect([0], "mkdir -p /snap/bin && ln -sfn /usr/bin/snap /snap/bin/docker")
    yield "/snap/bin/docker"
    host.run("rm -rf /snap")


def test_a_docker_that_is_only_the_snap_is_refused_for_the_engine(host, docker_snap):
    before = host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort")
    result = run_preflight(host, {"preflight_container_runner": "docker"})
    flat = flatten(result.stdout)
    assert result.returncode != 0, flat
    assert f"Docker on this host is the snap ({docker_snap}), whose confinement silently redirects bind mounts" in flat
    assert "vllm_container_engine: podman" in flat and NOTHING_CHANGED in flat
    assert host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort") == before
    # podman, or no container at all, is no concern of this check.
    assert run_preflight(host, {"preflight_container_runner": "podman"}).returncode == 0
    assert run_preflight(host, {}).returncode == 0
