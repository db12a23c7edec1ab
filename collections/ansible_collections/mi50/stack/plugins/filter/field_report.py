# -*- coding: utf-8 -*-
# mi50-llm-stack: replay a field report (mi50.stack.field_report) offline: the
# tool outputs it holds go through the same parsers and decisions gpu_backend
# and diagnose use on the box. files/field_report/field_report.py is the CLI.

from __future__ import annotations

import json
import re

from ansible_collections.mi50.stack.plugins.filter.driver import rocm_driver_veto
from ansible_collections.mi50.stack.plugins.filter.probes import TIERS, gpu_probes, gpu_tier_choice, rocm_release
from ansible_collections.mi50.stack.plugins.modules.pci_gpus import AMD_TARGETS, VENDORS

DOCUMENTATION = r"""
---
name: field_report_tier
short_description: Replay a field report - the tier gpu_backend would record, and diagnose's inputs
description:
  - C(field_report_item) returns one item of a report by its id (or by its URL for HTTP items), or an empty dict.
  - C(field_report_probes) judges the report's C(rocminfo), C(vulkaninfo --summary) and C(clinfo --raw) outputs
    as gpu_backend does (C(gpu_probes), then C(rocm_driver_veto) with the recorded C(rocm.fact)).
  - C(field_report_tier) returns what C(gpu_tier_choice) decides from them - C({fact, error, warnings}) - with the
    tier order and switches the report's context recorded from the inventory, unless given.
  - C(field_report_state) rebuilds the state the diagnose role gathers, for C(diagnose_findings).
  - C(field_report_facts) returns the local facts the report holds, parsed.
positional: _input
options:
  _input:
    description: The report (the C(report) the module returned, or C(report.json) of the archive).
    type: dict
    required: true
  order:
    description: The tier order (default - the report's context, else the recorded fact's, else rocm, vulkan, opencl).
    type: list
    elements: str
  accept_software:
    description: Let software devices pass (the test-only switch; default - as the report's context says).
    type: bool
"""

EXAMPLES = r"""
- name: Say which tier a report's outputs choose
  ansible.builtin.debug:
    msg: "{{ (lookup('file', 'report.json') | from_json | mi50.stack.field_report_tier).fact.tier }}"
"""

RETURN = r"""
_value:
  description: The item, probes, choice, state or facts (see the description).
  type: raw
"""

DEFAULT_ORDER = list(TIERS)
# The listing gpu_backend and diagnose judge each tier by, as the report names it.
PROBE_ITEMS = {"rocm": "rocminfo", "vulkan": "vulkaninfo", "opencl": "clinfo_raw"}


def field_report_item(report: dict, key: str) -> dict:
    for item in report.get("items") or []:
        if item.get("id") == key or (key.startswith("http") and item.get("url") == key):
            return item
    return {}


def field_report_facts(report: dict) -> dict:
    facts = {}
    for item in report.get("items") or []:
        if item.get("id", "").startswith("fact:") and item.get("rc") == 0:
            try:
                facts[item["id"][5:]] = json.loads(item.get("stdout") or "{}")
            except ValueError:
                facts[item["id"][5:]] = {}
    return facts


def _context(report: dict) -> dict:
    return report.get("context") or {}


def _order(report: dict, order) -> list:
    if order:
        return list(order)
    return list(_context(report).get("tier_order") or field_report_facts(report).get("gpu_backend", {}).get("order")
                or DEFAULT_ORDER)


def _results(report: dict, order: list) -> list:
    """The probe commands' results, shaped as the registered loop results gpu_probes reads."""
    results = []
    for tier in order:
        item = field_report_item(report, PROBE_ITEMS.get(tier, ""))
        if not item:
            results.append({"item": tier, "skipped": True})
        else:
            results.append({"item": tier, "rc": item.get("rc"), "stdout": item.get("stdout", ""),
                            "stderr": item.get("stderr", "")})
    return results


def field_report_probes(report: dict, order=None, accept_software=None, veto: bool = True) -> dict:
    order = _order(report, order)
    context = _context(report)
    accept = bool(context.get("accept_software_devices")) if accept_software is None else bool(accept_software)
    release = rocm_release(field_report_item(report, "rocm_version").get("stdout", "")) if "rocm" in order else ""
    probes = gpu_probes(_results(report, order), accept_software=accept, rocm_release=release or None,
                        timeout=context.get("probe_timeout"))
    if veto:
        kernel = field_report_item(report, "kernel_release").get("stdout", "").strip()
        probes = rocm_driver_veto(probes, field_report_facts(report).get("rocm"), kernel)
    return probes


def field_report_tier(report: dict, order=None, accept_software=None, force=None, force_unchecked=None,
                      allow_cpu=None) -> dict:
    context = _context(report)
    order = _order(report, order)
    return gpu_tier_choice(
        field_report_probes(report, order, accept_software),
        order,
        force=context.get("force_tier", "") if force is None else force,
        force_unchecked=bool(context.get("force_unchecked")) if force_unchecked is None else force_unchecked,
        allow_cpu=bool(context.get("allow_cpu")) if allow_cpu is None else allow_cpu)


# --------------------------------------------------------------------------- diagnose's inputs

