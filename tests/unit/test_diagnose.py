"""The diagnose role's judgement (roles/diagnose/filter_plugins/diagnose.py) and
the dpkg --verify reading behind the tier roles' package repair: each finding
appears when its condition holds and only then, and says what repair does."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
from ansible_collections.mi50.stack.plugins.modules import dpkg_verify

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("diagnose_filters", ROOT / "roles/diagnose/filter_plugins/diagnose.py")
diagnose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose)

KERNEL = "6.8.0-45-generic"
MI50 = {"address": "0000:03:00.0", "name": "Vega 20 [Radeon Instinct MI50/MI60]", "gfx_target": "gfx906",
        "driver": "amdgpu", "vendor_id": "0x1002"}
PROBE_OK = {"ok": True, "reason": "", "device": {"name": "AMD Instinct MI50/MI60"}}

# A healthy box on rocm, with vulkan as a working fallback.
HEALTHY = {
    "kernel": KERNEL,
    "gpus": [MI50],
    "module": {"name": "amdgpu", "path": "/sys/module/amdgpu", "loaded": True, "initstate": "live"},
    "headers": True,
    "nodes": {"kfd": True, "render": ["/dev/dri/renderD128"]},
    "dkms": {"available": True, "status": f"amdgpu/6.12.12-2187269.24.04, {KERNEL}, x86_64: installed\n"},
    "reboot_pending": [],
    "gpu_fact": {"tier": "rocm", "order": ["rocm", "vulkan", "opencl"], "available": ["rocm", "vulkan"],
                 "device": {"name": "AMD Instinct MI50/MI60", "software": False}, "rejected": {"opencl": "no ICD"}},
    "order": ["rocm", "vulkan", "opencl"],
    "probes": {"rocm": PROBE_OK, "vulkan": {"ok": True, "reason": "", "device": {"name": "AMD Radeon Graphics (RADV VEGA20)"}},
               "opencl": {"ok": False, "reason": "clinfo lists no OpenCL platform", "device": None}},
    "engine": {"fact": {"engine": "ollama", "version": "0.12.3", "tier": "rocm", "service": "ollama.service",
                        "health_url": "http://127.0.0.1:11434/api/version",
                        "models": ["qwen2.5:7b-instruct-q4_K_M", "llama3.1:8b-instruct-q4_K_M"]},
               "unit": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"},
               "health": {"status": 200, "msg": ""},
               "models": {"served": ["qwen2.5:7b-instruct-q4_K_M", "llama3.1:8b-instruct-q4_K_M"]}},
    "router": {"fact": {"url": "http://127.0.0.1:8090", "service": "llm-router.service",
                        "config": "/etc/llm-router/config.yml"},
               "unit": {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"},
               "ready": {"status": 200, "msg": ""}, "config": {"checked": True, "rc": 0, "msg": ""}},
}


def state(**changes) -> dict:
    """HEALTHY with dotted-path changes: state(**{"engine.unit.ActiveState": "failed"})."""
    result = copy.deepcopy(HEALTHY)
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = result
        for key in parents:
            target = target[key]
        target[last] = value
    return result


def ids(s: dict) -> list[str]:
    return [f["id"] for f in diagnose.diagnose_findings(s)]


def test_a_healthy_box_has_no_findings():
    assert ids(HEALTHY) == []
    assert diagnose.diagnose_lines({"findings": []}) == ["No problem found: every check passed."]


KERNEL_UPDATE = {
    "module.loaded": False, "module.initstate": "", "headers": False,
    "nodes": {"kfd": False, "render": []},
    "dkms.status": "amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed\n",
    "probes.rocm": {"ok": False, "reason": "rocminfo lists no GPU agent: ROCk module is NOT loaded", "device": None},
}


@pytest.mark.parametrize(("changes", "expected"), [
    (KERNEL_UPDATE, ["dkms_not_built", "module_not_loaded", "device_nodes_missing", "tier_failing"]),
    ({"dkms.status": "amdgpu/6.12.12-2187269.24.04: added\n"}, ["dkms_not_built"]),
    ({"dkms.status": "", "dkms.available": False}, []),
    ({"gpus": [dict(MI50, driver="vfio-pci")]}, ["gpu_driver_unbound"]),
    ({"reboot_pending": ["amdgpu-dkms"]}, ["reboot_pending"]),
    ({"gpus": []}, ["gpu_missing"]),
    ({"gpu_fact": {}}, ["gpu_tier_missing"]),
    ({"probes.vulkan": {"ok": False, "reason": "vulkaninfo lists no GPU device", "device": None}}, ["fallback_lost"]),
    ({"engine.fact": {}}, ["engine_missing"]),
    ({"engine.unit.ActiveState": "inactive", "engine.unit.UnitFileState": "disabled"}, ["engine_down"]),
    ({"engine.unit.LoadState": "not-found"}, ["engine_down"]),
    ({"engine.unit.UnitFileState": "disabled"}, ["engine_disabled"]),
    ({"engine.health": {"status": -1, "msg": "The read operation timed out"}}, ["engine_unhealthy"]),
    ({"engine.models.served": ["qwen2.5:7b-instruct-q4_K_M"]}, ["models_missing"]),
    ({"engine.models.served": None}, []),
    ({"engine.fact.tier": "vulkan"}, ["engine_tier_mismatch"]),
    ({"router.fact": {}}, ["router_missing"]),
    ({"router.unit.ActiveState": "failed"}, ["router_down"]),
    ({"router.unit.UnitFileState": "disabled"}, ["router_disabled"]),
    ({"router.ready": {"status": 503, "msg": "HTTP Error 503"}}, ["router_not_ready"]),
    ({"router.config": {"checked": True, "rc": 2, "msg": "error: /etc/llm-router/config.yml: bad"}},
     ["router_config_invalid"]),
], ids=["kernel-update", "dkms-added-only", "no-dkms", "unbound", "reboot", "card-gone", "no-tier", "fallback-lost",
        "no-engine", "engine-stopped", "engine-not-installed", "engine-disabled", "engine-hung", "model-gone",
        "models-unlisted", "engine-other-tier", "no-router", "router-failed", "router-disabled", "router-503",
        "router-config"])
def test_each_condition_gives_its_finding(changes, expected):
    assert ids(state(**changes)) == expected


def test_a_kernel_update_says_headers_first_and_names_the_kernels():
    findings = {f["id"]: f for f in diagnose.diagnose_findings(state(**KERNEL_UPDATE))}
    dkms = findings["dkms_not_built"]
    assert "built for 6.8.0-40-generic only, not for the running kernel 6.8.0-45-generic" in dkms["problem"]
    assert "headers are missing" in dkms["problem"]
    assert dkms["action"].startswith("install linux-headers-6.8.0-45-generic first")
    assert "dkms autoinstall -k 6.8.0-45-generic" in dkms["manual"]
    assert "next reboot" in findings["module_not_loaded"]["action"]


# `dkms status` as each dkms prints it (dkms-project/dkms, do_status and do_status_weak): 2.8 on
# Ubuntu 22.04 separates module and version with a comma, 3.x (Debian 12, Ubuntu 24.04) with a slash.
JAMMY = "6.12.12-2187269.22.04"
DKMS_LINES = [
    (f"amdgpu, {JAMMY}, 6.8.0-40-generic, x86_64: installed",
     {"module": "amdgpu", "version": JAMMY, "kernel": "6.8.0-40-generic", "arch": "x86_64", "state": "installed",
      "note": ""}),
    (f"amdgpu, {JAMMY}: added",
     {"module": "amdgpu", "version": JAMMY, "kernel": None, "arch": None, "state": "added", "note": ""}),
    (f"amdgpu, {JAMMY}, 6.8.0-40-generic, x86_64: built",
     {"module": "amdgpu", "version": JAMMY, "kernel": "6.8.0-40-generic", "arch": "x86_64", "state": "built",
      "note": ""}),
    (f"amdgpu, {JAMMY}, 6.8.0-40-generic, x86_64: installed (original_module exists)",
     {"module": "amdgpu", "version": JAMMY, "kernel": "6.8.0-40-generic", "arch": "x86_64", "state": "installed",
      "note": "(original_module exists)"}),
    ("amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed",
     {"module": "amdgpu", "version": "6.12.12-2187269.24.04", "kernel": "6.8.0-40-generic", "arch": "x86_64",
      "state": "installed", "note": ""}),
    ("amdgpu/6.12.12-2187269.24.04: added",
     {"module": "amdgpu", "version": "6.12.12-2187269.24.04", "kernel": None, "arch": None, "state": "added",
      "note": ""}),
    ("amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed (WARNING! Diff between built and installed "
     "module!)",
     {"module": "amdgpu", "version": "6.12.12-2187269.24.04", "kernel": "6.8.0-40-generic", "arch": "x86_64",
      "state": "installed", "note": "(WARNING! Diff between built and installed module!)"}),
    ("amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed (Original modules exist)",
     {"module": "amdgpu", "version": "6.12.12-2187269.24.04", "kernel": "6.8.0-40-generic", "arch": "x86_64",
      "state": "installed", "note": "(Original modules exist)"}),
    ("amdgpu, 6.12.12, 5.14.0-427.el9.x86_64, x86_64: installed-weak from 5.14.0-362.el9.x86_64",
     {"module": "amdgpu", "version": "6.12.12", "kernel": "5.14.0-427.el9.x86_64", "arch": "x86_64",
      "state": "installed-weak", "note": "from 5.14.0-362.el9.x86_64"}),
    ("Error! Could not locate dkms.conf file.", None),
]


@pytest.mark.parametrize(("line", "entry"), DKMS_LINES,
                         ids=["2.8-installed", "2.8-added", "2.8-built", "2.8-original", "3.x-installed", "3.x-added",
                              "3.x-diff-warning", "3.x-original", "weak", "not-a-status-line"])
def test_dkms_status_lines_of_dkms_2_8_and_3_are_read(line, entry):
    assert diagnose.dkms_entries(line + "\n") == ([entry] if entry else [])


@pytest.mark.parametrize(("status", "expected"), [
    (f"amdgpu, {JAMMY}, {KERNEL}, x86_64: installed\n", []),
    (f"amdgpu, {JAMMY}, {KERNEL}, x86_64: installed (original_module exists)\n", []),
    (f"amdgpu, {JAMMY}, 6.8.0-40-generic, x86_64: installed\n", ["dkms_not_built"]),
    (f"amdgpu, {JAMMY}, {KERNEL}, x86_64: built\n", ["dkms_not_built"]),
    (f"amdgpu, {JAMMY}: added\n", ["dkms_not_built"]),
    (f"amdgpu/6.12.12-2187269.24.04, {KERNEL}, x86_64: installed (WARNING! Diff between built and installed module!)\n",
     []),
], ids=["2.8-here", "2.8-here-original", "2.8-old-kernel", "2.8-built-only", "2.8-added-only", "3.x-here-warning"])
def test_dkms_not_built_is_judged_from_either_dkms(status, expected):
    assert ids(state(**{"dkms.status": status})) == expected


def test_ubuntu_22_04_after_a_kernel_update_is_told_dkms_lacks_the_running_kernel():
    """dkms 2.8's comma form: before it was read, a jammy box never heard "not built for this kernel"."""
    jammy = state(**{**KERNEL_UPDATE, "dkms.status": f"amdgpu, {JAMMY}, 6.8.0-40-generic, x86_64: installed\n"})
    findings = {f["id"]: f for f in diagnose.diagnose_findings(jammy)}
    assert list(findings) == ["dkms_not_built", "module_not_loaded", "device_nodes_missing", "tier_failing"]
    assert findings["dkms_not_built"]["problem"] == (
        f"DKMS has amdgpu {JAMMY} built for 6.8.0-40-generic only, not for the running kernel {KERNEL} "
        "(its headers are missing)")
    assert f"/var/lib/dkms/amdgpu/{JAMMY}/build/make.log" in findings["dkms_not_built"]["manual"]
    assert findings["module_not_loaded"]["action"].startswith("rebuild it for the running kernel")


