"""The GPU runtime probes: parsers of rocminfo, vulkaninfo --summary and
clinfo --raw on real captured outputs (tests/unit/data/README.md says where each
comes from), the per-tier verdict, and the tier decision recorded in
gpu_backend.fact (docs/architecture.md)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import pytest
import yaml
from ansible_collections.mi50.stack.plugins.filter import probes

DATA = Path(__file__).resolve().parent / "data"
ROLES = Path(__file__).resolve().parents[2] / "roles"


def read(name: str) -> str:
    return (DATA / name).read_text()


def run(tier: str, stdout: str = "", stderr: str = "", rc: int = 0) -> dict:
    """A registered result of the probe command, as the role's loop produces it."""
    return {"item": tier, "rc": rc, "stdout": stdout, "stderr": stderr}


# --------------------------------------------------------------------------- rocminfo

def test_rocminfo_finds_the_mi50_among_published_agents():
    parsed = probes.rocminfo(read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout"))
    assert parsed["version"] == "1.1"
    gpus = [d for d in parsed["devices"] if d["type"] == "gpu"]
    assert [(d["name"], d["gfx_target"]) for d in gpus] == [("AMD Instinct MI210", "gfx90a"),
                                                            ("AMD Instinct MI50/MI60", "gfx906")]
    assert all(not d["software"] for d in gpus)


def test_rocminfo_cpu_agents_are_not_gpus():
    cpus = [d for d in probes.rocminfo(read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout"))["devices"]
            if d["type"] == "cpu"]
    assert len(cpus) == 2 and cpus[0]["name"] == "AMD EPYC 7452 32-Core Processor"
    assert all(d["gfx_target"] is None for d in cpus)


def test_rocminfo_takes_the_target_from_the_isa_when_the_name_is_not_one():
    text = read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout").replace("  Name:                    gfx906\n",
                                                                            "  Name:                    MI50\n")
    gpus = [d for d in probes.rocminfo(text)["devices"] if d["type"] == "gpu"]
    assert gpus[1]["gfx_target"] == "gfx906"


@pytest.mark.parametrize("capture", ["debian12-5.2.3-no-gpu", "debian13-6.1.2-no-gpu"])
def test_rocminfo_without_a_gpu_lists_nothing_and_says_why(capture):
    parsed = probes.rocminfo(read(f"rocminfo/{capture}.stdout"))
    assert parsed["devices"] == []
    assert parsed["message"] == "ROCk module is NOT loaded, possibly no GPU devices"  # ANSI colour stripped


def test_rocm_probe_passes_on_the_published_mi50_with_its_release():
    probe = probes.gpu_probe(run("rocm", read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout")),
                             rocm_release="6.4.2")
    assert probe["ok"] and probe["reason"] == ""
    # The first GPU agent is the device; an MI210 listed first wins over the MI50.
    assert probe["device"] == {"name": "AMD Instinct MI210", "type": "gpu", "gfx_target": "gfx90a", "software": False}
    assert probe["version"] == "6.4.2"


@pytest.mark.parametrize("capture", ["debian12-5.2.3-no-gpu", "debian13-6.1.2-no-gpu"])
def test_rocm_probe_rejects_a_host_without_gpu_with_rocminfos_words(capture):
    probe = probes.gpu_probe(run("rocm", read(f"rocminfo/{capture}.stdout"), read(f"rocminfo/{capture}.stderr"), rc=1))
    assert not probe["ok"]
    assert probe["reason"] == "rocminfo lists no GPU agent: ROCk module is NOT loaded, possibly no GPU devices"


def test_rocm_cpu_agents_never_pass_even_with_software_accepted():
    cpus_only = read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout").split("*******\nAgent 3")[0]
    probe = probes.gpu_probe(run("rocm", cpus_only), accept_software=True)
    assert not probe["ok"]
    assert probe["reason"].startswith("rocminfo lists no GPU agent, only: AMD EPYC 7452 32-Core Processor (cpu)")


TWO_MI50_ROCM42 = "rocminfo/rocm-issue-1535-2x-mi50-rocm4.2.stdout"
RADEON_VII_ROCM50 = "rocminfo/rocm-issue-1753-radeon-vii-rocm5.0.stdout"


def test_rocminfo_finds_two_published_mi50s_under_rocm_4_2():
    """ROCm 4.2 names the MI50 by its chip ("Vega 20"); the target comes from the agent name."""
    parsed = probes.rocminfo(read(TWO_MI50_ROCM42))
    assert parsed["version"] == "1.1" and parsed["message"] == ""
    assert [(d["name"], d["type"], d["gfx_target"], d["software"], d["vendor"]) for d in parsed["devices"]] == [
        ("AMD EPYC 7302 16-Core Processor", "cpu", None, True, "CPU"),
        ("Vega 20", "gpu", "gfx906", False, "AMD"),
        ("Vega 20", "gpu", "gfx906", False, "AMD"),
    ]


def test_rocminfo_finds_the_published_radeon_vii_under_rocm_5_0():
    parsed = probes.rocminfo(read(RADEON_VII_ROCM50))
    assert parsed["version"] == "1.1" and parsed["message"] == ""
    assert [(d["name"], d["type"], d["gfx_target"], d["software"], d["vendor"]) for d in parsed["devices"]] == [
        ("AMD Ryzen 7 2700X Eight-Core Processor", "cpu", None, True, "CPU"),
        ("AMD Radeon VII", "gpu", "gfx906", False, "AMD"),
    ]


@pytest.mark.parametrize(("capture", "release", "name"), [(TWO_MI50_ROCM42, "4.2.0", "Vega 20"),
                                                          (RADEON_VII_ROCM50, "5.0.0", "AMD Radeon VII")])
def test_rocm_probe_passes_on_the_published_gfx906_boxes(capture, release, name):
    probe = probes.gpu_probe(run("rocm", read(capture)), rocm_release=release)
    assert probe["ok"] and probe["reason"] == "" and probe["version"] == release
    assert probe["device"] == {"name": name, "type": "gpu", "gfx_target": "gfx906", "software": False}
    choice = probes.gpu_tier_choice({"rocm": probe}, ["rocm"])
    assert choice["fact"]["tier"] == "rocm" and not choice["error"]


@pytest.mark.parametrize("capture", [TWO_MI50_ROCM42, RADEON_VII_ROCM50])
def test_rocm_probe_rejects_the_published_boxes_cpu_agent_alone(capture):
    cpu_only = read(capture).split("*******\nAgent 2")[0]
    probe = probes.gpu_probe(run("rocm", cpu_only), accept_software=True)
    assert not probe["ok"] and probe["reason"].startswith("rocminfo lists no GPU agent, only: AMD ")


@pytest.mark.parametrize(("text", "release"), [("6.4.2-120\n", "6.4.2"), ("6.4.0\n", "6.4.0"), ("", ""), ("garbage", "")])
def test_rocm_release_file(text, release):
    assert probes.rocm_release(text) == release


# --------------------------------------------------------------------------- vulkaninfo

def test_vulkaninfo_lists_lavapipe_as_a_software_cpu_device():
    parsed = probes.vulkaninfo_summary(read("vulkaninfo/debian12-lavapipe.stdout"))
    assert parsed["version"] == "1.3.239"
    assert parsed["devices"] == [{"name": "llvmpipe (LLVM 15.0.6, 256 bits)", "type": "cpu", "software": True,
                                  "gfx_target": None, "driver": "llvmpipe", "api_version": "1.3.230"}]


def test_vulkaninfo_lists_a_published_radv_gpu():
    (device,) = probes.vulkaninfo_summary(read("vulkaninfo/published-radv-890m.devices"))["devices"]
    assert device["name"] == "AMD Radeon 890M Graphics (RADV STRIX1)"
    assert device["type"] == "integrated_gpu" and not device["software"] and device["driver"] == "radv"


def test_vulkaninfo_names_the_mi50s_target_from_radvs_chip_name():
    text = read("vulkaninfo/published-radv-890m.devices").replace("AMD Radeon 890M Graphics (RADV STRIX1)",
                                                                   "AMD Instinct MI60 / MI50 (RADV VEGA20)")
    assert probes.vulkaninfo_summary(text)["devices"][0]["gfx_target"] == "gfx906"


NAVI22 = "vulkaninfo/published-radv-navi22.devices"


def vega20_radv_names_by_line() -> list[list[str]]:
    """The RADV names real gfx906 cards had, found in each logged line (the # lines say where each was seen)."""
    return [re.findall(r"AMD [^:=|()]+ \(RADV VEGA20\)", line)
            for line in read("vulkaninfo/vega20-radv-device-names.log-lines").splitlines()
            if line.strip() and not line.startswith("#")]


def vega20_radv_names() -> list[str]:
    return [name for names in vega20_radv_names_by_line() for name in names]


def test_vulkaninfo_reads_a_published_radv_discrete_gpu():
    parsed = probes.vulkaninfo_summary(read(NAVI22))
    assert parsed["version"] is None  # only the Devices: section was published
    assert parsed["devices"] == [{"name": "AMD Radeon RX 6700 XT (RADV NAVI22)", "type": "discrete_gpu",
                                  "software": False, "gfx_target": "gfx1031", "driver": "radv",
                                  "api_version": "1.3.274"}]
    probe = probes.gpu_probe(run("vulkan", read(NAVI22)))
    assert probe["ok"] and probe["device"]["gfx_target"] == "gfx1031"


def test_the_real_vega20_names_are_read_from_the_log_lines():
    by_line = vega20_radv_names_by_line()
    assert len(by_line) == 4 and all(len(names) == 1 for names in by_line), by_line  # one name per logged line
    assert "AMD Instinct MI60 / MI50 (RADV VEGA20)" in vega20_radv_names()


@pytest.mark.parametrize("device_id", ["0x66a1", "0x66af"])
@pytest.mark.parametrize("name", vega20_radv_names())
def test_vulkan_probe_passes_on_each_real_vega20_name_in_the_real_layout(name, device_id):
    """No vulkaninfo --summary of a Vega 20 card was published: the real navi22 one, with
    a real gfx906 deviceName and a Vega 20 deviceID (MI50/Radeon Pro VII 0x66a1, Radeon VII 0x66af)."""
    text = read(NAVI22)
    assert "AMD Radeon RX 6700 XT (RADV NAVI22)" in text and "0x73df" in text
    text = text.replace("AMD Radeon RX 6700 XT (RADV NAVI22)", name).replace("0x73df", device_id)
    (device,) = probes.vulkaninfo_summary(text)["devices"]
    assert device == {"name": name, "type": "discrete_gpu", "software": False, "gfx_target": "gfx906",
                      "driver": "radv", "api_version": "1.3.274"}
    probe = probes.gpu_probe(run("vulkan", text))
    assert probe["ok"] and probe["reason"] == ""
    assert probe["device"] == {"name": name, "type": "discrete_gpu", "gfx_target": "gfx906", "software": False}


def test_vulkan_probe_rejects_lavapipe_as_software():
    probe = probes.gpu_probe(run("vulkan", read("vulkaninfo/debian12-lavapipe.stdout"),
                                 read("vulkaninfo/debian12-lavapipe.stderr")))
    assert not probe["ok"]
    assert probe["reason"] == "vulkaninfo lists no GPU device, only software devices: llvmpipe (LLVM 15.0.6, 256 bits) (cpu)"
    assert probe["version"] == "1.3.239"  # recorded even though the tier is rejected


def test_vulkan_probe_accepts_lavapipe_only_with_the_test_switch():
    probe = probes.gpu_probe(run("vulkan", read("vulkaninfo/debian12-lavapipe.stdout")), accept_software=True)
    assert probe["ok"]
    assert probe["device"] == {"name": "llvmpipe (LLVM 15.0.6, 256 bits)", "type": "cpu", "gfx_target": None,
                               "software": True}


def test_vulkan_probe_prefers_a_gpu_over_lavapipe():
    both = read("vulkaninfo/debian12-lavapipe.stdout") + read("vulkaninfo/published-radv-890m.devices").replace(
        "Devices:\n========\nGPU0:", "GPU1:")
    probe = probes.gpu_probe(run("vulkan", both), accept_software=True)
    assert probe["device"]["name"] == "AMD Radeon 890M Graphics (RADV STRIX1)"


def test_vulkan_probe_without_a_driver_quotes_the_loader():
    probe = probes.gpu_probe(run("vulkan", read("vulkaninfo/debian12-no-driver.stdout"),
                                 read("vulkaninfo/debian12-no-driver.stderr"), rc=1))
    assert not probe["ok"] and probe["version"] is None
    assert probe["reason"] == ("vulkaninfo lists no GPU device: ERROR: [Loader Message] Code 0 : "
                               "vkCreateInstance: Found no drivers!")


# --------------------------------------------------------------------------- clinfo

def test_clinfo_lists_pocls_cpu_device():
    parsed = probes.clinfo_raw(read("clinfo/debian12-pocl.raw"))
    assert parsed["platforms"] == [{"name": "Portable Computing Language", "vendor": "The pocl project", "version": "3.0"}]
    (device,) = parsed["devices"]
    assert device["type"] == "cpu" and device["software"] and device["platform"] == "Portable Computing Language"
    assert device["name"].startswith("pthread-")


def test_clinfo_keeps_devices_with_their_platform_when_suffixes_repeat():
    """rusticl and Clover both use the MESA suffix; PoCL's device stays PoCL's."""
    parsed = probes.clinfo_raw(read("clinfo/debian12-pocl-rusticl-clover.raw"))
    assert [(p["name"], p["version"]) for p in parsed["platforms"]] == [
        ("Portable Computing Language", "3.0"), ("rusticl", "3.0"), ("Clover", "1.1")]
    assert [d["platform"] for d in parsed["devices"]] == ["Portable Computing Language"]


def test_clinfo_reads_an_amd_gpu_with_its_board_name_and_target():
    (device,) = probes.clinfo_raw(read("clinfo/synthetic-rocm-gfx906.raw"))["devices"]
    assert device == {"name": "AMD Instinct MI50/MI60", "type": "gpu", "software": False, "gfx_target": "gfx906",
                      "platform": "AMD Accelerated Parallel Processing", "version": "2.0"}


def test_opencl_probe_passes_on_an_amd_gpu():
    probe = probes.gpu_probe(run("opencl", read("clinfo/synthetic-rocm-gfx906.raw")))
    assert probe["ok"] and probe["device"]["gfx_target"] == "gfx906" and probe["version"] == "2.1"


def test_opencl_probe_rejects_pocl_as_software():
    probe = probes.gpu_probe(run("opencl", read("clinfo/debian12-pocl-rusticl-clover.raw")))
    assert not probe["ok"]
    assert probe["reason"].startswith("clinfo lists no GPU device, only software devices: pthread-")
    assert probe["reason"].endswith("(cpu, Portable Computing Language)")


def test_opencl_probe_accepts_pocl_only_with_the_test_switch():
    probe = probes.gpu_probe(run("opencl", read("clinfo/debian12-pocl-rusticl-clover.raw")), accept_software=True)
    assert probe["ok"] and probe["device"]["software"]
    assert probe["version"] == "3.0"  # PoCL's platform, the one serving the device


def test_opencl_probe_names_the_platforms_without_devices():
    probe = probes.gpu_probe(run("opencl", read("clinfo/debian12-rusticl-clover.raw")), accept_software=True)
    assert not probe["ok"]
    assert probe["reason"] == "clinfo lists no device on its platforms (rusticl, Clover)"


def test_opencl_probe_without_an_icd_says_so():
    probe = probes.gpu_probe(run("opencl", read("clinfo/debian12-no-icd.raw")), accept_software=True)
    assert probe["reason"] == "clinfo lists no OpenCL platform (no ICD file in /etc/OpenCL/vendors)"


AMD_APP = "AMD Accelerated Parallel Processing"
MI50_BY_AMD_CLINFO = {"name": "Vega 20", "type": "gpu", "software": False, "gfx_target": "gfx906",
                      "platform": AMD_APP, "version": "2.0"}


def test_clinfo_reads_amds_own_clinfo_on_two_published_mi50s():
    """AMD's clinfo ignores --raw; its own layout is read as well (ROCm issue #1535)."""
    parsed = probes.clinfo_raw(read("clinfo/rocm-issue-1535-2x-mi50-amd-clinfo.excerpt"))
    assert parsed["platforms"] == [{"name": "Clover", "vendor": "Mesa", "version": "1.1"},
                                   {"name": AMD_APP, "vendor": "Advanced Micro Devices, Inc.", "version": "2.0"}]
    assert [d for d in parsed["devices"] if d["platform"] == AMD_APP] == [MI50_BY_AMD_CLINFO, MI50_BY_AMD_CLINFO]
    (clover,) = [d for d in parsed["devices"] if d["platform"] == "Clover"]
    assert clover["type"] == "gpu" and not clover["software"] and clover["name"].startswith("AMD VEGA20 (DRM")


def test_opencl_probe_passes_on_two_mi50s_listed_by_amds_own_clinfo():
    probe = probes.gpu_probe(run("opencl", read("clinfo/rocm-issue-1535-2x-mi50-amd-clinfo.excerpt")))
    assert probe["ok"] and probe["reason"] == ""
    assert [d["gfx_target"] for d in probe["devices"] if d["platform"] == AMD_APP] == ["gfx906", "gfx906"]
    choice = probes.gpu_tier_choice({"opencl": probe}, ["opencl"])
    assert choice["fact"]["tier"] == "opencl" and not choice["error"]


def test_amd_clinfo_device_without_a_single_type_is_kept_as_unknown():
    """clinfo.cpp prints only exact single types, and no newline otherwise, so
    `Vendor ID:` lands on the type line; the device is listed but is no GPU."""
    text = ("Number of platforms:\t\t\t\t 1\n  Platform Profile:\t\t\t\t FULL_PROFILE\n"
            "  Platform Version:\t\t\t\t OpenCL 2.1 AMD-APP (3581.0)\n  Platform Name:\t\t\t\t " + AMD_APP + "\n"
            "  Platform Vendor:\t\t\t\t Advanced Micro Devices, Inc.\n\n\n  Platform Name:\t\t\t\t " + AMD_APP + "\n"
            "Number of devices:\t\t\t\t 1\n  Device Type:\t\t\t\t\t   Vendor ID:\t\t\t\t\t 1002h\n"
            "  Name:\t\t\t\t\t\t gfx906:sramecc+:xnack-\n  Version:\t\t\t\t\t OpenCL 2.0 \n")
    (device,) = probes.clinfo_raw(text)["devices"]
    assert device["type"] == "unknown" and device["gfx_target"] == "gfx906"
    assert not probes.gpu_probe(run("opencl", text))["ok"]


@pytest.mark.parametrize(("capture", "platforms", "devices"), [
    ("debian12-no-icd.raw", [], []),
    ("debian12-pocl.raw", ["Portable Computing Language"], ["cpu"]),
    ("debian12-pocl-rusticl-clover.raw", ["Portable Computing Language", "rusticl", "Clover"], ["cpu"]),
    ("debian12-rusticl-clover.raw", ["rusticl", "Clover"], []),
    ("synthetic-rocm-gfx906.raw", [AMD_APP], ["gpu"]),
])
def test_khronos_raw_listings_still_parse_as_before(capture, platforms, devices):
    parsed = probes.clinfo_raw(read(f"clinfo/{capture}"))
    assert [p["name"] for p in parsed["platforms"]] == platforms
    assert [d["type"] for d in parsed["devices"]] == devices


# --------------------------------------------------------------------------- one clinfo for every role

def role_yaml(role: str, name: str) -> dict:
    return yaml.safe_load((ROLES / role / name).read_text())


def resolve(command: str, search_path: list) -> str:
    """Where `timeout` finds a command, assuming the worst: every directory has one."""
    return command if PurePosixPath(command).is_absolute() else f"{search_path[0]}/{command}"


def opencl_probes() -> dict:
    """The clinfo command each role runs and the PATH it runs under (the opencl role
    sets none, so it gets whatever the host's; assume ROCm's directory comes first)."""
    worst = ["/opt/rocm/bin", "/usr/bin"]
    return {
        "gpu_backend": (role_yaml("gpu_backend", "vars/main.yml")["_gpu_backend_probe_commands"]["opencl"],
                        role_yaml("gpu_backend", "defaults/main.yml")["gpu_backend_probe_path"]),
        "diagnose": (role_yaml("diagnose", "vars/main.yml")["_diagnose_probe_commands"]["opencl"],
                     role_yaml("diagnose", "defaults/main.yml")["diagnose_probe_path"]),
        "opencl": (role_yaml("opencl", "vars/main.yml")["_opencl_list_command"], worst),
    }


def test_every_role_runs_the_distributions_clinfo_never_rocms():
    """ROCm's /opt/rocm/bin/clinfo ignores --raw: the tier probe, diagnose and the
    opencl role's check all run the Khronos clinfo of the package the opencl role installs."""
    found = {role: resolve(argv[0], path) for role, (argv, path) in opencl_probes().items()}
    assert found == {"gpu_backend": "/usr/bin/clinfo", "diagnose": "/usr/bin/clinfo", "opencl": "/usr/bin/clinfo"}
    assert {tuple(argv) for argv, _path in opencl_probes().values()} == {("/usr/bin/clinfo", "--raw")}
    assert "clinfo" in role_yaml("opencl", "vars/Debian.yml")["_opencl_base_packages"]


@pytest.mark.parametrize("role", ["gpu_backend", "diagnose"])
def test_rocminfo_is_still_found_under_opt_rocm_bin(role):
    commands = role_yaml(role, "vars/main.yml")[f"_{role}_probe_commands"]
    path = role_yaml(role, "defaults/main.yml")[f"{role}_probe_path"]
    assert resolve(commands["rocm"][0], path) == "/opt/rocm/bin/rocminfo"


# --------------------------------------------------------------------------- probe failures

@pytest.mark.parametrize(("tier", "tool"), [("rocm", "rocminfo"), ("vulkan", "vulkaninfo"), ("opencl", "clinfo")])
def test_a_missing_tool_is_a_reason_not_a_failure(tier, tool):
    # coreutils timeout exits 127 when it cannot find the command.
    probe = probes.gpu_probe(run(tier, "", f"timeout: failed to run command '{tool}': No such file or directory", rc=127))
    assert probe == {"tool": tool, "ok": False, "reason": f"{tool} not installed", "devices": [], "device": None,
                     "version": None}


@pytest.mark.parametrize("rc", [124, 137])
def test_a_hung_tool_is_rejected_with_the_timeout(rc):
    probe = probes.gpu_probe(run("rocm", rc=rc), timeout=60)
    assert probe["reason"] == "rocminfo did not answer within 60 s (timed out)"


def test_unknown_tier_is_an_error():
    with pytest.raises(ValueError):
        probes.gpu_probe(run("cuda"))


# --------------------------------------------------------------------------- decision

NO_GPU = {"item": "rocm", "rc": 1, "stdout": "", "stderr": ""}


def lab_probes(accept_software: bool = False) -> dict:
    """What the lab container shows: Debian's rocminfo, lavapipe and PoCL."""
    return probes.gpu_probes([
        run("rocm", read("rocminfo/debian12-5.2.3-no-gpu.stdout"), rc=1),
        run("vulkan", read("vulkaninfo/debian12-lavapipe.stdout")),
        run("opencl", read("clinfo/debian12-pocl.raw")),
    ], accept_software=accept_software)


def mi50_probes() -> dict:
    return probes.gpu_probes([
        run("rocm", read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout")),
        run("vulkan", read("vulkaninfo/debian12-lavapipe.stdout")),
        run("opencl", read("clinfo/synthetic-rocm-gfx906.raw")),
    ], rocm_release="6.4.2")


ORDER = ["rocm", "vulkan", "opencl"]


def test_first_passing_tier_in_order_wins_and_the_fact_follows_the_contract():
    choice = probes.gpu_tier_choice(mi50_probes(), ORDER)
    fact = choice["fact"]
    assert choice["error"] == "" and choice["warnings"] == []
    assert set(fact) == {"schema", "tier", "forced", "order", "device", "versions", "available", "rejected", "probes"}
    assert fact["schema"] == 1 and fact["tier"] == "rocm" and fact["forced"] is False and fact["order"] == ORDER
    assert fact["available"] == ["rocm", "opencl"]
    assert fact["versions"] == {"rocm": "6.4.2", "vulkan": "1.3.239", "opencl": "2.1"}
    assert list(fact["rejected"]) == ["vulkan"]
    assert set(fact["probes"]["rocm"]) == {"ok", "reason", "version", "devices"}
    assert set(fact["probes"]["rocm"]["devices"][0]) == {"name", "type", "gfx_target", "software"}


def test_order_decides_between_passing_tiers():
    fact = probes.gpu_tier_choice(mi50_probes(), ["opencl", "rocm", "vulkan"])["fact"]
    assert fact["tier"] == "opencl" and fact["device"]["name"] == "AMD Instinct MI50/MI60"


def test_no_tier_fails_with_every_reason():
    choice = probes.gpu_tier_choice(lab_probes(), ORDER)
    assert choice["fact"]["tier"] is None
    assert choice["error"].startswith("No GPU runtime tier passed its probe (rocm: rocminfo lists no GPU agent")
    assert "vulkan: vulkaninfo lists no GPU device, only software devices" in choice["error"]
    assert "gpu_backend_allow_cpu: true" in choice["error"]


def test_no_tier_selects_cpu_when_allowed():
    choice = probes.gpu_tier_choice(lab_probes(), ORDER, allow_cpu=True)
    assert choice["error"] == ""
    assert choice["fact"]["tier"] == "cpu" and choice["fact"]["device"] is None
    assert set(choice["fact"]["rejected"]) == set(ORDER)
    assert choice["warnings"]


def test_software_devices_pass_with_the_test_switch():
    fact = probes.gpu_tier_choice(lab_probes(accept_software=True), ORDER)["fact"]
    assert fact["tier"] == "vulkan" and fact["device"]["software"] is True
    assert fact["available"] == ["vulkan", "opencl"] and list(fact["rejected"]) == ["rocm"]


def test_forcing_a_passing_tier_records_it_as_forced():
    fact = probes.gpu_tier_choice(mi50_probes(), ORDER, force="opencl")["fact"]
    assert fact["tier"] == "opencl" and fact["forced"] is True and fact["device"]["gfx_target"] == "gfx906"


def test_forcing_a_failed_tier_is_refused():
    choice = probes.gpu_tier_choice(mi50_probes(), ORDER, force="vulkan")
    assert choice["error"].startswith("gpu_backend_force_tier is vulkan, but its probe failed: vulkaninfo lists no GPU")


def test_forcing_a_failed_tier_unchecked_is_honoured_with_a_warning():
    choice = probes.gpu_tier_choice(mi50_probes(), ORDER, force="vulkan", force_unchecked=True)
    assert choice["error"] == ""
    assert choice["fact"]["tier"] == "vulkan" and choice["fact"]["device"] is None
    assert "forced although its probe failed" in choice["warnings"][0]


def test_forcing_cpu_needs_no_probe():
    fact = probes.gpu_tier_choice(mi50_probes(), ORDER, force="cpu")["fact"]
    assert fact["tier"] == "cpu" and fact["forced"] is True and fact["available"] == ["rocm", "opencl"]


def test_summary_names_the_choice_and_every_rejection():
    lines = probes.gpu_tier_summary(probes.gpu_tier_choice(mi50_probes(), ORDER)["fact"])
    assert lines[0] == "Chosen tier: rocm on AMD Instinct MI210 (gfx90a)"
    assert lines[1] == "Available rocm (version 6.4.2)"
    assert lines[2].startswith("Rejected vulkan: vulkaninfo lists no GPU device, only software devices")
    assert lines[3] == "Available opencl (version 2.1)"
