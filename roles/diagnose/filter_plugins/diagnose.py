# -*- coding: utf-8 -*-
# mi50-llm-stack: turn what the diagnose role read on a host into findings
# (what is wrong, what repair.yml does about it, what to do by hand when it
# cannot), a one-line state per component, and a before -> after comparison.
# Pure functions over plain data, so tests/unit/test_diagnose.py checks them.

from __future__ import annotations

import re

DOCUMENTATION = r"""
---
name: diagnose_findings
short_description: Findings, state summary and before/after comparison of a diagnosis
description:
  - C(diagnose_findings) turns the state the diagnose role gathered into a list of
    findings C({id, area, severity, problem, action, manual}).
  - C(diagnose_summary) gives the state of the GPU tier, the engine and the router in one line each.
  - C(diagnose_compare) compares two diagnose reports (before and after a repair).
  - C(diagnose_lines) renders findings as the one-line-per-finding text the role prints.
  - C(diagnose_stages) says which stages a repair reruns for a report (C(auto)), or all of them.
positional: _input
options:
  _input:
    description: The gathered state (findings, summary), or a report (compare, lines).
    type: dict
    required: true
"""

AREAS = ("packages", "kernel", "runtime", "engine", "models", "router")

# What each finding means for someone reading the README's troubleshooting
# section: the ids are stable, the texts below are filled in from the host.
CATALOGUE = {
    "dpkg_interrupted": "an interrupted dpkg left packages unfinished: apt refuses to run until they are",
    "packages_broken": "dependencies are unmet (apt-get check): apt refuses to install anything until they are",
    "packages_held": "packages of the GPU stack are held back (apt-mark hold)",
    "gpu_missing": "the recorded tier used a GPU, but no AMD GPU is on the PCI bus any more",
    "module_not_loaded": "an AMD GPU is on the PCI bus but the amdgpu kernel module is not loaded",
    "module_key_rejected": "the kernel refused the amdgpu module's signature (Secure Boot: its MOK key is not enrolled)",
    "module_unknown_symbols": "the amdgpu module does not fit the running kernel (unknown or mismatched symbols)",
    "module_blacklisted": "the modprobe configuration or the kernel command line keeps amdgpu from loading",
    "module_nomodeset": "the kernel command line turns kernel modesetting off, so amdgpu refuses to load",
    "firmware_missing": "the kernel could not load the GPU's firmware files",
    "gpu_driver_unbound": "the amdgpu module is loaded but the card is not bound to it",
    "dkms_not_built": "DKMS has not built the amdgpu module for the running kernel",
    "device_nodes_missing": "the GPU's device nodes (/dev/kfd, /dev/dri/renderD*) are missing",
    "reboot_pending": "the amdgpu module changed since the last boot",
    "gpu_tier_missing": "no GPU tier is recorded (gpu_backend.fact is missing)",
    "tier_failing": "the recorded GPU tier fails its probe now",
    "fallback_lost": "a fallback tier that passed when the tier was recorded fails now",
    "tier_recovered": "a tier preferred over the recorded one passes its probe again",
    "tier_preferred_failing": "a tier preferred over the recorded one still fails its probe",
    "no_gpu": "no AMD GPU on the PCI bus and the cpu tier recorded: nothing to do on the GPU side",
    "engine_missing": "no inference engine is recorded (inference.fact is missing)",
    "engine_tier_mismatch": "the engine is configured for another tier than the one recorded",
    "engine_down": "the engine's service is not running",
    "engine_disabled": "the engine's service runs but does not start at boot",
    "engine_unhealthy": "the engine's service runs but its health endpoint does not answer",
    "models_missing": "the engine does not serve every model it should",
    "engine_on_cpu": "on a GPU tier, a model was measured on the CPU (or only partly in VRAM) after it loaded",
    "router_missing": "no router is recorded (llm_router.fact is missing)",
    "router_down": "the router's service is not running",
    "router_disabled": "the router's service runs but does not start at boot",
    "router_not_ready": "the router's service runs but /readyz does not answer 200",
    "router_config_invalid": "the router refuses its configuration file",
}

_PROBE_HELP = {
    "rocm": "run /opt/rocm/bin/rocminfo as the service user; check `groups` (render, video) and `ls -l /dev/kfd`",
    "vulkan": "run `vulkaninfo --summary`; the ICD files are in /usr/share/vulkan/icd.d (mesa-vulkan-drivers)",
    "opencl": "run `/usr/bin/clinfo -l`; the ICD files are in /etc/OpenCL/vendors",
}