def test_a_module_missing_without_dkms_is_not_promised_a_rebuild():
    finding = diagnose.diagnose_findings(state(**{"module.loaded": False, "dkms.status": ""}))[0]
    assert finding["id"] == "module_not_loaded"
    assert finding["action"].startswith("none for the module itself")


def test_a_tier_that_passes_again_above_the_recorded_one_moves_up():
    recorded_vulkan = {"gpu_fact.tier": "vulkan", "engine.fact.tier": "vulkan"}
    findings = diagnose.diagnose_findings(state(**recorded_vulkan))
    assert [(f["id"], f["severity"]) for f in findings] == [("tier_recovered", "change")]
    assert findings[0]["action"] == "move back up to rocm and reconfigure the engine for it"
    failing = {**recorded_vulkan, "probes.rocm": {"ok": False, "reason": "ROCk module is NOT loaded", "device": None}}
    assert [(f["id"], f["severity"]) for f in diagnose.diagnose_findings(state(**failing))] == [
        ("tier_preferred_failing", "notice")]


def test_a_box_without_gpu_on_the_cpu_tier_only_gets_a_notice():
    lab = state(**{"gpus": [], "gpu_fact.tier": "cpu", "gpu_fact.available": [], "gpu_fact.device": None,
                   "engine.fact.tier": "cpu", "dkms.status": "", "nodes": {"kfd": False, "render": []},
                   "probes": {t: {"ok": False, "reason": "no GPU", "device": None} for t in ("rocm", "vulkan", "opencl")}})
    assert [(f["id"], f["severity"]) for f in diagnose.diagnose_findings(lab)] == [("no_gpu", "notice")]


