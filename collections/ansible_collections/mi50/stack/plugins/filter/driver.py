# -*- coding: utf-8 -*-
# mi50-llm-stack: which kernels AMD's amdgpu-dkms builds for.
# The knowledge is data (../../data/amdgpu_dkms.yml); this file only reads it.

from __future__ import annotations

DOCUMENTATION = r"""
---
name: amdgpu_dkms_kernel
short_description: Whether AMD's amdgpu-dkms of a ROCm release builds for a kernel
description:
  - Looks the ROCm release up in C(data/amdgpu_dkms.yml) of this collection and compares the
    kernel release's major.minor with the range AMD's amdgpu-dkms of that release builds for.
  - C(known) is false for a release the data does not cover; C(supported) is then true
    (nothing is refused on a guess) and the message says the range is unknown.
positional: _input
options:
  _input:
    description: The kernel release, as C(uname -r) prints it (C(6.8.0-40-generic)).
    type: str
    required: true
  rocm_version:
    description: The ROCm release whose amdgpu-dkms is meant (C(6.4.2)).
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Check the running kernel against amdgpu-dkms 6.4.2
  ansible.builtin.set_fact:
    _dkms_kernel: "{{ ansible_facts['kernel'] | mi50.stack.amdgpu_dkms_kernel(rocm_version='6.4.2') }}"
"""

RETURN = r"""
_value:
  description: >-
    kernel, version (major.minor), rocm_version, known (bool), supported (bool), kernel_min,
    kernel_max, source, message (one sentence saying where the kernel stands).
  type: dict
"""

import re
from functools import lru_cache
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parents[2] / "data" / "amdgpu_dkms.yml"


@lru_cache(maxsize=1)
def load_support() -> dict:
    return yaml.safe_load(DATA.read_text())


def _major_minor(text: str) -> tuple[int, int] | None:
    match = re.match(r"^\s*(\d+)\.(\d+)", str(text or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def amdgpu_dkms_kernel(kernel: str, rocm_version: str) -> dict:
    """Where `kernel` stands against the range amdgpu-dkms of `rocm_version` builds for."""
    row = load_support()["releases"].get(str(rocm_version))
    found = _major_minor(kernel)
    result = {"kernel": str(kernel), "version": "%d.%d" % found if found else None,
              "rocm_version": str(rocm_version), "known": bool(row and found), "supported": True,
              "kernel_min": row["kernel_min"] if row else None, "kernel_max": row["kernel_max"] if row else None,
              "source": row["source"] if row else None}
    if not row or not found:
        result["message"] = (f"The kernels amdgpu-dkms {rocm_version} builds for are not known to this project; "
                             f"kernel {kernel} is not checked.")
        return result
    low, high = _major_minor(row["kernel_min"]), _major_minor(row["kernel_max"])
    if found < low:
        result.update(supported=False, message=(
            f"Kernel {kernel} is older than {row['kernel_min']}, the oldest amdgpu-dkms {rocm_version} "
            f"builds for ({row['source']})."))
    elif found > high:
        result.update(supported=False, message=(
            f"Kernel {kernel} is newer than {row['kernel_max']}, the newest amdgpu-dkms {rocm_version} "
            f"builds for ({row['source']})."))
    else:
        result["message"] = (f"Kernel {kernel} is within {row['kernel_min']}-{row['kernel_max']}, "
                             f"the kernels amdgpu-dkms {rocm_version} builds for.")
    return result


def rocm_driver_veto(probes: dict, rocm_fact: dict | None, kernel: str) -> dict:
    """The probes of gpu_probes, with rocm rejected when the rocm role recorded that the
    amdgpu-dkms module it was asked for failed to build for this kernel.

    The user asked for AMD's driver (rocm_dkms); a rocminfo that still lists the card
    runs on the kernel's own driver, which is a different choice (rocm_dkms: false)."""
    dkms = (rocm_fact or {}).get("dkms") or {}
    if "rocm" not in probes or dkms.get("state") != "failed" or dkms.get("kernel") != kernel:
        return probes
    probe = dict(probes["rocm"])
    seen = ""
    if probe.get("ok") and probe.get("device"):
        seen = (f" ({probe['tool']} lists {probe['device'].get('name')} on the kernel's own driver:"
                " set rocm_dkms: false to use it)")
    probe.update(ok=False, device=None, reason=(dkms.get("reason") or "amdgpu-dkms failed to build") + seen)
    return {**probes, "rocm": probe}


class FilterModule:
    def filters(self) -> dict:
        return {"amdgpu_dkms_kernel": amdgpu_dkms_kernel, "rocm_driver_veto": rocm_driver_veto}