# `dkms status` lines, as dkms's do_status() and do_status_weak() print them
# (github.com/dkms-project/dkms, dkms / dkms.in). dkms 2.8 (Ubuntu 22.04):
#   amdgpu, 6.12.12-2187269.22.04, 6.8.0-40-generic, x86_64: installed
#   amdgpu, 6.12.12-2187269.22.04: added
# dkms 3.x (Debian 12, Ubuntu 24.04):
#   amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed
#   amdgpu/6.12.12-2187269.24.04: added            (or: broken)
# both, for weak modules:
#   amdgpu, 6.12.12, 5.14.0-1, x86_64: installed-weak from 5.14.0-0
# A built or installed line may end in notes: " (original_module exists)" (2.8),
# " (Original modules exist)" (3.x), " (WARNING! Diff between built and installed module!)".
_DKMS_LINE = re.compile(
    r"^(?P<module>[^/,:\s]+)(?:/|, )(?P<version>[^/,:\s]+)"
    r"(?:, (?P<kernel>[^,:\s]+), (?P<arch>[^,:\s]+))?"
    r": (?P<state>[\w-]+)(?P<note>.*)$")


def dkms_entries(text: str) -> list[dict]:
    """`dkms status` lines of dkms 2.8 or 3.x as {module, version, kernel, arch, state, note}: kernel and
    arch are null for "added" and "broken"; state is the status word (added, built, installed,
    installed-weak, broken), note the rest of the line ("from <kernel>", "(Original modules exist)")."""
    entries = []
    for line in (text or "").splitlines():
        match = _DKMS_LINE.match(line.strip())
        if match:
            entries.append({k: (v.strip() if isinstance(v, str) else v) for k, v in match.groupdict().items()})
    return entries


def _finding(fid: str, area: str, severity: str, problem: str, action: str, manual: str = "") -> dict:
    return {"id": fid, "area": area, "severity": severity, "problem": problem, "action": action, "manual": manual}


def _describe_gpu(gpu: dict) -> str:
    target = f", {gpu['gfx_target']}" if gpu.get("gfx_target") else ""
    return f"{gpu.get('address', '?')} {gpu.get('name') or gpu.get('pci_id', 'AMD GPU')}{target}"


def _unit_state(unit: dict) -> tuple[str, str, str]:
    unit = unit or {}
    return (unit.get("LoadState", "not-found"), unit.get("ActiveState", "inactive"),
            unit.get("UnitFileState", "") or "unknown")


# What the kernel and modprobe print when a module will not load (kmod's
# messages for the errno, the kernel's module signature and lockdown checks,
# the module loader, the firmware loader).
_KEY_REJECTED = re.compile(r"Key was rejected by service|Required key not available|"
                           r"Loading of (?:module with unavailable key|unsigned module) is rejected|"
                           r"Lockdown: [^:]*: unsigned module loading is restricted|"
                           r"PKCS#7 signature not signed with a trusted key")
_UNKNOWN_SYMBOL = re.compile(r"Unknown symbol (\w+)|disagrees about version of symbol (\w+)|Unknown symbol in module")
_FIRMWARE = re.compile(r"Direct firmware load for (\S+) failed|Failed to load (?:gpu_info )?firmware \"?([^\"\s]+)")