def test_lines_name_the_finding_and_what_repair_does():
    line = diagnose.diagnose_lines({"findings": diagnose.diagnose_findings(state(**{"engine.unit.ActiveState": "inactive"}))})
    assert line == ["PROBLEM [engine_down] ollama (ollama.service) is inactive => repair: enable and start it "
                    "(engine stage, which also restores its unit and configuration) "
                    "(by hand: `journalctl -u ollama.service -n 50` says why)"]


def test_the_catalogue_names_every_finding_and_only_those():
    """The README's troubleshooting table is built from CATALOGUE: it must match what the role can say."""
    import re
    source = (ROOT / "roles/diagnose/filter_plugins/diagnose.py").read_text()
    emitted = set(re.findall(r'_finding\(\s*"(\w+)"', source))
    assert emitted == set(diagnose.CATALOGUE)
    produced = set()
    for changes in [KERNEL_UPDATE, {"gpus": []}, {"gpu_fact": {}}, {"engine.fact": {}}, {"router.fact": {}}]:
        produced |= set(ids(state(**changes)))
    assert produced <= set(diagnose.CATALOGUE)


def test_compare_says_what_moved_what_was_repaired_and_what_remains():
    broken = state(**KERNEL_UPDATE, **{"engine.unit.ActiveState": "inactive"})
    after = state(**{**KERNEL_UPDATE, "dkms.status": HEALTHY["dkms"]["status"], "headers": True,
                     "gpu_fact.tier": "vulkan", "gpu_fact.rejected": {"rocm": "rocminfo: ROCk module is NOT loaded"},
                     "engine.fact.tier": "vulkan"})
    report = lambda s: {"findings": diagnose.diagnose_findings(s), "summary": diagnose.diagnose_summary(s), "state": s}  # noqa: E731
    comparison = diagnose.diagnose_compare(report(after), report(broken))
    assert comparison["tier_change"] == {"from": "rocm", "to": "vulkan", "why": "rocminfo: ROCk module is NOT loaded"}
    assert any("DKMS has amdgpu" in p for p in comparison["repaired"])
    assert any("is inactive" in p for p in comparison["repaired"])
    assert any("amdgpu kernel module is not loaded" in p for p in comparison["remaining"])
    lines = diagnose.diagnose_compare_lines(comparison)
    assert "tier: rocm (fails its probe) -> vulkan (passes its probe)" in lines
    assert "engine: ollama 0.12.3 on rocm: inactive -> ollama 0.12.3 on vulkan: healthy" in lines
    assert "tier moved rocm -> vulkan: rocminfo: ROCk module is NOT loaded" in lines


