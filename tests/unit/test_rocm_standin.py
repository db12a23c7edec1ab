"""The ROCm stand-ins agree with the rocm role's defaults and with the project's
rocminfo parser (the one gpu_backend uses), so the rocm scenario tests what a
real MI50 host would show. Fast checks; the Molecule scenario runs them for real."""

from __future__ import annotations

import importlib.util
import re
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
import yaml
from ansible_collections.mi50.stack.plugins.filter.probes import rocminfo as parse_rocminfo

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "standins" / "rocm"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "rocm" / "defaults" / "main.yml").read_text())


def load(path: Path, name: str):
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        spec = importlib.util.spec_from_loader(name, SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PACKAGES = load(STANDINS / "packages.py", "rocm_standin_packages")


def version_of(name: str, repo: str) -> str:
    return next(p["version"] for p in PACKAGES.PACKAGES if p["name"] == name and p["repo"] == repo)


def test_defaults_pin_amds_real_signing_key():
    # AMD's ROCm release key (pub rsa4096 2016-08-01, "ROCm Release Manager").
    assert DEFAULTS["rocm_apt_key_fingerprint"] == "CA8BB4727A47B4D09B4EE8969386B48A1A693C5C"


def test_standin_release_is_the_roles_release():
    number = "%d%02d%02d" % tuple(int(x) for x in DEFAULTS["rocm_version"].split("."))
    assert PACKAGES.ROCM_642 == f"rocm/apt/{DEFAULTS['rocm_version']}"
    assert version_of("rocm-core", PACKAGES.ROCM_642).startswith(f"{DEFAULTS['rocm_version']}.{number}-")
    assert all(number in p["version"] for p in PACKAGES.PACKAGES if p["repo"] != PACKAGES.ROCM_633)


def test_standin_rocblas_for_gfx906_is_the_roles_source():
    assert PACKAGES.ROCM_633 == f"rocm/apt/{DEFAULTS['rocm_rocblas_gfx906_release']}"
    assert version_of("rocblas", PACKAGES.ROCM_633) == DEFAULTS["rocm_rocblas_gfx906_package_version"]


# Real rocBLAS library file names: Kernels.so-000-<target>.hsaco, TensileLibrary_lazy_<target>.dat,
# TensileLibrary_Type_<...>_<target>.co/.dat/.hsaco and the architecture-neutral _fallback.dat.
TENSILE = re.compile(r"^(Kernels\.so-000-gfx[0-9a-f]+(-xnack[+-])?\.hsaco|TensileLibrary_lazy_gfx[0-9a-f]+\.dat"
                     r"|TensileLibrary_Type_\w+?_Contraction_l_A\w+_B\w+_Cijk_Dijk"
                     r"(_fallback\.dat|(_fallback)?_gfx[0-9a-f]+(-xnack[+-])?\.(co|dat|hsaco)))$")


@pytest.mark.parametrize("filename", PACKAGES.ROCBLAS_642_LIBRARY + PACKAGES.ROCBLAS_633_GFX906 + PACKAGES.ROCBLAS_633_OTHER)
def test_standin_rocblas_files_are_named_like_amds(filename):
    assert TENSILE.match(filename), filename


def test_only_the_633_rocblas_carries_gfx906():
    assert not [f for f in PACKAGES.ROCBLAS_642_LIBRARY if "gfx906" in f]
    assert all("gfx906" in f for f in PACKAGES.ROCBLAS_633_GFX906)
    assert not [f for f in PACKAGES.ROCBLAS_633_OTHER if "gfx906" in f]


def run_rocminfo(rocminfo, capsys) -> tuple[int, dict]:
    code = rocminfo.main()
    return code, parse_rocminfo(capsys.readouterr().out)


def test_simulated_mi50_is_a_gfx906_gpu_agent(simulated, capsys):
    simulate, rocminfo, _ = simulated
    simulate.add()
    code, parsed = run_rocminfo(rocminfo, capsys)
    assert code == 0
    gpus = [d for d in parsed["devices"] if d["type"] == "gpu"]
    assert [(g["gfx_target"], g["name"], g["software"]) for g in gpus] == [("gfx906", "AMD Instinct MI50/MI60", False)]
    assert parsed["version"] == "1.15"


def test_without_the_driver_rocminfo_fails_like_the_real_one(simulated, capsys):
    """Byte for byte what Debian 13's real rocminfo 6.1.2 printed in a container without a GPU."""
    simulate, rocminfo, _ = simulated
    simulate.add()
    simulate.remove()
    code = rocminfo.main()
    out = capsys.readouterr().out
    assert code == 1
    assert out == (ROOT / "tests/unit/data/rocminfo/debian13-6.1.2-no-gpu.stdout").read_text()
    assert parse_rocminfo(out)["message"] == "ROCk module is NOT loaded, possibly no GPU devices"


def test_with_the_gpu_node_hidden_only_the_cpu_agent_is_listed(simulated, capsys):
    simulate, rocminfo, _ = simulated
    simulate.add()
    simulate.hide()
    code, parsed = run_rocminfo(rocminfo, capsys)
    assert code == 0
    assert [d["type"] for d in parsed["devices"]] == ["cpu"]


def test_without_dev_kfd_rocminfo_says_it_cannot_open_it(simulated, capsys):
    simulate, rocminfo, _ = simulated
    simulate.add()
    (simulate.DEVICES[0]).unlink()
    code = rocminfo.main()
    out = capsys.readouterr().out
    assert code == 1
    assert "Unable to open /dev/kfd read-write: No such file or directory" in out


# --------------------------------------------------------------------------- the stand-in against real rocminfo

REAL = ROOT / "tests" / "unit" / "data" / "rocminfo"
ROCM_533_MI50 = REAL / "rocm-issue-1886-mi210-mi50-mi100.stdout"  # agent 4 is the MI50
ROCM_42_MI50 = REAL / "rocm-issue-1535-2x-mi50-rocm4.2.stdout"  # agents 2 and 3 are MI50s
ROCM_50_RADEON_VII = REAL / "rocm-issue-1753-radeon-vii-rocm5.0.stdout"

# Fields ROCm/rocminfo (rocminfo.cc) added after ROCm 5.3.3, which the stand-in of 6.4.2 prints:
# DMAbuf Support (2022-11), the CP/SDMA ucode lines (2022-12), IOMMU Support (2023-01), Mwaitx
# (2023-02), extended fine-grained pools (2023-07), Coherent Host Access (2023-08), Alloc Recommended
# Granule (2023-08), Runtime Ext Version (2023-10), Memory Properties (2023-11), XNACK enabled and
# VMM Support (2024-09).
ADDED_AFTER_533_SYSTEM = {"Runtime Ext Version:", "Mwaitx:", "XNACK enabled:", "DMAbuf Support:", "VMM Support:"}
ADDED_AFTER_533_AGENT = {"Coherent Host Access:", "Memory Properties:", "Packet Processor uCode::",
                         "SDMA engine uCode::", "IOMMU Support::"}
ADDED_AFTER_533_POOL = {"Alloc Recommended Granule:"}
ADDED_AFTER_533_SEGMENTS = {"GLOBAL; FLAGS: EXTENDED FINE GRAINED"}
# ... and between ROCm 4.2 and 5.3.3: ASIC Revision (2022-03); ROCm 4.2's runtime reported no L2 size.
ADDED_AFTER_42_AGENT = {"ASIC Revision:", "Cache Info:/L2:"}
# Values that differ between machines (the 1886 box has the MI50 as its fourth agent).
PER_MACHINE = {"Uuid:", "Node:", "BDFID:", "Internal Node ID:"}
# Values ROCm 4.2 gave the same card otherwise: the chip as marketing name, a 4096-packet minimum
# queue, and no fast f16 operation on the agent.
ROCM_42_VALUES = {"Marketing Name:", "Queue Min Size:", "Fast F16 Operation:"}


def field(line: str) -> tuple[int, str, str]:
    """(indent level, label, value) of a rocminfo line: labels end in their colon(s) or, for
    headings and axes ("Pool 1", "x"), are the first word group."""
    body = line.rstrip()
    level = (len(body) - len(body.lstrip(" "))) // 2
    body = body.strip()
    labelled = re.match(r"^(.*?:+)\s*(.*)$", body)
    if labelled:
        return level, labelled.group(1), labelled.group(2)
    label, _, value = body.partition("  ")
    return level, label, value.strip()


def agents(text: str) -> tuple[list[tuple[str, str]], list[dict]]:
    """The HSA System Attributes as (label, value) pairs, and each agent as {"fields": [(path,
    value)...] outside its pools, "pools": {segment: [(label, value)...]}}. A path names the
    headings above a field ("Cache Info:/L1:", "ISA Info:/ISA 1/Name:")."""
    system, blocks = [], []
    section = None
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        if not line.strip() or set(line.strip()) <= {"=", "*"}:
            continue
        if line.strip() in ("HSA System Attributes", "HSA Agents", "*** Done ***"):
            section = line.strip()
            continue
        if re.fullmatch(r"Agent \d+\s*", line):
            blocks.append({"fields": [], "pools": {}})
            stack: list[str] = []
            pool: list | None = None
            continue
        level, label, value = field(line)
        if section == "HSA System Attributes":
            system.append((label, value))
            continue
        if not blocks:
            continue
        del stack[max(level - 1, 0):]
        stack.append(label)
        if stack[0] == "Pool Info:" and len(stack) == 3:
            if label == "Segment:":
                pool = blocks[-1]["pools"].setdefault(value, [])
            pool.append((label, value))
        elif stack[0] != "Pool Info:" or len(stack) == 1:
            blocks[-1]["fields"].append(("/".join(stack), value))
    return system, blocks


def real(path: Path, number: int) -> dict:
    return agents(path.read_text())[1][number - 1]


def standin_output(simulated, capsys) -> str:
    simulate, rocminfo, _ = simulated
    simulate.add()
    assert rocminfo.main() == 0
    return capsys.readouterr().out


def labels(pairs: list, leave_out: set = frozenset()) -> list[str]:
    return [label for label, _ in pairs if label not in leave_out]


def test_the_published_mi50_blocks_are_read_as_agents():
    """The helper reads the real files: a CPU and GPU agents, the MI50's pools by segment."""
    assert [dict(b["fields"])["Device Type:"] for b in agents(ROCM_42_MI50.read_text())[1]] == ["CPU", "GPU", "GPU"]
    mi50 = real(ROCM_533_MI50, 4)
    assert dict(mi50["fields"])["Chip ID:"] == "26273(0x66a1)"
    assert list(mi50["pools"]) == ["GLOBAL; FLAGS: COARSE GRAINED", "GROUP"]
    assert ("ISA Info:/ISA 1/Name:", "amdgcn-amd-amdhsa--gfx906:sramecc+:xnack-") in mi50["fields"]


def test_standin_mi50_block_has_the_real_fields_in_the_real_order(simulated, capsys):
    """Field by field, the stand-in's GPU agent is the real ROCm 5.3.3 MI50 block plus what
    rocminfo printed since (and the ROCm 4.2 block plus what it printed since 4.2)."""
    (_cpu, gpu) = agents(standin_output(simulated, capsys))[1]
    assert labels(gpu["fields"], ADDED_AFTER_533_AGENT) == labels(real(ROCM_533_MI50, 4)["fields"])
    assert labels(gpu["fields"], ADDED_AFTER_533_AGENT | ADDED_AFTER_42_AGENT) == \
        labels(real(ROCM_42_MI50, 2)["fields"]) == labels(real(ROCM_42_MI50, 3)["fields"])


@pytest.mark.parametrize(("capture", "number", "differ"), [
    (ROCM_533_MI50, 4, PER_MACHINE),
    (ROCM_42_MI50, 2, PER_MACHINE | ROCM_42_VALUES),
    (ROCM_42_MI50, 3, PER_MACHINE | ROCM_42_VALUES),
])
def test_standin_mi50_shows_the_values_a_real_mi50_shows(simulated, capsys, capture, number, differ):
    """Every field both print has the real MI50's value (Name gfx906, Marketing Name, Vendor,
    Device Type, Chip ID 26273(0x66a1), 60 CUs, 1725 MHz, the ISA name...), but for what
    differs between machines and ROCm releases."""
    (_cpu, gpu) = agents(standin_output(simulated, capsys))[1]
    mine, theirs = dict(gpu["fields"]), dict(real(capture, number)["fields"])
    assert {k: mine[k] for k in theirs if k not in differ} == {k: v for k, v in theirs.items() if k not in differ}
    for key in ("Name:", "Vendor Name:", "Device Type:", "Chip ID:", "Compute Unit:", "ISA Info:/ISA 1/Name:"):
        assert mine[key] == theirs[key]
    newest = dict(real(ROCM_533_MI50, 4)["fields"])  # the latest release among the real outputs
    assert mine["Marketing Name:"] == newest["Marketing Name:"] == "AMD Instinct MI50/MI60"


@pytest.mark.parametrize(("capture", "number"), [(ROCM_533_MI50, 1), (ROCM_533_MI50, 4), (ROCM_42_MI50, 2)])
def test_standin_pools_are_the_real_ones(simulated, capsys, capture, number):
    """Each real pool (by segment) is printed with the real fields and values (the host's RAM
    aside); the stand-in adds only the pools and fields of later releases."""
    blocks = agents(standin_output(simulated, capsys))[1]
    theirs = real(capture, number)
    mine = blocks[0] if dict(theirs["fields"])["Device Type:"] == "CPU" else blocks[1]
    assert set(mine["pools"]) - set(theirs["pools"]) <= ADDED_AFTER_533_SEGMENTS
    for segment, pool in theirs["pools"].items():
        leave_out = ADDED_AFTER_533_POOL | ({"Size:"} if number == 1 else set())
        assert labels(mine["pools"][segment], ADDED_AFTER_533_POOL) == labels(pool)
        assert [p for p in mine["pools"][segment] if p[0] not in leave_out] == \
            [p for p in pool if p[0] not in leave_out]


def test_standin_cpu_agent_has_the_real_fields(simulated, capsys):
    (cpu, _gpu) = agents(standin_output(simulated, capsys))[1]
    theirs = real(ROCM_533_MI50, 1)
    assert labels(cpu["fields"], ADDED_AFTER_533_AGENT) == labels(theirs["fields"])
    same = ("Uuid:", "Vendor Name:", "Feature:", "Profile:", "Device Type:", "Chip ID:", "SIMDs per CU:")
    assert {k: dict(cpu["fields"])[k] for k in same} == {k: dict(theirs["fields"])[k] for k in same}


def test_standin_system_attributes_are_the_real_ones_and_later_ones(simulated, capsys):
    system = agents(standin_output(simulated, capsys))[0]
    real_system = agents(ROCM_533_MI50.read_text())[0]
    assert labels(system, ADDED_AFTER_533_SYSTEM) == labels(real_system)
    assert dict(system)["Machine Model:"] == "LARGE" and dict(system)["System Endianness:"] == "LITTLE"


def test_standin_radeon_vii_is_named_as_real_rocminfo_names_it(simulated, capsys, monkeypatch):
    """The stand-in's other Vega 20 marketing name, against ROCm 5.0's Radeon VII (1002:66af)."""
    simulate, _rocminfo, _ = simulated
    monkeypatch.setitem(simulate.GPU_NODE, "device_id", 0x66AF)
    (_cpu, gpu) = agents(standin_output(simulated, capsys))[1]
    mine, theirs = dict(gpu["fields"]), dict(real(ROCM_50_RADEON_VII, 2)["fields"])
    for key in ("Name:", "Marketing Name:", "Vendor Name:", "Device Type:", "Chip ID:", "Compute Unit:",
                "ISA Info:/ISA 1/Name:"):
        assert mine[key] == theirs[key], key


def test_standin_prints_an_empty_pool_as_rocminfo_does(simulated, capsys):
    """rocminfo.cc prints every pool size with int_to_string, so nothing is "0KB" but "0(0x0) KB"."""
    _simulate, rocminfo, _ = simulated
    rocminfo.pool(1, "GLOBAL; FLAGS: COARSE GRAINED", 0, True, 4, 2048, 4, False)
    assert ("Size:", "0(0x0) KB") in [field(line)[1:] for line in capsys.readouterr().out.splitlines()]
