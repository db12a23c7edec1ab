# -*- coding: utf-8 -*-
# mi50-llm-stack: filters that describe GPUs for humans.

from __future__ import annotations

DOCUMENTATION = r"""
---
name: describe_gpu
short_description: One line describing a GPU found by mi50.stack.pci_gpus
description:
  - Turns an entry of mi50.stack.pci_gpus into C(0000:03:00.0 1002:66a1 AMD Vega 20 [...] (gfx906, driver amdgpu)).
positional: _input
options:
  _input:
    description: One entry of the module's C(gpus) list.
    type: dict
    required: true
"""


def describe_gpu(gpu: dict) -> str:
    name = gpu.get("name") or "unknown device"
    details = [d for d in (gpu.get("gfx_target"), f"driver {gpu['driver']}" if gpu.get("driver") else "no driver bound") if d]
    return f"{gpu['address']} {gpu['pci_id']} {gpu.get('vendor', 'unknown')} {name} ({', '.join(details)})"


class FilterModule:
    def filters(self) -> dict:
        return {"describe_gpu": describe_gpu}