@pytest.mark.parametrize(("msg", "reason"), [
    ("Status code was -1 and not [200]: Request failed: <urlopen error [Errno 111] Connection refused>",
     "[Errno 111] Connection refused"),
    ("Status code was 503 and not [200]: HTTP Error 503: Service Unavailable", "HTTP Error 503: Service Unavailable"),
])
def test_http_failures_are_shortened_to_their_reason(msg, reason):
    assert diagnose.diagnose_http_reason(msg) == reason


# --------------------------------------------------------------------- the kernel side, read in one call

_kspec = importlib.util.spec_from_file_location("gpu_kernel_state", ROOT / "roles/diagnose/library/gpu_kernel_state.py")
gpu_kernel_state = importlib.util.module_from_spec(_kspec)
_kspec.loader.exec_module(gpu_kernel_state)


def kernel_params(root: Path) -> dict:
    return {"sysfs_root": str(root / "sys"), "module": "amdgpu", "headers_dir": None, "kfd": str(root / "dev/kfd"),
            "dri_dir": str(root / "dev/dri"), "reboot_pkgs": str(root / "run/reboot-required.pkgs"),
            "cmdline_path": str(root / "proc/cmdline"), "modprobe_dirs": [str(root / "etc/modprobe.d"),
                                                                        str(root / "lib/modprobe.d")],
            "kernel_log_path": str(root / "kmsg")}