def _pci_gpus(text: str) -> list:
    """The module's sysfs listing as mi50.stack.pci_gpus returns it."""
    gpus = []
    for line in text.splitlines():
        match = re.match(r"^(\S+) class=(\S*) vendor=(\S*) device=(\S*) driver=(\S+)$", line.strip())
        if not match:
            continue
        address, pci_class, vendor, device, driver = match.groups()
        name, target = AMD_TARGETS.get(device, (None, None)) if vendor == "0x1002" else (None, None)
        gpus.append({"address": address, "vendor_id": vendor, "device_id": device,
                     "pci_id": f"{vendor[2:]}:{device[2:]}", "class": pci_class,
                     "driver": None if driver == "-" else driver, "vendor": VENDORS.get(vendor, "unknown"),
                     "name": name, "gfx_target": target})
    return gpus


def _properties(text: str) -> dict:
    return dict(line.split("=", 1) for line in (text or "").splitlines() if "=" in line)


def _http(report: dict, url: str, asked: bool) -> dict:
    """status and msg as diagnose registers them (nothing when it would not have asked)."""
    if not asked or not url:
        return {"status": None, "msg": ""}
    item = field_report_item(report, url)
    if not item:
        return {"status": None, "msg": ""}
    status = item.get("status")
    msg = re.sub(r"^Request failed: <urlopen error (.*)>$", r"\1", item.get("stderr", "")).strip()[:200]
    return {"status": status, "msg": "" if status == 200 else msg}


def field_report_state(report: dict, accept_software=None) -> dict:
    """What roles/diagnose/tasks/report.yml puts together, rebuilt from the report's items."""
    context = _context(report)
    facts = field_report_facts(report)
    gpu_fact = facts.get("gpu_backend") or {}
    order = list(gpu_fact.get("order") or context.get("diagnose_tier_order") or DEFAULT_ORDER)
    module = context.get("kernel_module", "amdgpu")
    sysfs = context.get("sysfs_root", "/sys")
    item = lambda key: field_report_item(report, key)  # noqa: E731
    module_state = item("module_state")
    initstate = re.search(r"initstate=(\S*)", module_state.get("stdout", ""))
    nodes = item("device_nodes").get("stdout", "")
    dkms = item("dkms_status")
    accept = (context.get("diagnose_accept_software_devices", context.get("accept_software_devices"))
              if accept_software is None else accept_software)

    def service(fact: dict, name: str) -> dict:
        unit = _properties(item(f"unit:{fact.get('service', '')}").get("stdout", "")) if fact.get("service") else {}
        return {"fact": fact, "unit": unit, "active": unit.get("ActiveState", "") == "active"}

    engine = service(facts.get("inference") or {}, "engine")
    health = _http(report, engine["fact"].get("health_url", ""), engine["active"])
    models_item = item(engine["fact"].get("base_url", "") + "/models") if health["status"] == 200 else {}
    served = None
    if models_item.get("status") == 200:
        try:
            served = [m["id"] for m in json.loads(models_item.get("stdout") or "{}")["data"]]
        except (ValueError, KeyError, TypeError):
            served = None
    router = service(facts.get("llm_router") or {}, "router")
    check = item("router_check_config")
    errors = [line for line in check.get("stderr", "").splitlines() if re.match("error:", line)]
    return {
        "kernel": item("kernel_release").get("stdout", "").strip(),
        "pci_path": f"{sysfs}/bus/pci/devices",
        "gpus": [g for g in _pci_gpus(item("pci_gpus").get("stdout", "")) if g["vendor_id"] == "0x1002"],
        "module": {"name": module, "path": f"{sysfs}/module/{module}",
                   "loaded": module_state.get("rc") == 0 and (initstate.group(1) if initstate else "") in ("", "live"),
                   "initstate": initstate.group(1) if initstate else ""},
        "headers": item("kernel_headers").get("rc") == 0,
        "nodes": {"kfd": bool(re.search(r"\s/dev/kfd$", nodes, re.M)),
                  "render": sorted(f"/dev/dri/{m}" for m in re.findall(r"\b(renderD\d+)$", nodes, re.M))},
        "dkms": {"available": dkms.get("rc") == 0, "status": dkms.get("stdout", "") if dkms.get("rc") == 0 else ""},
        "reboot_pending": item("reboot_required").get("stdout", "").split(),
        "cmdline": item("kernel_cmdline").get("stdout", "").strip(),
        "modprobe_rules": [dict(zip(("file", "line"), line.split(": ", 1)))
                           for line in item("modprobe_rules").get("stdout", "").splitlines() if ": " in line],
        "kernel_log": [line.strip() for line in (item("kernel_log").get("stdout") or item("dmesg").get("stdout", "")
                                                 ).splitlines() if line.strip()],
        "module_load": (facts.get("rocm") or {}).get("module_load") or {},
        "dpkg_audit": item("dpkg_audit").get("stdout", ""),
        "held": item("apt_holds").get("stdout", "").split(),
        "gpu_fact": gpu_fact,
        "order": order,
        "probes": field_report_probes(report, order, bool(accept), veto=False),
        "engine": {"fact": engine["fact"], "unit": engine["unit"], "health": health, "models": {"served": served}},
        "router": {"fact": router["fact"], "unit": router["unit"],
                   "ready": _http(report, router["fact"].get("url", "") + "/readyz" if router["fact"].get("url") else "",
                                  router["active"]),
                   "config": {"checked": bool(check), "rc": check.get("rc"), "msg": (errors[0] if errors else "")[:300]}},
    }


class FilterModule:
    def filters(self) -> dict:
        return {
            "field_report_item": field_report_item,
            "field_report_facts": field_report_facts,
            "field_report_probes": field_report_probes,
            "field_report_tier": field_report_tier,
            "field_report_state": field_report_state,
        }
