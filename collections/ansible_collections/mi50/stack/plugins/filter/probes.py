# -*- coding: utf-8 -*-
# mi50-llm-stack: read the GPU runtimes' own device listings (rocminfo,
# vulkaninfo --summary, clinfo --raw) and decide which runtime tier serves the
# host. Every parser and every decision the gpu_backend role takes lives here,
# so that tests/unit/test_probes.py can check them on real captured outputs.

from __future__ import annotations

import re

DOCUMENTATION = r"""
---
name: gpu_probes
short_description: Parse GPU runtime probes and choose a runtime tier
description:
  - C(rocminfo), C(vulkaninfo_summary) and C(clinfo_raw) turn a tool's output into
    C({version, devices, message}); every device has C(name), C(type), C(software)
    and C(gfx_target) (null where the tool does not say).
  - C(gpu_probes) turns the registered results of the probe commands (one per tier,
    run under C(timeout)) into a dict of tier -> C(ok, reason, devices, device, version, tool).
  - C(gpu_tier_choice) picks the tier and returns C({fact, error, warnings}), where
    C(fact) is the content of C(/etc/ansible/facts.d/gpu_backend.fact) (docs/architecture.md).
  - C(gpu_tier_summary) returns the lines the role prints.
positional: _input
options:
  _input:
    description: Tool output (parsers), a list of registered command results (gpu_probes),
      the probes dict (gpu_tier_choice) or the fact (gpu_tier_summary).
    type: raw
    required: true
"""

TIERS = ("rocm", "vulkan", "opencl")
TOOLS = {"rocm": "rocminfo", "vulkan": "vulkaninfo", "opencl": "clinfo"}

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# RADV names a device by its chip ("AMD Radeon VII (RADV VEGA20)"); the LLVM
# targets of the Vega/CDNA chips this project cares about, and of NAVI22, the chip
# of the one published discrete-GPU `vulkaninfo --summary` in the test data (Mesa's
# ac_get_llvm_processor_name: CHIP_NAVI22 -> "gfx1031").
_RADV_TARGETS = {"VEGA10": "gfx900", "VEGA12": "gfx904", "VEGA20": "gfx906",
                 "ARCTURUS": "gfx908", "ALDEBARAN": "gfx90a", "NAVI22": "gfx1031"}

# Drivers and platforms that run on the CPU although they present a GPU API.
_SOFTWARE_NAMES = re.compile(r"llvmpipe|lavapipe|swiftshader|softpipe|portable computing language|\bpocl\b", re.I)


def _clean(text: object) -> str:
    return _ANSI.sub("", text if isinstance(text, str) else "" if text is None else str(text))