def _load_causes(state: dict, name: str) -> list[dict]:
    """Why the module does not load, from the last modprobe error the rocm role recorded, the kernel
    log, the modprobe configuration and the kernel command line: one finding per cause found."""
    out: list[dict] = []
    load = state.get("module_load") or {}
    error = load.get("error", "") if load.get("rc") not in (None, 0) else ""
    log = [line for line in state.get("kernel_log") or [] if isinstance(line, str)]
    texts = [error] + log
    cmdline = (state.get("cmdline") or "").split()
    if any(_KEY_REJECTED.search(t) for t in texts):
        # modprobe's words and the kernel's, when both are there.
        seen = "; ".join(dict.fromkeys(t.strip() for t in ([error] if _KEY_REJECTED.search(error) else [])
                                       + [next((t for t in log if _KEY_REJECTED.search(t)), "")] if t))
        out.append(_finding(
            "module_key_rejected", "kernel", "problem",
            f"the kernel refuses the {name} module's signature ({seen}): Secure Boot is on and the key DKMS "
            "signed it with (the machine's MOK key) is not enrolled",
            "none (a MOK key is enrolled only at the console, at boot): the next tier that passes serves",
            "`sudo mokutil --import /var/lib/shim-signed/mok/MOK.der` (Ubuntu; Debian: /var/lib/dkms/mok.pub), choose a "
            "one-time password, reboot and pick \"Enroll MOK\" on the console; or set rocm_dkms: false to use the "
            "distribution's own signed amdgpu"))
    symbols = sorted({m.group(1) or m.group(2) for t in texts for m in _UNKNOWN_SYMBOL.finditer(t)
                      if m.group(1) or m.group(2)})
    if symbols or any("Unknown symbol in module" in t for t in texts):
        listed = ", ".join(symbols[:5]) + (" ..." if len(symbols) > 5 else "")
        out.append(_finding(
            "module_unknown_symbols", "kernel", "problem",
            f"the {name} module does not fit the running kernel {state.get('kernel', '?')}"
            + (f" (unknown symbols: {listed})" if listed else " (modprobe: unknown symbol in module)"),
            "none automatically: the next tier that passes serves",
            f"it was built against other headers, or its companion modules (amdttm, amdkcl, amd-sched) are missing: "
            f"`sudo dkms remove -m {name} --all && sudo dpkg-reconfigure {name}-dkms` rebuilds it for this kernel; "
            "or set rocm_dkms: false"))
    rules = [r for r in state.get("modprobe_rules") or [] if isinstance(r, dict)]
    command_line = [a for a in cmdline if re.match(r"(?:modprobe\.blacklist|module_blacklist)=(?:.*,)?" + re.escape(name)
                                                  + r"(?:,|$)", a)]
    if rules or command_line:
        where = [f"{r.get('file')}: {r.get('line')}" for r in rules] + [f"kernel command line: {a}" for a in command_line]
        stops = ("" if any(r.get("line", "").startswith("install") for r in rules) or any(
                 a.startswith("module_blacklist") for a in command_line)
                 else " (a blacklist line stops loading at boot; `modprobe " + name + "` by name still loads it)")
        out.append(_finding(
            "module_blacklisted", "kernel", "problem",
            f"{name} is kept out by {'; '.join(where)}{stops}",
            "none (repair leaves your modprobe configuration and boot loader alone): the next tier that passes serves",
            "remove those lines (then `sudo update-initramfs -u`), or the option from GRUB_CMDLINE_LINUX in "
            "/etc/default/grub (then `sudo update-grub`), and reboot"))
    nomodeset = [a for a in cmdline if a == "nomodeset" or a == f"{name}.modeset=0"]
    if nomodeset:
        out.append(_finding(
            "module_nomodeset", "kernel", "problem",
            f"the kernel command line has {' '.join(nomodeset)}: {name} refuses to load without kernel modesetting",
            "none (repair leaves the boot loader alone): the next tier that passes serves",
            "remove it from GRUB_CMDLINE_LINUX in /etc/default/grub, `sudo update-grub`, reboot"))
    files = sorted({m.group(1) or m.group(2) for t in log for m in _FIRMWARE.finditer(t) if m.group(1) or m.group(2)})
    if files:
        out.append(_finding(
            "firmware_missing", "kernel", "problem",
            f"the kernel could not load {', '.join(files[:4])}{' ...' if len(files) > 4 else ''}: {name} cannot start the card",
            "install the distribution's GPU firmware (GPU stage, amdgpu_firmware role); it loads when amdgpu next binds the card",
            "`sudo apt install firmware-amd-graphics` (Debian 12, component non-free-firmware) or `linux-firmware` "
            "(Ubuntu), then reboot"))
    return out