def test_kernel_state_of_a_card_with_its_driver_loaded(tmp_path):
    (tmp_path / "sys/module/amdgpu").mkdir(parents=True)
    (tmp_path / "sys/module/amdgpu/initstate").write_text("live\n")
    (tmp_path / "dev/dri").mkdir(parents=True)
    for name in ("dev/kfd", "dev/dri/renderD129", "dev/dri/renderD128", "dev/dri/card0"):
        (tmp_path / name).write_text("")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/reboot-required.pkgs").write_text("amdgpu-dkms\nlinux-image-6.8.0-45-generic\n")
    status = f"amdgpu/6.12.12-2187269.24.04, {KERNEL}, x86_64: installed\n"
    got = gpu_kernel_state.gather(dict(kernel_params(tmp_path), headers_dir=str(tmp_path)), KERNEL,
                                  lambda: (0, status))
    assert got["module"] == {"path": str(tmp_path / "sys/module/amdgpu"), "exists": True, "initstate": "live"}
    assert got["headers"] is True and got["kernel"] == KERNEL
    assert got["nodes"] == {"kfd": True, "render": [str(tmp_path / "dev/dri/renderD128"),
                                                    str(tmp_path / "dev/dri/renderD129")]}
    assert got["dkms"] == {"available": True, "status": status}
    assert got["reboot_pending"] == ["amdgpu-dkms", "linux-image-6.8.0-45-generic"]
    assert diagnose.dkms_entries(got["dkms"]["status"])[0]["kernel"] == KERNEL


def test_kernel_state_without_module_nodes_headers_or_dkms(tmp_path):
    got = gpu_kernel_state.gather(kernel_params(tmp_path), "6.99.0-standin", None)
    assert got["module"]["exists"] is False and got["module"]["initstate"] == ""
    assert got["headers"] is False  # /lib/modules/6.99.0-standin/build/include
    assert got["nodes"] == {"kfd": False, "render": []}
    assert got["dkms"] == {"available": False, "status": ""}
    assert got["reboot_pending"] == []
    assert got["cmdline"] == "" and got["modprobe_rules"] == [] and got["kernel_log"] == []


def test_kernel_state_reads_what_keeps_the_module_out(tmp_path):
    (tmp_path / "etc/modprobe.d").mkdir(parents=True)
    (tmp_path / "lib/modprobe.d").mkdir(parents=True)
    (tmp_path / "etc/modprobe.d/blacklist-gpu.conf").write_text(
        "# not this one\nblacklist radeon\nblacklist amdgpu\ninstall amdgpu /bin/false\noptions amdgpu ppfeaturemask=0\n")
    (tmp_path / "lib/modprobe.d/other.txt").write_text("blacklist amdgpu\n")  # only *.conf counts, as for kmod
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz ro nomodeset\n")
    (tmp_path / "kmsg").write_text("usb 1-1: new high-speed USB device\n"
                                   "amdgpu: Unknown symbol drm_sched_job_init (err -2)\n"
                                   "Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7\n")
    got = gpu_kernel_state.gather(kernel_params(tmp_path), KERNEL, None)
    rules_file = str(tmp_path / "etc/modprobe.d/blacklist-gpu.conf")
    assert got["modprobe_rules"] == [{"file": rules_file, "line": "blacklist amdgpu"},
                                     {"file": rules_file, "line": "install amdgpu /bin/false"}]
    assert got["cmdline"] == "BOOT_IMAGE=/vmlinuz ro nomodeset"
    assert got["kernel_log"] == ["amdgpu: Unknown symbol drm_sched_job_init (err -2)",
                                 "Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7"]


# --------------------------------------------------------------------- dpkg --verify

VERIFY = {
    "mesa-vulkan-drivers:amd64": "missing     /usr/share/vulkan/icd.d/lvp_icd.x86_64.json\n",
    "pocl-opencl-icd:amd64": "missing   c /etc/OpenCL/vendors/pocl.icd\n",
    "clinfo": "??5??????   /usr/bin/clinfo\n",
    "dkms": "??5?????? c /etc/kernel/postinst.d/dkms\n",
    "libvulkan1:amd64": "",
}


def test_dpkg_verify_lines_are_read_with_their_state():
    assert dpkg_verify.parse_verify(VERIFY["pocl-opencl-icd:amd64"] + VERIFY["clinfo"]) == [
        {"path": "/etc/OpenCL/vendors/pocl.icd", "state": "missing", "conffile": True},
        {"path": "/usr/bin/clinfo", "state": "changed", "conffile": False},
    ]


def test_missing_or_changed_files_are_reinstalled_and_edited_conffiles_kept():
    versions = {name: "1.0-1" for name in VERIFY}
    result = dpkg_verify.summarize(versions, VERIFY)
    assert result["broken"] == ["clinfo", "mesa-vulkan-drivers:amd64", "pocl-opencl-icd:amd64"]
    assert result["reinstall"] == ["clinfo=1.0-1", "mesa-vulkan-drivers:amd64=1.0-1", "pocl-opencl-icd:amd64=1.0-1"]
    assert result["missing_conffiles"] == ["pocl-opencl-icd:amd64"]
    assert result["edited_conffiles"] == {"dkms": ["/etc/kernel/postinst.d/dkms"]}
    assert "libvulkan1:amd64" not in result["problems"]


# --------------------------------------------------------------------- repair.yml's shape

