#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: list the GPUs on the PCI bus from sysfs (read-only).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pci_gpus
short_description: List display and accelerator devices on the PCI bus
description:
  - Reads C(/sys/bus/pci/devices/*/{vendor,device,class}) and returns every display
    controller (PCI class 0x03) and processing accelerator (class 0x12).
  - For AMD devices it adds the LLVM target (for example C(gfx906)) where the
    device id is known, so preflight can name the card and check engine support.
  - Changes nothing; supports check mode.
options:
  devices_path:
    description: Directory holding one entry per PCI device (tests point it at a fake tree).
    type: path
    default: /sys/bus/pci/devices
author: mi50-llm-stack maintainers
"""

EXAMPLES = r"""
- name: Find the GPUs on this host
  pci_gpus:
  register: __preflight_gpus
"""

RETURN = r"""
gpus:
  description: One entry per device, sorted by PCI address.
  returned: always
  type: list
  elements: dict
  sample:
    - address: "0000:03:00.0"
      vendor_id: "0x1002"
      device_id: "0x66a1"
      pci_id: "1002:66a1"
      class: "0x038000"
      driver: amdgpu
      vendor: AMD
      name: Vega 20 [Radeon Instinct MI50/MI60 / Radeon Pro VII]
      gfx_target: gfx906
"""

import os

from ansible.module_utils.basic import AnsibleModule

VENDORS = {"0x1002": "AMD", "0x10de": "NVIDIA", "0x8086": "Intel", "0x1af4": "Red Hat (virtio)",
           "0x1234": "QEMU", "0x15ad": "VMware", "0x1a03": "ASPEED"}

# AMD device ids whose LLVM target matters here. Vega 20 is the MI50's chip;
# the others are listed so that preflight names neighbouring cards correctly.
AMD_TARGETS = {
    "0x66a0": ("Vega 20 [Radeon Instinct MI50/MI60]", "gfx906"),
    "0x66a1": ("Vega 20 [Radeon Instinct MI50/MI60 / Radeon Pro VII]", "gfx906"),
    "0x66a2": ("Vega 20", "gfx906"),
    "0x66a3": ("Vega 20 [Radeon Pro Vega II]", "gfx906"),
    "0x66a7": ("Vega 20 [Radeon Pro Vega 20]", "gfx906"),
    "0x66af": ("Vega 20 [Radeon VII]", "gfx906"),
    "0x6860": ("Vega 10 [Radeon Instinct MI25]", "gfx900"),
    "0x6861": ("Vega 10 [Radeon Pro WX 9100]", "gfx900"),
    "0x687f": ("Vega 10 [Radeon RX Vega 56/64]", "gfx900"),
    "0x738c": ("Arcturus [Instinct MI100]", "gfx908"),
    "0x7408": ("Aldebaran [Instinct MI250X]", "gfx90a"),
    "0x740c": ("Aldebaran [Instinct MI250/MI250X]", "gfx90a"),
    "0x74a1": ("Aqua Vanjaram [Instinct MI300X]", "gfx942"),
    "0x744c": ("Navi 31 [Radeon RX 7900 XT/XTX]", "gfx1100"),
}

GPU_CLASSES = ("0x03", "0x12")


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip().lower()
    except OSError:
        return ""


def list_gpus(devices_path: str) -> list[dict]:
    gpus = []
    try:
        entries = sorted(os.listdir(devices_path))
    except OSError:
        return gpus
    for address in entries:
        base = os.path.join(devices_path, address)
        pci_class = _read(os.path.join(base, "class"))
        if not pci_class.startswith(GPU_CLASSES):
            continue
        vendor_id = _read(os.path.join(base, "vendor"))
        device_id = _read(os.path.join(base, "device"))
        driver_link = os.path.join(base, "driver")
        driver = os.path.basename(os.readlink(driver_link)) if os.path.islink(driver_link) else None
        name, target = (None, None)
        if vendor_id == "0x1002":
            name, target = AMD_TARGETS.get(device_id, (None, None))
        gpus.append({
            "address": address,
            "vendor_id": vendor_id,
            "device_id": device_id,
            "pci_id": f"{vendor_id[2:]}:{device_id[2:]}",
            "class": pci_class,
            "driver": driver,
            "vendor": VENDORS.get(vendor_id, "unknown"),
            "name": name,
            "gfx_target": target,
        })
    return gpus


def main() -> None:
    module = AnsibleModule(
        argument_spec={"devices_path": {"type": "path", "default": "/sys/bus/pci/devices"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, gpus=list_gpus(module.params["devices_path"]))


if __name__ == "__main__":
    main()
