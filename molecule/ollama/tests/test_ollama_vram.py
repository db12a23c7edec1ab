"""A silent CPU fallback is caught. Runs after test_ollama_tiers.py (file order).

Real Ollama falls back to the CPU without an error when it cannot use the card:
a visible-device variable that names no card, a device node the service user
cannot open, a model larger than the free VRAM. The stand-in decides the same
way from the simulated MI50 (prepare.yml: simulate-gpu add), so the role's
measurement after each model loads (/api/ps size_vram) must catch it: the run
fails naming the cause, or warns with ollama_cpu_fallback: warn, and
inference.fact records what was measured."""

from __future__ import annotations

import shlex

import pytest
from ollamakit import MI50, read_fact, run_engine, wait_for_ollama, write_tier

MODELS = ["gemma3:270m", "gemma3-local:270m"]
ON_CPU = {"accelerated": False, "vram_fraction": 0.0, "processor": "100% CPU"}
ON_GPU = {"accelerated": True, "vram_fraction": 1.0, "processor": "100% GPU"}
KFD_NODE = "/run/mi50-standin/sys/class/kfd/kfd/topology/nodes/1/properties"


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def rocm_wrong_device(host):
    """ROCR_VISIBLE_DEVICES names a card that is not there: refused, then accepted with warn."""
    write_tier(host, "rocm", MI50)
    refused = run_engine(host, {"ollama_rocr_visible_devices": "3"})
    refused_fact = read_fact(host)
    warned = run_engine(host, {"ollama_rocr_visible_devices": "3", "ollama_cpu_fallback": "warn"})
    return refused, refused_fact, warned, read_fact(host)


@pytest.fixture(scope="module")
def kfd_denied(host, rocm_wrong_device):
    """/dev/kfd is the card's, but the service user may not open it (not in render, say)."""
    host.run_expect([0], "chmod 0600 /dev/kfd && systemctl restart ollama.service")
    try:
        wait_for_ollama(host)
        result = run_engine(host)
        fact = read_fact(host)
    finally:
        host.run_expect([0], "chmod 0660 /dev/kfd && systemctl restart ollama.service")
        wait_for_ollama(host)
    return result, fact


# What the amdgpu driver shows of the card in DRM sysfs, with another process holding
# all but 150 MB above the 457 MiB Ollama keeps free: the stand-in reads it as Ollama
# 0.12.3 does (mem_info_vram_total/_used of the card whose vendor, device and unique_id
# match the KFD node).
BUSY_CARD = r"""
import pathlib
props = dict(l.split() for l in pathlib.Path("%s").read_text().splitlines())
card = pathlib.Path("/run/mi50-standin/sys/class/drm/card0/device")
card.mkdir(parents=True, exist_ok=True)
total = int(props["local_mem_size"])
for name, value in (("vendor", "0x1002"), ("device", "0x66a1"), ("unique_id", "%%x" %% int(props["unique_id"])),
                    ("mem_info_vram_total", total), ("mem_info_vram_used", total - 457 * 2**20 - 150_000_000)):
    (card / name).write_text(f"{value}\n")
""" % KFD_NODE


@pytest.fixture(scope="module")
def busy_vram(host, kfd_denied):
    """Most of the card's VRAM is taken: Ollama offloads only the layers that fit."""
    host.run_expect([0], f"python3 -c {shlex.quote(BUSY_CARD)} && systemctl restart ollama.service")
    try:
        wait_for_ollama(host)
        result = run_engine(host, {"ollama_models": [{"name": "gemma3:270m"}]})
        fact = read_fact(host)
    finally:
        host.run_expect([0], "rm -rf /run/mi50-standin/sys/class/drm && systemctl restart ollama.service")
        wait_for_ollama(host)
    return result, fact


@pytest.fixture(scope="module")
def vulkan_wrong_device(host, busy_vram):
    """GGML_VK_VISIBLE_DEVICES names an index past the last Vulkan device."""
    write_tier(host, "vulkan", {"name": "AMD Radeon Graphics (RADV VEGA20)", "gfx_target": "gfx906", "software": False})
    result = run_engine(host, {"ollama_vulkan_visible_devices": "1"})
    return result, read_fact(host)


def test_a_device_variable_naming_no_card_fails_the_run_with_the_cause(rocm_wrong_device):
    refused, _, _, _ = rocm_wrong_device
    assert refused.returncode != 0, refused.stdout
    out = flat(refused.stdout)
    assert "gemma3:270m, gemma3-local:270m loaded on the CPU (Ollama's /api/ps: size_vram 0)" in out
    assert "configured for the rocm tier" in out
    assert "ollama_rocr_visible_devices (now '3') must name the card" in out
    assert "ollama_cpu_fallback: warn accepts CPU inference" in out


def test_the_fact_records_what_was_measured_even_when_the_run_fails(rocm_wrong_device):
    _, fact, _, _ = rocm_wrong_device
    assert (fact["tier"], fact["version"], fact["accelerated"]) == ("rocm", "0.12.3", False)
    assert fact["offload"] == {m: ON_CPU for m in MODELS}


def test_warn_accepts_the_cpu_and_says_so(rocm_wrong_device):
    _, _, warned, fact = rocm_wrong_device
    assert warned.returncode == 0, warned.stdout
    assert "WARNING: gemma3:270m, gemma3-local:270m loaded on the CPU" in flat(warned.stdout)
    assert fact["accelerated"] is False and fact["offload"] == {m: ON_CPU for m in MODELS}


def test_a_device_node_the_service_user_cannot_open_is_caught(kfd_denied):
    result, fact = kfd_denied
    assert result.returncode != 0, result.stdout
    out = flat(result.stdout)
    assert "loaded on the CPU" in out
    assert "must open /dev/kfd and /dev/dri/renderD* read-write" in out
    assert fact["accelerated"] is False and fact["offload"] == {m: ON_CPU for m in MODELS}


def test_with_the_card_usable_again_the_models_are_in_vram(host, kfd_denied):
    # kfd_denied gave the service its device back; the next run measures the GPU.
    result = run_engine(host)
    assert result.returncode == 0, result.stdout
    fact = read_fact(host)
    assert fact["accelerated"] is True and fact["offload"] == {m: ON_GPU for m in MODELS}


def test_a_model_larger_than_the_free_vram_is_partly_offloaded_and_warned_about(busy_vram):
    result, fact = busy_vram
    assert result.returncode == 0, result.stdout
    placed = fact["offload"]["gemma3:270m"]
    assert placed["accelerated"] is True and 0 < placed["vram_fraction"] < 1
    assert placed["processor"].endswith("CPU/GPU")
    assert "WARNING: gemma3:270m only partly in VRAM" in flat(result.stdout)


def test_a_vulkan_index_past_the_last_device_is_caught(vulkan_wrong_device):
    result, fact = vulkan_wrong_device
    assert result.returncode != 0, result.stdout
    out = flat(result.stdout)
    assert "configured for the vulkan tier" in out
    assert "ollama_vulkan_visible_devices (now '1') must be an index" in out
    assert (fact["version"], fact["accelerated"]) == ("0.32.7", False)
    assert fact["offload"] == {m: ON_CPU for m in MODELS}