def test_repair_diagnoses_first_and_check_mode_stops_after_the_diagnosis():
    """`repair.yml --check` is the diagnosis only: every play that could change
    the box after it (the stages, the restarts, the record) is skipped in check mode."""
    import yaml

    plays = yaml.safe_load((ROOT / "playbooks/repair.yml").read_text())
    assert plays[0]["tasks"][0]["ansible.builtin.include_role"]["name"] == "diagnose"
    assert {"diagnose", "always"} <= set(plays[0]["tags"])
    guarded = "not ansible_check_mode"
    for play in plays[1:]:
        if "ansible.builtin.import_playbook" in play:
            stage = play["ansible.builtin.import_playbook"].removesuffix(".yml")
            if stage in ("gpu", "engine", "router"):  # and only when the diagnosis found them broken
                assert play.get("when") == f"{guarded} and '{stage}' in mi50_repair_stages", play["name"]
            elif stage != "preflight":  # read-only, runs in check mode
                assert play.get("when") == guarded, play["name"]
        else:
            assert [task.get("when") for task in play["tasks"]] == [guarded] * len(play["tasks"]), play["name"]
    stages = [p["ansible.builtin.import_playbook"] for p in plays if "ansible.builtin.import_playbook" in p]
    assert stages == ["preflight.yml", "gpu.yml", "engine.yml", "router.yml", "smoke.yml", "report.yml"]


# --------------------------------------------------------------------- why the module will not load

NOT_LOADED = {"module.loaded": False, "module.initstate": "", "nodes": {"kfd": False, "render": []}}


@pytest.mark.parametrize(("changes", "finding", "words"), [
    # kmod's message for EKEYREJECTED, as users report it after a DKMS build under Secure Boot.
    ({"module_load": {"rc": 1, "error": "modprobe: ERROR: could not insert 'amdgpu': Key was rejected by service"}},
     "module_key_rejected", ["Key was rejected by service", "mokutil --import"]),
    # The kernel's lockdown message for an unsigned module (kernel_lockdown(7)).
    ({"kernel_log": ["Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7"]},
     "module_key_rejected", ["unsigned module loading is restricted", "Enroll MOK"]),
    ({"kernel_log": ["amdgpu: Unknown symbol drm_sched_job_init (err -2)",
                     "amdgpu: disagrees about version of symbol amdttm_bo_init_reserved"]},
     "module_unknown_symbols", ["drm_sched_job_init", "amdttm_bo_init_reserved", "dkms remove"]),
    ({"modprobe_rules": [{"file": "/etc/modprobe.d/blacklist-amdgpu.conf", "line": "install amdgpu /bin/false"}]},
     "module_blacklisted", ["/etc/modprobe.d/blacklist-amdgpu.conf: install amdgpu /bin/false", "update-initramfs"]),
    ({"modprobe_rules": [{"file": "/etc/modprobe.d/gpu.conf", "line": "blacklist amdgpu"}]},
     "module_blacklisted", ["blacklist amdgpu", "stops loading at boot"]),
    ({"cmdline": "BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=UUID=x ro module_blacklist=radeon,amdgpu quiet"},
     "module_blacklisted", ["kernel command line: module_blacklist=radeon,amdgpu", "GRUB_CMDLINE_LINUX"]),
    ({"cmdline": "BOOT_IMAGE=/vmlinuz-6.8.0-45-generic root=UUID=x ro nomodeset"},
     "module_nomodeset", ["nomodeset", "update-grub"]),
    ({"kernel_log": ["amdgpu 0000:03:00.0: Direct firmware load for amdgpu/vega20_sos.bin failed with error -2"]},
     "firmware_missing", ["amdgpu/vega20_sos.bin", "firmware-amd-graphics"]),
])
def test_why_the_module_does_not_load_is_named_with_the_fix(changes, finding, words):
    found = {f["id"]: f for f in diagnose.diagnose_findings(state(**NOT_LOADED, **changes))}
    assert "module_not_loaded" in found and finding in found, list(found)
    text = " ".join(found[finding][k] for k in ("problem", "action", "manual"))
    for word in words:
        assert word in text


@pytest.mark.parametrize("changes", [
    {},
    # A modprobe that worked, and lines that only look alike.
    {"module_load": {"rc": 0, "error": ""}},
    {"kernel_log": ["amdgpu 0000:03:00.0: amdgpu: SMU is initialized successfully!"]},
    {"cmdline": "BOOT_IMAGE=/vmlinuz root=UUID=x ro module_blacklist=radeon quiet"},
    {"modprobe_rules": []},
])
def test_no_cause_is_invented(changes):
    ids_found = ids(state(**NOT_LOADED, **changes))
    assert not set(ids_found) & {"module_key_rejected", "module_unknown_symbols", "module_blacklisted",
                                 "module_nomodeset", "firmware_missing"}, ids_found


