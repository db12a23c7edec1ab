"""Make the project's collection importable as `ansible_collections.mi50.stack`, and
share the simulated MI50 (the ROCm stand-ins) between the tests that use it."""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))


def load_script(path: Path, name: str):
    """Import a project script (with or without a .py suffix) as a module."""
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        spec = importlib.util.spec_from_loader(name, SourceFileLoader(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def simulated(tmp_path, monkeypatch):
    """simulate-gpu and the stand-in rocminfo, pointed at a temporary root instead of /run and
    /dev: (simulate, rocminfo, the simulated sysfs). No card is added yet."""
    rocm = ROOT / "tests" / "standins" / "rocm"
    simulate = load_script(rocm / "simulate-gpu", f"standin_simulate_gpu_{id(tmp_path)}")
    rocminfo = load_script(rocm / "rocminfo", f"standin_rocminfo_{id(tmp_path)}")
    root = tmp_path / "mi50-standin"
    monkeypatch.setattr(simulate, "ROOT", root)
    monkeypatch.setattr(simulate, "SYS", root / "sys")
    monkeypatch.setattr(simulate, "PCI", root / "sys/bus/pci/devices/0000:03:00.0")
    monkeypatch.setattr(simulate, "NODES", root / "sys/class/kfd/kfd/topology/nodes")
    monkeypatch.setattr(simulate, "DEVICES", [tmp_path / "dev/kfd", tmp_path / "dev/dri/renderD128"])
    monkeypatch.setattr(simulate.os, "chown", lambda *args: None)
    monkeypatch.setattr(rocminfo, "SYSFS", root / "sys")
    monkeypatch.setattr(rocminfo, "KFD", tmp_path / "dev/kfd")
    return simulate, rocminfo, root / "sys"
