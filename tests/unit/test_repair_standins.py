"""The stand-ins the recovery scenario breaks the box with: `simulate-gpu unload`
(the card stays, its driver is gone: rocminfo says the module is not loaded, and
the diagnose role's module check sees it) and the kernel headers package."""

from __future__ import annotations

import importlib.util
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from ansible_collections.mi50.stack.plugins.filter.probes import rocminfo as parse_rocminfo
from ansible_collections.mi50.stack.plugins.modules import pci_gpus

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "standins"


def load(path: Path, name: str):
    spec = importlib.util.spec_from_loader(name, SourceFileLoader(name, str(path))) if path.suffix != ".py" \
        else importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def card(simulated):
    """A simulated MI50 with its driver loaded."""
    simulated[0].add()
    return simulated


def test_unload_keeps_the_card_and_drops_its_driver(card, capsys):
    simulate, rocminfo, sysfs = card
    simulate.unload()
    assert not (sysfs / "module" / "amdgpu").exists()
    assert not any(device.exists() for device in simulate.DEVICES)
    gpus = pci_gpus.list_gpus(str(sysfs / "bus" / "pci" / "devices"))
    assert [(g["pci_id"], g["gfx_target"], g["driver"]) for g in gpus] == [("1002:66a1", "gfx906", None)]
    assert rocminfo.main() == 1
    assert parse_rocminfo(capsys.readouterr().out)["message"] == "ROCk module is NOT loaded, possibly no GPU devices"


def test_add_after_unload_loads_the_driver_again(card, capsys):
    simulate, rocminfo, sysfs = card
    simulate.unload()
    simulate.add()
    assert pci_gpus.list_gpus(str(sysfs / "bus" / "pci" / "devices"))[0]["driver"] == "amdgpu"
    assert rocminfo.main() == 0
    assert [d["gfx_target"] for d in parse_rocminfo(capsys.readouterr().out)["devices"] if d["type"] == "gpu"] == ["gfx906"]


def test_headers_package_has_debians_layout_for_the_release():
    headers = load(STANDINS / "kernel" / "headers.py", "standin_kernel_headers")
    pkg = headers.package("6.8.0-45-generic")
    assert pkg["name"] == "linux-headers-6.8.0-45-generic"
    # DKMS looks for <build>/include; the stand-in amdgpu build checks <build>/Makefile.
    assert pkg["links"] == {"lib/modules/6.8.0-45-generic/build": "/usr/src/linux-headers-6.8.0-45-generic"}
    assert {"usr/src/linux-headers-6.8.0-45-generic/Makefile",
            "usr/src/linux-headers-6.8.0-45-generic/include/STANDIN"} == set(pkg["files"])
    assert all("STAND-IN" in text for text in pkg["files"].values())
