# -*- coding: utf-8 -*-
# mi50-llm-stack: where a loaded model runs, as the engine reports it (not as the tier assumes).

from __future__ import annotations

DOCUMENTATION = r"""
---
name: ollama_placement
short_description: Where Ollama placed a loaded model, from its /api/ps answer
description:
  - Reads Ollama's C(GET /api/ps) answer (api/types.go C(ProcessModelResponse), filled by
    server/routes.go C(PsHandler)) and finds the model by C(name) (or C(model)).
  - C(size_vram) against C(size) says where it is, in the words C(ollama ps) uses (cmd/cmd.go);
    0 is C(100% CPU), equal is C(100% GPU), in between C(<cpu>%/<gpu>% CPU/GPU).
  - The companion filter C(offload_on_cpu) lists the models measured with nothing in VRAM.
positional: _input, model
options:
  _input:
    description: The JSON body of C(GET /api/ps).
    type: dict
    required: true
  model:
    description: The model name as the role serves it (with its tag).
    type: str
    required: true
"""

RETURN = r"""
_value:
  description: >-
    C(accelerated) (true when any part is in VRAM; null when /api/ps does not list the model),
    C(vram_fraction) (0 to 1, two decimals), C(processor) (as C(ollama ps) says), C(size) and
    C(size_vram) in bytes.
  type: dict
"""


def _processor(size: int, vram: int) -> str:
    if vram == 0:
        return "100% CPU"
    if vram == size:
        return "100% GPU"
    if vram > size or size == 0:
        return "Unknown"
    cpu = round((size - vram) / size * 100)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def ollama_placement(ps: dict, model: str) -> dict:
    entries = (ps or {}).get("models") or []
    entry = next((e for e in entries if model in (e.get("name"), e.get("model"))), None)
    if entry is None:
        return {"accelerated": None, "vram_fraction": None, "processor": "not listed by /api/ps",
                "size": None, "size_vram": None}
    size, vram = int(entry.get("size") or 0), int(entry.get("size_vram") or 0)
    fraction = round(min(vram / size, 1.0), 2) if size else 0.0
    return {"accelerated": vram > 0, "vram_fraction": fraction, "processor": _processor(size, vram),
            "size": size, "size_vram": vram}


def offload_on_cpu(offload: dict) -> list:
    """The models measured with nothing in VRAM (accelerated false; null means not measured), in order."""
    return [name for name, found in (offload or {}).items() if found.get("accelerated") is False]


class FilterModule:
    def filters(self) -> dict:
        return {"ollama_placement": ollama_placement, "offload_on_cpu": offload_on_cpu}
