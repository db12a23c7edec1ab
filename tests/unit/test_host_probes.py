"""The read-only host probes preflight relies on: PCI GPUs and free space."""

from __future__ import annotations

import os

import pytest
from ansible_collections.mi50.stack.plugins.filter.gpu import describe_gpu
from ansible_collections.mi50.stack.plugins.modules import free_space, pci_gpus


def fake_device(root, address, vendor, device, pci_class, driver=None):
    path = root / address
    path.mkdir(parents=True)
    (path / "vendor").write_text(vendor + "\n")
    (path / "device").write_text(device + "\n")
    (path / "class").write_text(pci_class + "\n")
    if driver:
        target = root.parent / "drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path / "driver")


def test_lists_display_and_accelerator_devices_only(tmp_path):
    devices = tmp_path / "devices"
    fake_device(devices, "0000:00:01.0", "0x1af4", "0x1000", "0x020000")  # virtio NIC
    fake_device(devices, "0000:03:00.0", "0x1002", "0x66a1", "0x038000", driver="amdgpu")
    fake_device(devices, "0000:04:00.0", "0x1a03", "0x2000", "0x030000")  # BMC VGA
    fake_device(devices, "0000:05:00.0", "0x1002", "0x74a1", "0x120000")  # MI300X, accelerator class
    gpus = pci_gpus.list_gpus(str(devices))
    assert [g["address"] for g in gpus] == ["0000:03:00.0", "0000:04:00.0", "0000:05:00.0"]
    mi50 = gpus[0]
    assert mi50["pci_id"] == "1002:66a1"
    assert mi50["gfx_target"] == "gfx906"
    assert mi50["driver"] == "amdgpu"
    assert gpus[1]["gfx_target"] is None and gpus[1]["vendor"] == "ASPEED"
    assert gpus[2]["gfx_target"] == "gfx942"


@pytest.mark.parametrize("device", ["0x66a0", "0x66a1", "0x66a2", "0x66a3", "0x66a7", "0x66af"])
def test_every_vega20_id_is_gfx906(tmp_path, device):
    fake_device(tmp_path, "0000:03:00.0", "0x1002", device, "0x038000")
    assert pci_gpus.list_gpus(str(tmp_path))[0]["gfx_target"] == "gfx906"


def test_unknown_amd_device_has_no_target(tmp_path):
    fake_device(tmp_path, "0000:03:00.0", "0x1002", "0x9999", "0x030000")
    gpu = pci_gpus.list_gpus(str(tmp_path))[0]
    assert gpu["vendor"] == "AMD" and gpu["gfx_target"] is None


def test_missing_sysfs_means_no_gpus(tmp_path):
    assert pci_gpus.list_gpus(str(tmp_path / "absent")) == []


def test_describe_gpu_names_target_and_driver(tmp_path):
    fake_device(tmp_path / "d", "0000:03:00.0", "0x1002", "0x66a1", "0x038000", driver="amdgpu")
    line = describe_gpu(pci_gpus.list_gpus(str(tmp_path / "d"))[0])
    assert line.startswith("0000:03:00.0 1002:66a1 AMD Vega 20")
    assert line.endswith("(gfx906, driver amdgpu)")


def test_free_space_measures_nearest_existing_parent(tmp_path):
    target = tmp_path / "not" / "yet" / "there"
    assert free_space.nearest_existing(str(target)) == str(tmp_path)
    assert free_space.nearest_existing(str(tmp_path)) == str(tmp_path)