def _kernel_findings(state: dict) -> list[dict]:
    out: list[dict] = []
    kernel = state.get("kernel", "?")
    gpus = state.get("gpus") or []
    gpu_fact = state.get("gpu_fact") or {}
    module = state.get("module") or {}
    name = module.get("name", "amdgpu")
    device = gpu_fact.get("device") or {}
    if not gpus:
        if gpu_fact.get("tier") in ("rocm", "vulkan", "opencl") and device and not device.get("software"):
            out.append(_finding(
                "gpu_missing", "kernel", "problem",
                f"no AMD GPU on the PCI bus ({state.get('pci_path', '/sys/bus/pci/devices')}), but the recorded tier "
                f"{gpu_fact['tier']} ran on {device.get('name', 'a GPU')}",
                "none for the card (software cannot bring it back): the GPU stage records the next tier that passes (or cpu when "
                "gpu_backend_allow_cpu allows it) and the engine is reconfigured for it",
                "check that the card is seated and powered, `lspci -nn | grep 1002`, `dmesg | grep -i amdgpu`, and the "
                "BIOS (Above 4G decoding, the slot enabled)"))
        return out
    cards = "; ".join(_describe_gpu(g) for g in gpus)
    entries = [e for e in dkms_entries((state.get("dkms") or {}).get("status", "")) if e["module"] == name]
    built_here = [e for e in entries if e["kernel"] == kernel and e["state"] in ("installed", "installed-weak")]
    elsewhere = sorted({e["kernel"] for e in entries if e["kernel"] and e["kernel"] != kernel})
    dkms_missing = bool(entries) and not built_here
    headers = bool(state.get("headers"))
    if dkms_missing:
        where = f"built for {', '.join(elsewhere)} only" if elsewhere else "registered but built for no kernel"
        out.append(_finding(
            "dkms_not_built", "kernel", "problem",
            f"DKMS has {name} {entries[0]['version']} {where}, not for the running kernel {kernel} "
            f"(its headers are {'installed' if headers else 'missing'})",
            f"install linux-headers-{kernel} first, then build and install {name} for {kernel} with DKMS "
            "(rocm role); the new module loads at the next reboot",
            f"`sudo apt install linux-headers-{kernel} && sudo dkms autoinstall -k {kernel}`; if the build fails, "
            f"read /var/lib/dkms/{name}/{entries[0]['version']}/build/make.log: a kernel newer than this amdgpu-dkms "
            "supports needs a newer ROCm (rocm_version) or the distribution's own module (rocm_dkms: false)"))
    if not module.get("loaded"):
        why = (f"initstate {module['initstate']!r}" if module.get("initstate")
               else f"{module.get('path', '/sys/module/' + name)} missing")
        action = ("rebuild it for the running kernel (above) and load it (modprobe, rocm role); if it does not load, "
                  "it loads at the next reboot, done by repair only with rocm_reboot_allowed: true; until then the "
                  "next tier that passes serves"
                  if dkms_missing else
                  "load it with modprobe (rocm role; what keeps it out, if found, is listed below); until it loads "
                  "the next tier that passes serves"
                  if built_here else
                  "none for the module itself (no DKMS build of it for this kernel to load): the next tier that "
                  "passes serves until it loads")
        out.append(_finding(
            "module_not_loaded", "kernel", "problem",
            f"the {name} kernel module is not loaded ({why}) although {cards} is on the PCI bus",
            action,
            f"`sudo modprobe {name}` and `dmesg | grep -i {name}` (missing firmware? `lsmod | grep {name}`; a "
            f"`blacklist {name}` in /etc/modprobe.d or `nomodeset` on the kernel command line keeps it out); "
            "after a rebuild, reboot"))
        out.extend(_load_causes(state, name))
    else:
        unbound = [g for g in gpus if g.get("driver") not in (name, None)]
        if unbound:
            out.append(_finding(
                "gpu_driver_unbound", "kernel", "problem",
                "the card is bound to another driver: " + "; ".join(f"{_describe_gpu(g)} -> {g['driver']}" for g in unbound),
                "none (repair rebinds no device)",
                f"see why with `lspci -k`; a vfio-pci binding (passthrough) or a driver_override keeps it from {name}"))
    nodes = state.get("nodes") or {}
    missing_nodes = ([] if nodes.get("kfd") else ["/dev/kfd"]) + ([] if nodes.get("render") else ["/dev/dri/renderD*"])
    if missing_nodes:
        out.append(_finding(
            "device_nodes_missing", "kernel", "problem",
            f"{' and '.join(missing_nodes)} missing: no runtime can open the GPU",
            f"they appear when {name} loads: see the kernel findings; nothing else to repair",
            f"`ls -l /dev/kfd /dev/dri`; once {name} is loaded they belong to the render group "
            "(/etc/udev/rules.d/70-rocm.rules, `sudo udevadm trigger`)"))
    if name + "-dkms" in (state.get("reboot_pending") or []):
        out.append(_finding(
            "reboot_pending", "kernel", "notice",
            f"{name}-dkms changed since the last boot: the running kernel still uses the {name} module it booted with",
            "reboot only with rocm_reboot_allowed: true; otherwise stay on the tier that passes now",
            "reboot when convenient, then run repair again: it moves back up to the preferred tier"))
    return out


