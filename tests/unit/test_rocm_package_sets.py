"""The rocm role's package sets against AMD's dependencies (as the stand-in mirror
reproduces them, tests/standins/rocm/packages.py): the probes set brings the probes
and no HIP libraries, hip-sdk the HIP runtime and rocBLAS, full all of them."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("rocm_standin_packages", ROOT / "tests/standins/rocm/packages.py")
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)
SETS = yaml.safe_load((ROOT / "roles/rocm/vars/main.yml").read_text())["_rocm_package_sets"]
DEPENDS = {p["name"]: [re.split(r"\s", d)[0] for d in p["depends"]] for p in standin.PACKAGES if p["repo"] == standin.ROCM_642}


def closure(names: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in DEPENDS:
            continue
        seen.add(name)
        todo.extend(DEPENDS[name])
    return seen


def test_every_package_of_every_set_exists_in_the_release():
    for packages in SETS.values():
        assert set(packages) <= set(DEPENDS), packages


@pytest.mark.parametrize(("package_set", "has", "lacks"), [
    ("probes", {"rocminfo", "rocm-smi-lib"}, {"rocblas", "hip-runtime-amd", "rocm-opencl"}),
    ("hip-sdk", {"rocminfo", "hip-runtime-amd", "rocblas"}, {"rocm-opencl"}),
    ("full", {"rocminfo", "rocm-smi-lib", "hip-runtime-amd", "rocblas", "rocm-opencl"}, set()),
])
def test_each_set_brings_what_its_engine_needs_and_no_more(package_set, has, lacks):
    got = closure(SETS[package_set])
    assert has <= got and not lacks & got, sorted(got)