def test_causes_are_only_looked_for_when_the_module_is_not_loaded():
    loaded = state(**{"cmdline": "ro nomodeset", "kernel_log": ["amdgpu: Unknown symbol x (err -2)"]})
    assert "module_nomodeset" not in ids(loaded) and "module_unknown_symbols" not in ids(loaded)


# --------------------------------------------------------------------- the package manager

AUDIT = """The following packages are only half configured, probably due to problems
configuring them the first time.  The configuration should be retried using
dpkg --configure <package> or the configure option in the dselect menu:
 amdgpu-dkms          amdgpu driver in DKMS format.

The following packages have been unpacked but not yet configured.
They must be configured using dpkg --configure or the configure
menu option in dselect for them to work:
 hello                example package based on GNU hello
"""


def test_an_interrupted_dpkg_is_found_and_finished_first():
    found = {f["id"]: f for f in diagnose.diagnose_findings(state(dpkg_audit=AUDIT))}
    assert list(found) == ["dpkg_interrupted"]
    assert "amdgpu-dkms, hello unfinished" in found["dpkg_interrupted"]["problem"]
    assert "dpkg --configure -a" in found["dpkg_interrupted"]["action"]


def test_only_the_stacks_holds_are_noted():
    found = {f["id"]: f for f in diagnose.diagnose_findings(state(held=["linux-headers-6.8.0-45-generic", "nginx",
                                                                        "amdgpu-dkms"]))}
    assert found["packages_held"]["severity"] == "notice"
    assert "linux-headers-6.8.0-45-generic, amdgpu-dkms are held" in found["packages_held"]["problem"]
    assert "nginx" not in found["packages_held"]["problem"]
    assert "packages_held" not in ids(state(held=["nginx"]))


# Captured: apt-get check -q (apt 2.6.1, Debian 12 lab image without package lists, LC_ALL=C) after
# `dpkg -i` of two local packages whose dependencies are not installed; stdout, then stderr, joined as the
# role joins them.
APT_CHECK_BROKEN = """Reading package lists...
Building dependency tree...
Reading state information...
You might want to run 'apt --fix-broken install' to correct these.
The following packages have unmet dependencies:
 amdgpu-install : Depends: python3-setuptools but it is not installable
                  Depends: rsync but it is not installable
 needs-clinfo : Depends: clinfo but it is not installable
\nE: Unmet dependencies. Try 'apt --fix-broken install' with no packages (or specify a solution).
"""

# Captured the same way with Debian 12's package lists present: a dependency the archive has is named alone.
APT_CHECK_INSTALLABLE = """Reading package lists...
Building dependency tree...
Reading state information...
You might want to run 'apt --fix-broken install' to correct these.
The following packages have unmet dependencies:
 mi50-test-needs-hello : Depends: hello
\nE: Unmet dependencies. Try 'apt --fix-broken install' with no packages (or specify a solution).
"""


def test_an_unmet_dependency_the_archive_has_is_named():
    (found,) = diagnose.diagnose_findings(state(apt_check={"rc": "100", "output": APT_CHECK_INSTALLABLE}))
    assert "apt reports unmet dependencies (mi50-test-needs-hello : Depends: hello): every apt install" \
        in found["problem"]

def test_unmet_dependencies_are_found_with_apts_own_lines():
    found = {f["id"]: f for f in diagnose.diagnose_findings(state(apt_check={"rc": 100, "output": APT_CHECK_BROKEN}))}
    assert list(found) == ["packages_broken"]
    problem = found["packages_broken"]["problem"]
    assert "amdgpu-install : Depends: python3-setuptools but it is not installable" in problem
    assert "needs-clinfo : Depends: clinfo but it is not installable" in problem
    assert "--fix-broken" in found["packages_broken"]["action"]
    assert diagnose.diagnose_stages(report_of(state(apt_check={"rc": 100, "output": APT_CHECK_BROKEN}))) == \
        ["gpu", "engine", "router"]


def test_a_clean_check_or_a_held_lock_is_not_a_broken_dependency():
    assert ids(state(apt_check={"rc": 0, "output": "Reading package lists...\n"})) == []
    locked = ("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1234 (unattended-upgr)\n"
              "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?")
    assert ids(state(apt_check={"rc": 100, "output": locked})) == []


def test_a_failed_check_without_apts_lines_quotes_its_error():
    found = diagnose.diagnose_findings(state(apt_check={"rc": 100, "output": "E: The package cache file is corrupted"}))
    assert found[0]["id"] == "packages_broken"
    assert "E: The package cache file is corrupted" in found[0]["problem"]