def _runtime_findings(state: dict) -> list[dict]:
    out: list[dict] = []
    fact = state.get("gpu_fact") or {}
    probes = state.get("probes") or {}
    order = list(fact.get("order") or state.get("order") or [])
    tier = fact.get("tier")
    if not tier:
        out.append(_finding(
            "gpu_tier_missing", "runtime", "problem",
            "no GPU tier is recorded (/etc/ansible/facts.d/gpu_backend.fact is missing or has no tier)",
            "run the GPU stage: install the runtime tiers, probe them, record the first that passes",
            "`ansible-playbook site.yml --tags gpu`"))
        return out
    available = list(fact.get("available") or [])
    current = probes.get(tier)
    if tier != "cpu" and current is not None and not current.get("ok"):
        out.append(_finding(
            "tier_failing", "runtime", "problem",
            f"the recorded tier {tier} fails its probe now: {current.get('reason') or 'no device'}",
            f"reinstall {tier}'s packages whose files are missing (dpkg --verify) and probe again; if {tier} still "
            "fails, record the next tier that passes (with why) and reconfigure the engine for it",
            _PROBE_HELP.get(tier, "")))
    ahead = order[:order.index(tier)] if tier in order else list(order)
    no_gpu = not state.get("gpus")
    for other in ahead:
        probe = probes.get(other)
        if probe and probe.get("ok"):
            out.append(_finding(
                "tier_recovered", "runtime", "change",
                f"{other}, preferred over the recorded {tier}, passes its probe again "
                f"({(probe.get('device') or {}).get('name', 'a device')})",
                f"move back up to {other} and reconfigure the engine for it", ""))
        elif probe and not no_gpu:
            out.append(_finding(
                "tier_preferred_failing", "runtime", "notice",
                f"{other}, preferred over the recorded {tier}, still fails: {probe.get('reason') or 'no device'}",
                f"{tier} keeps serving; a later repair moves back up once {other} passes",
                _PROBE_HELP.get(other, "")))
    if no_gpu and tier == "cpu":
        out.append(_finding(
            "no_gpu", "runtime", "notice",
            f"no AMD GPU on the PCI bus ({state.get('pci_path', '/sys/bus/pci/devices')}): serving on the CPU as recorded",
            "nothing to repair on the GPU side", ""))
    for other in order:
        probe = probes.get(other)
        if other == tier or other in ahead or probe is None or probe.get("ok") or other not in available:
            continue
        out.append(_finding(
            "fallback_lost", "runtime", "problem",
            f"the fallback tier {other} passed when the tier was recorded and fails now: "
            f"{probe.get('reason') or 'no device'}",
            f"reinstall {other}'s packages whose files are missing (dpkg --verify) and probe again",
            _PROBE_HELP.get(other, "")))
    return out


def _engine_findings(state: dict) -> list[dict]:
    engine = state.get("engine") or {}
    fact = engine.get("fact") or {}
    gpu_tier = (state.get("gpu_fact") or {}).get("tier")
    if not fact:
        return [_finding("engine_missing", "engine", "problem",
                         "no inference engine is recorded (/etc/ansible/facts.d/inference.fact is missing)",
                         "run the engine stage: install the engine, get its models, record it",
                         "`ansible-playbook site.yml --tags engine`")]
    out: list[dict] = []
    service = fact.get("service", "the engine's service")
    label = f"{fact.get('engine', 'engine')} ({service})"
    if gpu_tier and fact.get("tier") and fact["tier"] != gpu_tier:
        out.append(_finding(
            "engine_tier_mismatch", "engine", "problem",
            f"{label} is configured for the {fact['tier']} tier, but {gpu_tier} is recorded",
            f"reconfigure the engine for {gpu_tier} (engine stage)", ""))
    load, active, enabled = _unit_state(engine.get("unit"))
    journal = f"`journalctl -u {service} -n 50` says why"
    if load != "loaded" or active != "active":
        what = "is not installed" if load != "loaded" else f"is {active}" + (f" and {enabled}" if enabled != "enabled" else "")
        out.append(_finding("engine_down", "engine", "problem", f"{label} {what}",
                            "enable and start it (engine stage, which also restores its unit and configuration)",
                            journal))
        return out
    if enabled not in ("enabled", "static", "enabled-runtime", "alias", "generated"):
        out.append(_finding("engine_disabled", "engine", "problem", f"{label} runs but is {enabled}: it will not "
                            "start at boot", "enable it (engine stage)", f"`sudo systemctl enable {service}`"))
    health = engine.get("health") or {}
    if health.get("status") != 200:
        out.append(_finding(
            "engine_unhealthy", "engine", "problem",
            f"{label} is active but {fact.get('health_url', 'its health endpoint')} answers "
            f"{health.get('status') or 'nothing'}{(': ' + health['msg']) if health.get('msg') else ''}",
            "restart it, then run the engine stage", journal + "; a GPU out of memory or a hung runner keeps it busy"))
        return out
    models = engine.get("models") or {}
    served = models.get("served")
    if served is not None:
        missing = [m for m in fact.get("models", []) if m not in served]
        if missing:
            out.append(_finding(
                "models_missing", "models", "problem",
                f"{label} does not serve {', '.join(missing)} (it serves {', '.join(served) or 'nothing'})",
                "pull or import the missing models (engine stage); models already there are kept",
                "the engine stage's output names the download that failed; check the disk space for the model store"))
    return out


