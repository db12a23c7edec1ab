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