# --------------------------------------------------------------------- which stages a repair reruns

def report_of(s: dict) -> dict:
    return {"findings": diagnose.diagnose_findings(s)}


@pytest.mark.parametrize(("changes", "stages"), [
    ({}, []),
    # A router that hangs: only the router stage.
    ({"router.ready": {"status": None, "msg": "timed out"}}, ["router"]),
    # The engine down, or a model gone: the engine and what depends on it.
    ({"engine.unit.ActiveState": "inactive"}, ["engine", "router"]),
    ({"engine.models.served": ["qwen2.5:7b-instruct-q4_K_M"]}, ["engine", "router"]),
    # Anything on the GPU side reruns everything after it.
    (KERNEL_UPDATE, ["gpu", "engine", "router"]),
    ({"dpkg_audit": AUDIT}, ["gpu", "engine", "router"]),
    # Notices need no stage.
    ({"held": ["amdgpu-dkms"]}, []),
])
def test_a_repair_reruns_the_first_broken_stage_and_those_after_it(changes, stages):
    assert diagnose.diagnose_stages(report_of(state(**changes))) == stages


def test_stages_can_be_forced():
    assert diagnose.diagnose_stages(report_of(state()), "all") == ["gpu", "engine", "router"]
    assert diagnose.diagnose_stages(report_of(state()), ["router"]) == ["router"]
    assert diagnose.diagnose_stages(report_of(state()), ["engine"]) == ["engine", "router"]
    with pytest.raises(ValueError):
        diagnose.diagnose_stages(report_of(state()), ["smoke"])


def test_the_key_rejection_quotes_modprobe_and_the_kernel():
    found = {f["id"]: f for f in diagnose.diagnose_findings(state(**NOT_LOADED, **{
        "module_load": {"rc": 1, "error": "modprobe: ERROR: could not insert 'amdgpu': Key was rejected by service"},
        "kernel_log": ["Loading of module with unavailable key is rejected"]}))}
    problem = found["module_key_rejected"]["problem"]
    assert "Key was rejected by service; Loading of module with unavailable key is rejected" in problem


# --------------------------------------------------------------------- offload measured by the engine role

ON_GPU = {"accelerated": True, "vram_fraction": 1.0, "processor": "100% GPU"}
ON_CPU = {"accelerated": False, "vram_fraction": 0.0, "processor": "100% CPU"}


@pytest.mark.parametrize(("offload", "gpu_tier", "expected"), [
    ({"qwen2.5:7b-instruct-q4_K_M": ON_GPU, "llama3.1:8b-instruct-q4_K_M": ON_GPU}, "rocm", []),
    ({"qwen2.5:7b-instruct-q4_K_M": ON_GPU, "llama3.1:8b-instruct-q4_K_M": ON_CPU}, "rocm",
     [("engine_on_cpu", "problem")]),
    ({"qwen2.5:7b-instruct-q4_K_M": {"accelerated": True, "vram_fraction": 0.62, "processor": "38%/62% CPU/GPU"}},
     "rocm", [("engine_on_cpu", "notice")]),
    # Nothing measured (ollama_verify_models off, or an engine that does not measure): nothing to say.
    ({}, "rocm", []),
    # The cpu tier: the CPU is what was asked for.
    ({"qwen2.5:7b-instruct-q4_K_M": ON_CPU}, "cpu", []),
], ids=["all-on-gpu", "one-on-cpu", "partly-in-vram", "not-measured", "cpu-tier"])
def test_a_model_measured_on_the_cpu_of_a_gpu_tier_is_a_problem(offload, gpu_tier, expected):
    found = diagnose.diagnose_findings(state(**{"engine.fact.offload": offload, "gpu_fact.tier": gpu_tier,
                                                "engine.fact.tier": gpu_tier}))
    assert [(f["id"], f["severity"]) for f in found if f["id"] == "engine_on_cpu"] == expected


def test_the_cpu_finding_names_the_model_and_makes_repair_rerun_the_engine():
    broken = state(**{"engine.fact.offload": {"qwen2.5:7b-instruct-q4_K_M": ON_GPU,
                                              "llama3.1:8b-instruct-q4_K_M": ON_CPU}})
    finding = next(f for f in diagnose.diagnose_findings(broken) if f["id"] == "engine_on_cpu")
    assert "llama3.1:8b-instruct-q4_K_M on the CPU" in finding["problem"]
    assert "qwen2.5" not in finding["problem"]
    assert "/dev/kfd" in finding["manual"]
    assert "engine" in diagnose.diagnose_stages({"findings": [finding]})