def _version(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


def _device(name: str, kind: str, software: bool, gfx_target: str | None, **extra) -> dict:
    return dict({"name": name, "type": kind, "software": software, "gfx_target": gfx_target}, **extra)


# --------------------------------------------------------------------------- rocminfo

def rocminfo(text: str) -> dict:
    """Agents listed by rocminfo. HSA CPU agents are kept (type cpu); GPU agents
    carry their LLVM target from the agent name or its first ISA."""
    text = _clean(text)
    agents: list[dict] = []
    current: dict | None = None
    for line in text.splitlines():
        if re.match(r"^Agent \d+\s*$", line):
            current = {}
            agents.append(current)
            continue
        if current is None:
            continue
        top = re.match(r"^  (Name|Marketing Name|Vendor Name|Device Type|Chip ID):\s*(.*?)\s*$", line)
        if top:
            current.setdefault(top.group(1), top.group(2))
            continue
        isa = re.match(r"^\s+Name:\s+amdgcn-amd-amdhsa--(gfx[0-9a-z]+)", line)
        if isa:
            current.setdefault("isa", isa.group(1))
    devices = []
    for agent in agents:
        kind = agent.get("Device Type", "").strip().lower() or "unknown"
        name = agent.get("Name", "")
        target = name if re.fullmatch(r"gfx[0-9a-z]+", name) else agent.get("isa")
        devices.append(_device(agent.get("Marketing Name") or name or "unknown agent", kind,
                               kind != "gpu", target if kind == "gpu" else None,
                               vendor=agent.get("Vendor Name") or None))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return {
        "version": _version(text, r"(?m)^Runtime Version:\s*(\S+)"),
        "devices": devices,
        "message": lines[0] if lines and not agents else "",
    }


# --------------------------------------------------------------------------- vulkaninfo

def vulkaninfo_summary(text: str) -> dict:
    """Devices listed by `vulkaninfo --summary` (sections GPU0:, GPU1:, ...)."""
    text = _clean(text)
    raw: list[dict] = []
    in_devices = False
    for line in text.splitlines():
        if line.startswith("Devices:"):
            in_devices = True
            continue
        if not in_devices:
            continue
        if re.match(r"^GPU\d+:\s*$", line):
            raw.append({})
            continue
        field = re.match(r"^\s+(\w+)\s*=\s*(.*?)\s*$", line)
        if field and raw:
            raw[-1][field.group(1)] = field.group(2)
    devices = []
    for dev in raw:
        kind = dev.get("deviceType", "").replace("PHYSICAL_DEVICE_TYPE_", "").lower() or "unknown"
        name = dev.get("deviceName", "unknown device")
        chip = _version(name, r"\(RADV ([A-Z0-9_]+)\)")
        software = kind == "cpu" or bool(_SOFTWARE_NAMES.search(name + " " + dev.get("driverName", "")))
        devices.append(_device(name, kind, software, _RADV_TARGETS.get(chip or ""),
                               driver=dev.get("driverName") or None, api_version=dev.get("apiVersion") or None))
    return {
        "version": _version(text, r"(?m)^Vulkan Instance Version:\s*(\S+)"),
        "devices": devices,
        "message": "",
    }


# --------------------------------------------------------------------------- clinfo

def _opencl_listing(platforms: list[dict], devices: list[tuple[int, dict]]) -> dict:
    """The parsed listing from platforms ({name, version, vendor}) and devices
    (platform number, properties under their CL_* names), whichever clinfo printed them."""
    result = []
    for number, dev in devices:
        platform = platforms[number]
        types = re.findall(r"CL_DEVICE_TYPE_(\w+)", dev.get("CL_DEVICE_TYPE", ""))
        kind = next((t.lower() for t in types if t != "DEFAULT"), "unknown")
        name = dev.get("CL_DEVICE_BOARD_NAME_AMD") or dev.get("CL_DEVICE_NAME", "unknown device")
        software = kind == "cpu" or bool(_SOFTWARE_NAMES.search(platform["name"] + " " + name))
        result.append(_device(name, kind, software, _version(dev.get("CL_DEVICE_NAME", ""), r"\b(gfx[0-9a-z]+)"),
                              platform=platform["name"],
                              version=_version(dev.get("CL_DEVICE_VERSION", ""), r"OpenCL (\d+\.\d+)")))
    return {
        "version": None,
        "platforms": [dict(p, version=_version(p["version"], r"OpenCL (\d+\.\d+)")) for p in platforms],
        "devices": result,
        "message": "",
    }


# AMD's clinfo labels (ROCm/clr opencl/tools/clinfo/clinfo.cpp) of the properties read here.
_AMD_CLINFO_KEYS = {"Platform Name": "CL_PLATFORM_NAME", "Platform Version": "CL_PLATFORM_VERSION",
                    "Platform Vendor": "CL_PLATFORM_VENDOR", "Device Type": "CL_DEVICE_TYPE",
                    "Board name": "CL_DEVICE_BOARD_NAME_AMD", "Name": "CL_DEVICE_NAME",
                    "Version": "CL_DEVICE_VERSION"}


def _clinfo_amd(text: str) -> dict:
    """Platforms and devices listed by AMD's own clinfo (ROCm's /opt/rocm/bin/clinfo),
    which ignores --raw. A header block per platform (`  Platform Profile:` first),
    then each platform again as `  Platform Name:` with its devices, each opening
    with `  Device Type:`. That line may carry no type: the tool prints only the
    exact single types, without a newline otherwise."""
    header: list[dict] = []
    platforms: list[dict] = []
    devices: list[tuple[int, dict]] = []
    for line in text.splitlines():
        field = re.match(r"^  (\S[^:\t]*?):\s*(.*?)\s*$", line)
        key = _AMD_CLINFO_KEYS.get(field.group(1)) if field else None
        if field and field.group(1) == "Platform Profile" and not platforms:
            header.append({})
        elif key == "CL_PLATFORM_NAME" and (platforms or not header or key in header[-1]):
            # The header lists every platform by name once; a second name opens its devices.
            props = header[len(platforms)] if len(platforms) < len(header) else {}
            platforms.append({"name": field.group(2), "version": props.get("CL_PLATFORM_VERSION", ""),
                              "vendor": props.get("CL_PLATFORM_VENDOR", "")})
        elif key and key.startswith("CL_PLATFORM_") and header and not platforms:
            header[-1][key] = field.group(2)
        elif key == "CL_DEVICE_TYPE" and platforms:
            value = field.group(2).replace("ACCRLERATOR", "ACCELERATOR")  # the tool's own typo
            devices.append((len(platforms) - 1, {key: value}))
        elif key and devices:
            devices[-1][1].setdefault(key, field.group(2))
    return _opencl_listing(platforms, devices)


def clinfo_raw(text: str) -> dict:
    """Platforms and devices listed by `clinfo --raw`.

    The header lists each platform's properties in blocks; then each platform
    opens with `[SUFFIX/*] CL_PLATFORM_NAME name` followed by its devices as
    `[SUFFIX/n] CL_DEVICE_...`. Suffixes are not unique (rusticl and Clover are
    both MESA), so devices belong to the platform opened last.

    AMD's own clinfo ignores --raw and prints its own layout (`Number of
    platforms:` first); a host that has only that tool is read as well."""
    text = _clean(text)
    if re.search(r"(?m)^Number of platforms:", text):
        return _clinfo_amd(text)
    header: list[dict] = []
    platforms: list[dict] = []
    devices: dict[tuple[int, str], dict] = {}
    for line in text.splitlines():
        prefixed = re.match(r"^\[([^/\]]+)/([^\]]+)\]\s+(#?\w+)\s*(.*?)\s*$", line)
        if prefixed:
            _suffix, index, key, value = prefixed.groups()
            if index == "*" and key == "CL_PLATFORM_NAME":
                number = len(platforms)
                props = header[number] if number < len(header) else {}
                platforms.append({"name": value, "version": props.get("CL_PLATFORM_VERSION", ""),
                                  "vendor": props.get("CL_PLATFORM_VENDOR", "")})
            elif index != "*" and platforms and key.startswith("CL_"):
                devices.setdefault((len(platforms) - 1, index), {})[key] = value
            continue
        plain = re.match(r"^  (CL_PLATFORM_\w+)\s*(.*?)\s*$", line)
        if plain and not platforms:
            if plain.group(1) == "CL_PLATFORM_NAME" or not header:
                header.append({})
            header[-1][plain.group(1)] = plain.group(2)
    return _opencl_listing(platforms, [(number, dev) for (number, _index), dev in devices.items()])


PARSERS = {"rocm": rocminfo, "vulkan": vulkaninfo_summary, "opencl": clinfo_raw}


# --------------------------------------------------------------------------- probes

def _first_line(*texts: str) -> str:
    """The first line that says something, from the first text that has one."""
    for text in texts:
        for line in _clean(text).splitlines():
            # vulkaninfo's complaints about a missing display say nothing about the device.
            if line.strip() and not re.search(r"XDG_RUNTIME_DIR|DISPLAY' environment", line):
                return line.strip()
    return ""


def _describe(device: dict) -> str:
    where = f", {device['platform']}" if device.get("platform") else ""
    return f"{device['name']} ({device['type']}{where})"


def describe_runtime_device(device: dict) -> str:
    """One device of a parsed listing for humans: `name (type, platform, gfx906, software)`."""
    details = [device.get("type"), device.get("platform"), device.get("gfx_target"),
               "software" if device.get("software") else None]
    return f"{device.get('name')} ({', '.join(d for d in details if d)})"


def gpu_probe(result: dict, tier: str | None = None, accept_software: bool = False,
              rocm_release: str | None = None, timeout: int | None = None) -> dict:
    """Judge one tier from the registered result of its probe command.

    The command runs under coreutils `timeout`, so rc 124/137 mean it hung and
    rc 126/127 that the tool is missing. A GPU device passes; a software device
    (llvmpipe/lavapipe, PoCL, any CPU-type device) passes only with
    accept_software, which is meant for tests. ROCm's HSA CPU agents never pass:
    rocminfo lists the host CPU on every machine."""
    tier = tier or result.get("item")
    if tier not in TIERS:
        raise ValueError(f"unknown GPU tier {tier!r} (expected one of {', '.join(TIERS)})")
    tool = TOOLS[tier]
    probe = {"tool": tool, "ok": False, "reason": "", "devices": [], "device": None, "version": None}
    if tier == "rocm" and rocm_release:
        probe["version"] = rocm_release
    rc = result.get("rc")
    if result.get("skipped"):
        probe["reason"] = f"{tool} was not run"
        return probe
    if rc in (126, 127) or (rc is None and "No such file" in str(result.get("msg", ""))):
        probe["reason"] = f"{tool} not installed"
        return probe
    if rc in (124, 137):
        limit = f" within {timeout} s" if timeout else ""
        probe["reason"] = f"{tool} did not answer{limit} (timed out)"
        return probe
    parsed = PARSERS[tier](result.get("stdout", ""))
    probe["devices"] = parsed["devices"]
    if tier == "vulkan":
        probe["version"] = parsed["version"]
    gpus = [d for d in parsed["devices"] if not d["software"] and d["type"] in ("gpu", "discrete_gpu", "integrated_gpu", "virtual_gpu")]
    software = [d for d in parsed["devices"] if d["software"] and not (tier == "rocm" and d["type"] == "cpu")]
    chosen = gpus[0] if gpus else software[0] if software and accept_software else None
    if tier == "opencl":
        owner = [p for p in parsed["platforms"] if chosen and p["name"] == chosen.get("platform")]
        versions = [p["version"] for p in owner or parsed["platforms"] if p["version"]]
        probe["version"] = versions[0] if versions else None
    if chosen:
        probe.update(ok=True, device={k: chosen.get(k) for k in ("name", "type", "gfx_target", "software")})
        return probe
    noun = {"rocm": "GPU agent", "vulkan": "GPU device", "opencl": "GPU device"}[tier]
    if software:
        probe["reason"] = (f"{tool} lists no {noun}, only software devices: "
                           + ", ".join(_describe(d) for d in software))
    elif tier == "opencl" and not parsed["platforms"]:
        probe["reason"] = f"{tool} lists no OpenCL platform (no ICD file in /etc/OpenCL/vendors)"
    elif parsed["devices"]:
        probe["reason"] = f"{tool} lists no {noun}, only: " + ", ".join(_describe(d) for d in parsed["devices"])
    elif tier == "opencl":
        probe["reason"] = (f"{tool} lists no device on its platforms ("
                           + ", ".join(p["name"] for p in parsed["platforms"]) + ")")
    else:
        detail = _first_line(result.get("stdout", ""), result.get("stderr", ""))
        probe["reason"] = f"{tool} lists no {noun}" + (f": {detail}" if detail else f" (exit code {rc})")
    return probe


def gpu_probes(results: list, accept_software: bool = False, rocm_release: str | None = None,
               timeout: int | None = None) -> dict:
    """{tier: probe} from the results of a probe command looped over the tiers."""
    return {r["item"]: gpu_probe(r, r["item"], accept_software, rocm_release, timeout) for r in results}


def rocm_release(text: str) -> str:
    """ROCm's release from /opt/rocm/.info/version ("6.4.2-120" -> "6.4.2"), or ""."""
    return _version(_clean(text), r"^\s*(\d+\.\d+(?:\.\d+)?)") or ""


# --------------------------------------------------------------------------- decision

def gpu_tier_choice(probes: dict, order: list, force: str = "", force_unchecked: bool = False,
                    allow_cpu: bool = False) -> dict:
    """Pick the first tier in `order` whose probe passed, or the forced one.

    Returns {fact, error, warnings}. `fact` follows docs/architecture.md; when
    `error` is set no tier may be recorded and the role fails."""
    warnings: list[str] = []
    available = [t for t in list(order) + [t for t in probes if t not in order] if probes.get(t, {}).get("ok")]
    rejected = {t: probes[t]["reason"] if t in probes else "not probed" for t in order if not probes.get(t, {}).get("ok")}
    fact = {
        "schema": 1,
        "tier": None,
        "forced": bool(force),
        "order": list(order),
        "device": None,
        "versions": {t: p["version"] for t, p in probes.items() if p.get("version")},
        "available": available,
        "rejected": rejected,
        "probes": {t: {"ok": p["ok"], "reason": p["reason"], "version": p.get("version"),
                       "devices": [{k: d.get(k) for k in ("name", "type", "gfx_target", "software")} for d in p["devices"]]}
                   for t, p in probes.items()},
    }
    error = ""
    if force == "cpu":
        fact["tier"] = "cpu"
    elif force:
        probe = probes.get(force)
        if probe and probe["ok"]:
            fact.update(tier=force, device=probe["device"])
        elif force_unchecked:
            reason = probe["reason"] if probe else "not probed"
            fact["tier"] = force
            warnings.append(f"Tier {force} is forced although its probe failed ({reason}); "
                            f"nothing on this host showed that {force} can reach a GPU.")
        else:
            reason = probe["reason"] if probe else "not probed"
            error = (f"gpu_backend_force_tier is {force}, but its probe failed: {reason}. Fix the runtime, "
                     f"or set gpu_backend_force_unchecked: true to record {force} anyway.")
    elif available and any(t in order for t in available):
        tier = next(t for t in order if t in available)
        fact.update(tier=tier, device=probes[tier]["device"])
    elif allow_cpu:
        fact["tier"] = "cpu"
        warnings.append("No GPU runtime tier passed its probe; CPU inference selected (gpu_backend_allow_cpu).")
    else:
        error = ("No GPU runtime tier passed its probe (" + "; ".join(f"{t}: {r}" for t, r in rejected.items())
                 + "). Fix the runtime named first, or set gpu_backend_allow_cpu: true to serve on the CPU.")
    return {"fact": fact, "error": error, "warnings": warnings}


def gpu_tier_summary(fact: dict) -> list:
    """Human-readable lines: the chosen tier and device, then every rejection."""
    device = fact.get("device") or {}
    if fact.get("tier") == "cpu":
        chosen = "CPU inference (no GPU tier chosen)"
    elif device:
        details = ", ".join(x for x in (device.get("gfx_target"), "software device" if device.get("software") else "") if x)
        chosen = f"{fact['tier']} on {device['name']}" + (f" ({details})" if details else "")
    elif fact.get("tier"):
        chosen = f"{fact['tier']} (no device confirmed by its probe)"
    else:
        chosen = "none (no tier passed its probe)"
    lines = [f"Chosen tier: {chosen}" + (" [forced]" if fact.get("forced") else "")]
    for tier in fact.get("order", []):
        version = fact.get("versions", {}).get(tier)
        suffix = f" (version {version})" if version else ""
        if tier in fact.get("rejected", {}):
            lines.append(f"Rejected {tier}: {fact['rejected'][tier]}{suffix}")
        else:
            lines.append(f"Available {tier}{suffix}")
    return lines


class FilterModule:
    def filters(self) -> dict:
        return {
            "rocminfo": rocminfo,
            "vulkaninfo_summary": vulkaninfo_summary,
            "clinfo_raw": clinfo_raw,
            "gpu_probe": gpu_probe,
            "gpu_probes": gpu_probes,
            "rocm_release": rocm_release,
            "gpu_tier_choice": gpu_tier_choice,
            "gpu_tier_summary": gpu_tier_summary,
            "describe_runtime_device": describe_runtime_device,
        }
