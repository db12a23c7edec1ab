#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: read the kernel side of the GPU in one go, for the diagnose
# role (read-only): one module call instead of seven stat/slurp/find/command
# tasks, since the diagnosis runs twice in every repair.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_kernel_state
short_description: Read the GPU kernel module's state, the DKMS builds, device nodes and a pending reboot
description:
  - Reads C(<sysfs_root>/module/<module>/initstate), whether the running kernel's headers are where DKMS
    looks (C(/lib/modules/<release>/build/include)), C(/dev/kfd) and the C(/dev/dri/renderD*) nodes,
    C(dkms status -m <module>), and the packages listed in apt's C(/var/run/reboot-required.pkgs).
  - A missing C(dkms) is reported as not available, not as a failure.
  - Changes nothing; supports check mode.
options:
  sysfs_root:
    description: Where sysfs is mounted (tests point it at a simulated card's tree).
    type: path
    default: /sys
  module:
    description: The GPU's kernel module, also its DKMS name.
    type: str
    default: amdgpu
  headers_dir:
    description: Where the running kernel's headers must be for DKMS (default from the running release).
    type: path
  kfd:
    description: The KFD device node.
    type: path
    default: /dev/kfd
  dri_dir:
    description: The directory of the DRM device nodes.
    type: path
    default: /dev/dri
  reboot_pkgs:
    description: apt's list of packages that asked for a reboot.
    type: path
    default: /var/run/reboot-required.pkgs
  cmdline_path:
    description: The kernel command line.
    type: path
    default: /proc/cmdline
  modprobe_dirs:
    description: The modprobe configuration directories, searched for blacklist and install lines of the module.
    type: list
    elements: path
    default: [/etc/modprobe.d, /run/modprobe.d, /usr/local/lib/modprobe.d, /usr/lib/modprobe.d, /lib/modprobe.d]
  kernel_log_path:
    description: >-
      A file holding the kernel log to read instead of C(journalctl -k -b 0) (or C(dmesg) without the
      journal); tests point it at a simulated one.
    type: path
author: mi50-llm-stack maintainers
"""

EXAMPLES = r"""
- name: Read the kernel side of the GPU
  gpu_kernel_state:
    sysfs_root: /sys
  register: __diagnose_kernel
"""

RETURN = r"""
kernel:
  description: The running kernel's release.
  returned: always
  type: str
module:
  description: The module's sysfs entry, whether it exists, and its initstate ("" when unreadable).
  returned: always
  type: dict
  sample: {"path": "/sys/module/amdgpu", "exists": true, "initstate": "live"}
headers:
  description: Whether the headers directory exists.
  returned: always
  type: bool
nodes:
  description: Whether the KFD node exists, and the render nodes found (sorted).
  returned: always
  type: dict
  sample: {"kfd": true, "render": ["/dev/dri/renderD128"]}
dkms:
  description: Whether dkms answered (C(available)), and what C(dkms status -m <module>) printed.
  returned: always
  type: dict
reboot_pending:
  description: The packages apt's reboot list names.
  returned: always
  type: list
  elements: str
cmdline:
  description: The kernel command line.
  returned: always
  type: str
modprobe_rules:
  description: The blacklist and install lines naming the module, with their files.
  returned: always
  type: list
  elements: dict
  sample: [{"file": "/etc/modprobe.d/blacklist-amdgpu.conf", "line": "blacklist amdgpu"}]
kernel_log:
  description: The last 40 lines of this boot's kernel log that concern the module, module signatures or firmware.
  returned: always
  type: list
  elements: str
"""

import glob
import os
import re
import subprocess

from ansible.module_utils.basic import AnsibleModule


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def modprobe_rules(dirs: list, module: str) -> list:
    """The `blacklist <module>` and `install <module> ...` lines of the modprobe configuration."""
    wanted = re.compile(r"^\s*(?:blacklist\s+" + re.escape(module) + r"|install\s+" + re.escape(module) + r"\s+.*)\s*$")
    rules = []
    for directory in dirs:
        for path in sorted(glob.glob(os.path.join(directory, "*.conf"))):
            for line in read_text(path).splitlines():
                if wanted.match(line):
                    rules.append({"file": path, "line": line.strip()})
    return rules


def kernel_log_lines(text: str, module: str, keep: int = 40) -> list:
    """The lines of a kernel log about the module, module signatures and lockdown, or firmware."""
    about = re.compile(re.escape(module) + r"|Lockdown:|module verification|PKCS#7|Loading of .*module|"
                       r"Unknown symbol|disagrees about version|Direct firmware load")
    return [line.strip() for line in text.splitlines() if about.search(line)][-keep:]


def read_kernel_log(path: str | None) -> str:
    if path:
        return read_text(path)
    for command in (["journalctl", "-k", "-b", "0", "-o", "cat", "--no-pager", "-q"], ["dmesg"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout
    return ""


def gather(params: dict, release: str, dkms_status) -> dict:
    """What the module returns, from its parameters, the kernel release and a
    callable giving (rc, output) of `dkms status -m <module>` (None: no dkms)."""
    module_path = os.path.join(params["sysfs_root"], "module", params["module"])
    headers = params.get("headers_dir") or f"/lib/modules/{release}/build/include"
    rc, out = dkms_status() if dkms_status else (1, "")
    return {
        "kernel": release,
        "module": {"path": module_path, "exists": os.path.isdir(module_path),
                   "initstate": read_text(os.path.join(module_path, "initstate")).strip()},
        "headers": os.path.isdir(headers),
        "nodes": {"kfd": os.path.exists(params["kfd"]),
                  "render": sorted(glob.glob(os.path.join(params["dri_dir"], "renderD*")))},
        "dkms": {"available": dkms_status is not None and rc == 0, "status": out if rc == 0 else ""},
        "reboot_pending": read_text(params["reboot_pkgs"]).split(),
        "cmdline": read_text(params.get("cmdline_path") or "/proc/cmdline").strip(),
        "modprobe_rules": modprobe_rules(params.get("modprobe_dirs") or [], params["module"]),
        "kernel_log": kernel_log_lines(read_kernel_log(params.get("kernel_log_path")), params["module"]),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "module": {"type": "str", "default": "amdgpu"},
            "headers_dir": {"type": "path"},
            "kfd": {"type": "path", "default": "/dev/kfd"},
            "dri_dir": {"type": "path", "default": "/dev/dri"},
            "reboot_pkgs": {"type": "path", "default": "/var/run/reboot-required.pkgs"},
            "cmdline_path": {"type": "path", "default": "/proc/cmdline"},
            "modprobe_dirs": {"type": "list", "elements": "path",
                              "default": ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                                          "/usr/lib/modprobe.d", "/lib/modprobe.d"]},
            "kernel_log_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    dkms = module.get_bin_path("dkms")

    def dkms_status() -> tuple[int, str]:
        rc, out, _err = module.run_command([dkms, "status", "-m", module.params["module"]],
                                           environ_update={"LC_ALL": "C"})
        return rc, out

    module.exit_json(changed=False, **gather(module.params, os.uname().release, dkms_status if dkms else None))


if __name__ == "__main__":
    main()