def _offload_findings(state: dict) -> list[dict]:
    """What the engine role measured after each model loaded (inference.fact `offload`, from Ollama's
    /api/ps size_vram against size): on a GPU tier, a model on the CPU is a problem, one partly in
    VRAM a warning."""
    fact = (state.get("engine") or {}).get("fact") or {}
    gpu_tier = (state.get("gpu_fact") or {}).get("tier")
    offload = fact.get("offload") or {}
    if not offload or not gpu_tier or gpu_tier == "cpu" or fact.get("tier") in (None, "cpu"):
        return []
    label = f"{fact.get('engine', 'engine')} ({fact.get('service', 'the engine service')})"
    on_cpu = sorted(m for m, o in offload.items() if not o.get("accelerated"))
    partly = sorted(f"{m} ({round(float(o.get('vram_fraction') or 0) * 100)}% in VRAM)"
                    for m, o in offload.items() if o.get("accelerated") and float(o.get("vram_fraction") or 0) < 1)
    out: list[dict] = []
    if on_cpu:
        out.append(_finding(
            "engine_on_cpu", "engine", "problem",
            f"{label} runs {', '.join(on_cpu)} on the CPU although the {fact['tier']} tier is recorded "
            "(measured after loading: nothing in VRAM)",
            "rerun the engine stage, which measures again and names the cause",
            f"`journalctl -u {fact.get('service', 'the engine service')}` shows how the engine saw the GPU; check "
            "that the service user can open /dev/kfd and /dev/dri/renderD* (groups render, video) and that its "
            "visible-device variable names the card"))
    elif partly:
        out.append(_finding(
            "engine_on_cpu", "engine", "notice",
            f"{label} holds only part of {', '.join(partly)} in VRAM: the rest runs on the CPU",
            "none (a smaller model, context or parallelism fits the card)",
            "compare the model's size with the card's VRAM; fewer models loaded together frees VRAM"))
    return out


def _router_findings(state: dict) -> list[dict]:
    router = state.get("router") or {}
    fact = router.get("fact") or {}
    if not fact:
        return [_finding("router_missing", "router", "problem",
                         "no router is recorded (/etc/ansible/facts.d/llm_router.fact is missing)",
                         "run the router stage", "`ansible-playbook site.yml --tags router`")]
    out: list[dict] = []
    service = fact.get("service", "llm-router.service")
    config = router.get("config") or {}
    if config.get("checked") and config.get("rc") != 0:
        out.append(_finding(
            "router_config_invalid", "router", "problem",
            f"the router refuses {fact.get('config', 'its configuration')}: {config.get('msg') or 'invalid'}",
            "restore the managed configuration from the inventory and restart the router (router stage)",
            "the file is rendered from the inventory's llm_router_* variables: make lasting changes there, "
            "the role overwrites edits of the file"))
    load, active, enabled = _unit_state(router.get("unit"))
    journal = f"`journalctl -u {service} -n 50` says why"
    if load != "loaded" or active != "active":
        what = "is not installed" if load != "loaded" else f"is {active}" + (f" and {enabled}" if enabled != "enabled" else "")
        out.append(_finding("router_down", "router", "problem", f"the router ({service}) {what}",
                            "enable and start it (router stage)", journal))
        return out
    if enabled not in ("enabled", "static", "enabled-runtime", "alias", "generated"):
        out.append(_finding("router_disabled", "router", "problem", f"the router ({service}) runs but is {enabled}",
                            "enable it (router stage)", f"`sudo systemctl enable {service}`"))
    ready = router.get("ready") or {}
    if ready.get("status") != 200:
        out.append(_finding(
            "router_not_ready", "router", "problem",
            f"the router ({service}) is active but {fact.get('url', '')}/readyz answers "
            f"{ready.get('status') or 'nothing'}{(': ' + ready['msg']) if ready.get('msg') else ''}",
            "restart it, then run the router stage", journal))
    return out


# Packages of the GPU stack whose hold keeps the roles from installing or repairing them.
_STACK_PACKAGES = re.compile(r"^(amdgpu|rocm|hip|hsa|rocblas|rocminfo|mesa-vulkan|libvulkan|vulkan-tools|ocl-icd|clinfo|"
                             r"firmware-amd|linux-firmware|dkms|linux-headers)")


