# -*- coding: utf-8 -*-
# mi50-llm-stack: which inference engine can use which GPU runtime tier.
# The knowledge is data (../../data/engine_matrix.yml); this file only reads it.

from __future__ import annotations

DOCUMENTATION = r"""
---
name: engine_compat
short_description: What an inference engine does on a GPU runtime tier (the engine matrix)
description:
  - Looks an engine, its version, a runtime tier and a GPU target up in the project's
    engine compatibility matrix (C(data/engine_matrix.yml) in this collection) and says
    whether the engine serves on the GPU there (C(gpu)), only on the CPU (C(cpu)) or not
    at all (C(none)), why, and what to change. C(unknown) when no row matches.
  - The companion filter C(engine_tier_check) applies preflight's policy to the tier that
    will be tried first and to the later fallback tiers.
positional: _input
options:
  _input:
    description: The engine, C(ollama), C(llamacpp) or C(vllm).
    type: str
    required: true
  tier:
    description: The runtime tier, C(rocm), C(vulkan), C(opencl) or C(cpu).
    type: str
    required: true
  version:
    description: The engine version (Ollama's release number); empty when it does not matter.
    type: str
    default: ""
  gfx_target:
    description: The GPU's LLVM target (C(gfx906) for the MI50); empty when unknown.
    type: str
    default: ""
  options:
    description: >-
      Engine facts the matrix needs: C(gpu_targets) (llama.cpp's HIP targets, a list or a
      comma/semicolon separated string), C(gfx906_build) (vLLM image or wheel built for gfx906).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Check the recorded tier
  ansible.builtin.set_fact:
    _compat: "{{ 'ollama' | mi50.stack.engine_compat(tier='rocm', version='0.12.3', gfx_target='gfx906') }}"
"""

RETURN = r"""
_value:
  description: >-
    engine, version, tier, gfx_target, result (gpu, cpu, none or unknown), accelerated (bool),
    serves (bool), why, fix, message (one sentence, with the fix when there is one).
  type: dict
"""

import re
from functools import lru_cache
from pathlib import Path

import yaml

MATRIX = Path(__file__).resolve().parents[2] / "data" / "engine_matrix.yml"
TIER_NAMES = {"rocm": "ROCm", "vulkan": "Vulkan", "opencl": "OpenCL", "cpu": "cpu"}


class MatrixError(ValueError):
    """The matrix file or a lookup is malformed."""


@lru_cache(maxsize=None)
def load_matrix(path: str = str(MATRIX)) -> dict:
    with open(path, encoding="utf-8") as handle:
        matrix = yaml.safe_load(handle)
    validate(matrix)
    return matrix


def validate(matrix: dict) -> None:
    known = {"engine", "tier", "targets", "min_version", "max_version", "option_true",
             "option_lists_target", "result", "why", "fix", "source"}
    for index, row in enumerate(matrix["rows"]):
        where = f"engine matrix row {index + 1}"
        if set(row) - known:
            raise MatrixError(f"{where}: unknown keys {sorted(set(row) - known)}")
        if row.get("engine") not in matrix["engines"]:
            raise MatrixError(f"{where}: unknown engine {row.get('engine')!r}")
        if row.get("tier") not in matrix["tiers"]:
            raise MatrixError(f"{where}: unknown tier {row.get('tier')!r}")
        if row.get("result") not in ("gpu", "cpu", "none"):
            raise MatrixError(f"{where}: result must be gpu, cpu or none")
        if not row.get("why"):
            raise MatrixError(f"{where}: says no why")
        if ("min_version" in row or "max_version" in row) and not row.get("source"):
            raise MatrixError(f"{where}: a version floor or ceiling needs its source")
        if row["result"] != "gpu" and row["tier"] != "cpu" and not row.get("fix"):
            raise MatrixError(f"{where}: a {row['result']} result needs a fix")


def parse_version(text: str) -> tuple[int, ...]:
    """'0.12.3' -> (0, 12, 3); a leading v and a pre-release suffix ('-rc1') are ignored."""
    match = re.match(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text).strip())
    if not match:
        raise MatrixError(f"cannot read the version {text!r}")
    return tuple(int(part or 0) for part in match.groups())


