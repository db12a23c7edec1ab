"""Preflight on the lab container: it refuses what cannot work, says what to
change, and changes nothing. The refusals are provoked by running the preflight
playbook again against the converged container with inputs a real host could
present (an old kernel requirement, a missing GPU, a tiny disk)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
NOTHING_CHANGED = "Nothing was changed on this host."


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
        # The container is Debian 12; pretend only Ubuntu 24.04 were supported.
        ({"_preflight_supported_platforms": {"Ubuntu": ["24.04"]}}, "Debian 12 is not supported"),
    ],
    ids=["old-kernel", "no-gpu", "no-disk", "unsupported-os"],
)
def test_refuses_with_the_fix_and_changes_nothing(host, extra, expected):
    before = host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort")
    result = run_preflight(host, extra)
    assert result.returncode != 0, result.stdout
    assert expected in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert host.check_output("find /etc /usr/local /opt -newer /etc/hostname | sort") == before


def test_reports_a_simulated_mi50(host):
    """A fake PCI tree with a Vega 20 card passes and is named with its gfx target."""
    fake = "/tmp/fake-pci/0000:03:00.0"
    host.run_expect([0], f"mkdir -p {fake} && echo 0x1002 > {fake}/vendor && echo 0x66a1 > {fake}/device"
                         f" && echo 0x038000 > {fake}/class")
    try:
        result = run_preflight(host, {"preflight_require_gpu": True,
                                      "preflight_pci_devices_path": "/tmp/fake-pci"})
    finally:
        host.run("rm -rf /tmp/fake-pci")
    assert result.returncode == 0, result.stdout
    assert "0000:03:00.0 1002:66a1 AMD" in result.stdout
    assert "gfx906" in result.stdout
    assert "preflight passed" in result.stdout