def _first_error(output: str) -> str:
    """apt's first `E:` line, or its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[0]


def _package_findings(state: dict) -> list[dict]:
    out: list[dict] = []
    audit = state.get("dpkg_audit") or ""
    unfinished = [line.split()[0] for line in audit.splitlines() if re.match(r"^ \S", line)]
    if audit.strip():
        out.append(_finding(
            "dpkg_interrupted", "packages", "problem",
            "dpkg left " + (", ".join(unfinished[:6]) + (" ..." if len(unfinished) > 6 else "") if unfinished
                            else "packages") + " unfinished (dpkg --audit): every apt run fails until they are configured",
            "finish them with `dpkg --configure -a` before anything is installed (GPU stage)",
            "`sudo dpkg --configure -a`; if a package's script fails again, `sudo dpkg --audit` names it and "
            "`sudo apt-get install -f` or removing it gets apt going"))
    check = state.get("apt_check") or {}
    output = check.get("output") or ""
    # Another apt holding the lock says nothing about the dependencies.
    if str(check.get("rc", 0)) not in ("0", "") and not re.search(r"Could not get lock|Unable to acquire", output):
        # apt's own lines: " <package> : Depends: <dependency> but it is not installed"
        unmet = [" ".join(line.split()) for line in output.splitlines() if re.match(r"^ \S+ : ", line)]
        out.append(_finding(
            "packages_broken", "packages", "problem",
            "apt reports unmet dependencies" + (f" ({'; '.join(unmet[:4])}{' ...' if len(unmet) > 4 else ''})"
                                                if unmet else f": {_first_error(output)}")
            + ": every apt install fails until they are met",
            "install what is missing with `apt-get --fix-broken install`, removing nothing (GPU stage); "
            "a fix that needs a removal is left to you",
            "`sudo apt --fix-broken install`, reading what it would remove before you agree"))
    held = [p for p in state.get("held") or [] if isinstance(p, str) and _STACK_PACKAGES.match(p)]
    if held:
        out.append(_finding(
            "packages_held", "packages", "notice",
            f"{', '.join(held)} {'is' if len(held) == 1 else 'are'} held (apt-mark hold): the roles cannot upgrade "
            "or reinstall them",
            "none (a hold is your decision; repair installs nothing over it)",
            f"`sudo apt-mark unhold {' '.join(held)}` when the hold is no longer wanted"))
    return out


def diagnose_findings(state: dict) -> list[dict]:
    """Every finding, in the order of the stack: packages, kernel, runtimes, engine and models, router."""
    return (_package_findings(state) + _kernel_findings(state) + _runtime_findings(state) + _engine_findings(state)
            + _offload_findings(state) + _router_findings(state))


def diagnose_summary(state: dict) -> dict:
    """One line per component, for the before -> after table."""
    fact = state.get("gpu_fact") or {}
    probes = state.get("probes") or {}
    tier = fact.get("tier")
    if tier:
        probe = probes.get(tier)
        ok = tier == "cpu" or (probe or {}).get("ok", False)
        gpu = f"{tier} ({'passes' if ok else 'fails'} its probe)" if tier != "cpu" else "cpu"
    else:
        gpu = "none recorded"
    engine = state.get("engine") or {}
    efact = engine.get("fact") or {}
    if not efact:
        engine_line = "none recorded"
    else:
        _load, active, _enabled = _unit_state(engine.get("unit"))
        health = (engine.get("health") or {}).get("status")
        status = "healthy" if active == "active" and health == 200 else ("unhealthy" if active == "active" else active)
        engine_line = f"{efact.get('engine')} {efact.get('version', '')} on {efact.get('tier')}: {status}".replace("  ", " ")
    served = (engine.get("models") or {}).get("served")
    if not efact:
        models = "none recorded"
    elif served is None:
        models = "not checked"
    else:
        missing = [m for m in efact.get("models", []) if m not in served]
        models = "all served" if not missing else "missing " + ", ".join(missing)
    router = state.get("router") or {}
    if not router.get("fact"):
        router_line = "none recorded"
    else:
        _load, active, _enabled = _unit_state(router.get("unit"))
        ready = (router.get("ready") or {}).get("status") == 200
        router_line = "ready" if active == "active" and ready else ("not ready" if active == "active" else active)
    return {"tier": gpu, "engine": engine_line, "models": models, "router": router_line}


def diagnose_lines(report: dict) -> list[str]:
    """One line per finding: what is wrong -> what repair does (and, when it cannot, what to do)."""
    findings = report.get("findings") or []
    if not findings:
        return ["No problem found: every check passed."]
    lines = []
    for f in findings:
        mark = {"problem": "PROBLEM", "change": "MOVE UP"}.get(f["severity"], "NOTICE")
        lines.append(f"{mark} [{f['id']}] {f['problem']} => repair: {f['action']}"
                     + (f" (by hand: {f['manual']})" if f.get("manual") else ""))
    return lines


def diagnose_compare(after: dict, before: dict) -> dict:
    """What changed between two reports: the state lines, and which findings were repaired or remain."""
    key = lambda f: (f["id"], f["problem"])  # noqa: E731 (a sort key)
    before_ids = {f["id"] for f in before.get("findings") or []}
    after_ids = {f["id"] for f in after.get("findings") or []}
    repaired = [f for f in before.get("findings") or [] if f["id"] not in after_ids]
    remaining = [f for f in after.get("findings") or [] if f["id"] in before_ids]
    new = [f for f in after.get("findings") or [] if f["id"] not in before_ids]
    sb, sa = before.get("summary") or {}, after.get("summary") or {}
    rows = [{"what": k, "before": sb.get(k, "?"), "after": sa.get(k, "?")} for k in ("tier", "engine", "models", "router")]
    tier_before = ((before.get("state") or {}).get("gpu_fact") or {}).get("tier")
    tier_after = ((after.get("state") or {}).get("gpu_fact") or {}).get("tier")
    moved = None
    if tier_before and tier_after and tier_before != tier_after:
        rejected = ((after.get("state") or {}).get("gpu_fact") or {}).get("rejected") or {}
        moved = {"from": tier_before, "to": tier_after,
                 "why": rejected.get(tier_before, f"{tier_after} is preferred over {tier_before} and passes again")}
    return {"rows": rows, "tier_change": moved,
            "repaired": [f["problem"] for f in sorted(repaired, key=key)],
            "remaining": [f["problem"] for f in sorted(remaining, key=key)],
            "new": [f["problem"] for f in sorted(new, key=key)]}


def diagnose_compare_lines(comparison: dict) -> list[str]:
    lines = [f"{r['what']}: {r['before']} -> {r['after']}" for r in comparison.get("rows", [])]
    moved = comparison.get("tier_change")
    if moved:
        lines.append(f"tier moved {moved['from']} -> {moved['to']}: {moved['why']}")
    lines += [f"repaired: {p}" for p in comparison.get("repaired", [])]
    lines += [f"still open: {p}" for p in comparison.get("remaining", []) + comparison.get("new", [])]
    return lines


# The stages repair.yml can rerun, in order; each one's inputs are the facts of those before it.
STAGES = ("gpu", "engine", "router")
_STAGE_OF_AREA = {"packages": "gpu", "kernel": "gpu", "runtime": "gpu", "engine": "engine", "models": "engine",
                  "router": "router"}


def diagnose_stages(report: dict, wanted: object = "auto") -> list[str]:
    """The stages a repair reruns: from the first one a finding that needs action (a problem, or a tier
    to move back up to) belongs to, through the ones that depend on it. `wanted`: "auto", "all", or a
    list of stages to rerun (each with the stages after it)."""
    if wanted == "all":
        return list(STAGES)
    if isinstance(wanted, (list, tuple)):
        unknown = [w for w in wanted if w not in STAGES]
        if unknown:
            raise ValueError(f"unknown repair stage(s) {unknown} (expected {', '.join(STAGES)}, 'all' or 'auto')")
        broken = set(wanted)
    elif wanted == "auto":
        broken = {_STAGE_OF_AREA[f["area"]] for f in report.get("findings") or []
                  if f.get("severity") in ("problem", "change") and f.get("area") in _STAGE_OF_AREA}
    else:
        raise ValueError(f"repair stages must be 'auto', 'all' or a list, not {wanted!r}")
    first = min((STAGES.index(s) for s in broken), default=len(STAGES))
    return list(STAGES[first:])


def diagnose_properties(text: str) -> dict:
    """`systemctl show --property ...` output (Key=Value lines) as a dict."""
    return dict(line.split("=", 1) for line in (text or "").splitlines() if "=" in line)


def diagnose_exec_path(exec_start: str) -> str:
    """The program of a unit's ExecStart as `systemctl show` prints it ({ path=/x/y ; argv[]=... }), or ""."""
    match = re.search(r"\bpath=(\S+)", exec_start or "")
    return match.group(1) if match else ""


def diagnose_http_reason(msg: str) -> str:
    """The useful part of the uri module's failure message (Connection refused, timed out, ...)."""
    text = re.sub(r"^Status code was -?\d+ and not \[[^\]]*\]: ", "", str(msg or ""))
    text = re.sub(r"^Request failed: <urlopen error (.*)>$", r"\1", text)
    return text.strip()[:200]


class FilterModule:
    def filters(self) -> dict:
        return {
            "diagnose_findings": diagnose_findings,
            "diagnose_summary": diagnose_summary,
            "diagnose_lines": diagnose_lines,
            "diagnose_compare": diagnose_compare,
            "diagnose_compare_lines": diagnose_compare_lines,
            "diagnose_stages": diagnose_stages,
            "dkms_entries": dkms_entries,
            "diagnose_properties": diagnose_properties,
            "diagnose_http_reason": diagnose_http_reason,
            "diagnose_exec_path": diagnose_exec_path,
        }