def _targets(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [t.strip() for t in re.split(r"[,;\s]+", value) if t.strip()]
    return [str(t).strip() for t in value]


def _matches(row: dict, tier: str, version: str, target: str, options: dict) -> bool:
    if row["tier"] != tier:
        return False
    if "targets" in row and target not in row["targets"]:
        return False
    if "min_version" in row or "max_version" in row:
        if not version:
            return False
        have = parse_version(version)
        if "min_version" in row and have < parse_version(row["min_version"]):
            return False
        if "max_version" in row and have > parse_version(row["max_version"]):
            return False
    if "option_true" in row and options.get(row["option_true"]) is not True:
        return False
    if "option_lists_target" in row:
        listed = options.get(row["option_lists_target"])
        if listed is not None and target not in _targets(listed):
            return False
    return True


def engine_compat(engine: str, tier: str, version: str = "", gfx_target: str = "",
                  options: dict | None = None, matrix: dict | None = None) -> dict:
    matrix = matrix or load_matrix()
    if engine not in matrix["engines"]:
        raise MatrixError(f"unknown inference engine {engine!r} (known: {', '.join(matrix['engines'])})")
    if tier not in matrix["tiers"]:
        raise MatrixError(f"unknown tier {tier!r} (known: {', '.join(matrix['tiers'])})")
    version = str(version or "")
    target = str(gfx_target or "")
    options = dict(options or {})
    label = matrix["engines"][engine]["label"]
    who = f"{label} {version}".strip()
    card = target or "this GPU"
    fields = {"version": version, "target": card, "tier": TIER_NAMES[tier]}

    row = next((r for r in matrix["rows"] if r["engine"] == engine and _matches(r, tier, version, target, options)),
               None)
    result = {"engine": engine, "version": version, "tier": tier, "gfx_target": target,
              "result": "unknown", "accelerated": False, "serves": True, "why": "", "fix": ""}
    if row is None:
        result["message"] = (f"The engine matrix has no row for {who} on the {TIER_NAMES[tier]} tier with "
                             f"{card}: not checked.")
        return result
    why = row["why"].format(**fields)
    fix = row.get("fix", "").format(**fields)
    result.update(result=row["result"], accelerated=row["result"] == "gpu", serves=row["result"] != "none",
                  why=why, fix=fix)
    if row["result"] == "none":
        message = f"{who} cannot serve on the {TIER_NAMES[tier]} tier with {card}: {why}."
    elif tier == "cpu":
        message = f"{who} serves on the CPU: {why}."
    elif row["result"] == "gpu":
        message = f"{who} can use {card} on the {TIER_NAMES[tier]} tier: {why}."
    elif row["result"] == "cpu":
        message = f"{who} cannot use {card} on the {TIER_NAMES[tier]} tier and would serve on the CPU only: {why}."
    result["message"] = f"{message} {fix}".strip()
    return result


def engine_tier_check(engine: str, tiers: list, forced_tier: str = "", version: str = "",
                      version_by_tier: dict | None = None, gfx_targets: list | None = None,
                      options: dict | None = None, allow_cpu: bool = False,
                      matrix: dict | None = None) -> dict:
    """Preflight's policy over the matrix.

    The tier tried first (the forced tier, else the first of `tiers`) must let
    the engine serve on the GPU: otherwise it is a problem, unless CPU inference
    is allowed and the engine still serves. Later tiers, the fallbacks
    gpu_backend may move to, only give warnings. Each GPU target is checked.
    """
    version_by_tier = dict(version_by_tier or {})
    order = [forced_tier] if forced_tier else list(tiers or [])
    out: dict = {"first_tier": order[0] if order else "", "problems": [], "warnings": [], "checks": []}
    if not order:
        out["warnings"].append("No GPU tier is configured (gpu_tiers is empty): the engine was not checked.")
        return out
    for target in (gfx_targets or [""]):
        for position, tier in enumerate(order):
            tier_version = str(version or version_by_tier.get(tier, "") or "")
            check = engine_compat(engine, tier, tier_version, target, options, matrix)
            out["checks"].append(check)
            if check["result"] in ("gpu", "unknown") or (tier == "cpu" and check["serves"]):
                if check["result"] == "unknown":
                    out["warnings"].append(check["message"])
                continue
            if position == 0:
                where = "forced by gpu_backend_force_tier" if forced_tier else "first in gpu_tiers"
                text = f"Tier {tier} ({where}): {check['message']}"
                if allow_cpu and check["serves"]:
                    out["warnings"].append(text + " CPU inference is allowed, so the run goes on.")
                else:
                    out["problems"].append(text)
            else:
                out["warnings"].append(f"If gpu_backend falls back to {tier}: {check['message']}")
    return out


def matrix_markdown(matrix: dict | None = None) -> str:
    """The matrix as the README's table (tests check that the README shows this)."""
    matrix = matrix or load_matrix()
    names = {"gpu": "**GPU**", "cpu": "CPU only", "none": "no"}
    rows = ["| engine | tier | GPU target | version | engine options | runs | why |", "|---|---|---|---|---|---|---|"]
    for row in matrix["rows"]:
        versions = ""
        if "min_version" in row and "max_version" in row:
            versions = f"{row['min_version']} to {row['max_version']}"
        elif "min_version" in row:
            versions = f"≥ {row['min_version']}"
        elif "max_version" in row:
            versions = f"≤ {row['max_version']}"
        option = ""
        if "option_true" in row:
            option = f"`{row['option_true']}`"
        elif "option_lists_target" in row:
            option = f"`{row['option_lists_target']}` lists the target, or is not given"
        why = row["why"].format(version="the version", target="the target", tier=TIER_NAMES[row["tier"]])
        rows.append(f"| {matrix['engines'][row['engine']]['label']} | {row['tier']} | "
                    f"{', '.join(row.get('targets', [])) or 'any'} | {versions or 'any'} | {option} | "
                    f"{names[row['result']]} | {why} |")
    return "\n".join(rows) + "\n"


class FilterModule:
    def filters(self) -> dict:
        return {"engine_compat": engine_compat, "engine_tier_check": engine_tier_check}
