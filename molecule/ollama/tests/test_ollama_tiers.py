"""The ollama role when gpu_backend records another tier: each pass rewrites
gpu_backend.fact and runs the engine stage again, as `repair.yml` would.

- rocm (a gfx906 card): Ollama 0.12.3 replaces 0.32.7 (old libraries removed),
  with the ROCm add-on; the pulled model was deleted first, so the pull shows
  its progress and its retry again;
- vulkan: back to 0.32.7 (0.12.3's libraries and ROCm add-on removed);
- opencl: Ollama has no OpenCL backend: refused, then served on the CPU when
  ollama_allow_cpu_fallback says so.

The container holds a simulated MI50 (prepare.yml runs simulate-gpu add). The
stand-in Ollama places each model as Ollama would from it (device nodes, visible
devices, VRAM) and reports that through /api/ps, which the role measures after
each model loads; the text itself is generated on the CPU."""

from __future__ import annotations

import pytest
from ollamakit import (MI50, NOTHING_CHANGED, api, process_environment, read_fact, run_engine, unit_property,
                       wait_for_ollama, write_tier)

LIB = "/usr/local/lib/ollama"
# The converge proved the role's own one-token check; here the tests generate themselves.
QUICK = {"ollama_verify_models": False}


@pytest.fixture(scope="module")
def rocm(host):
    write_tier(host, "rocm", MI50)
    status, _ = api(host, "DELETE", "/api/delete", {"model": "gemma3:270m"})
    assert status == 200
    result = run_engine(host)  # the models are measured too
    assert result.returncode == 0, result.stdout
    return result


@pytest.fixture(scope="module")
def vulkan(host):
    write_tier(host, "vulkan", {"name": "AMD Radeon Graphics (RADV VEGA20)", "gfx_target": "gfx906", "software": False})
    result = run_engine(host)
    assert result.returncode == 0, result.stdout
    return result


@pytest.fixture(scope="module")
def opencl(host):
    write_tier(host, "opencl", MI50)
    refused = run_engine(host, QUICK)
    fallback = run_engine(host, {**QUICK, "ollama_allow_cpu_fallback": True})
    assert fallback.returncode == 0, fallback.stdout
    return refused, fallback


# --------------------------------------------------------------------- rocm: 0.32.7 -> 0.12.3

def test_rocm_installs_the_last_release_with_gfx906_and_removes_the_old_libraries(host, rocm):
    assert host.check_output("/usr/local/bin/ollama --version").startswith("ollama version is 0.12.3")
    assert host.file(f"{LIB}/mi50-standin-0.12.3.txt").is_file
    assert not host.file(f"{LIB}/mi50-standin-0.32.7.txt").exists


def test_rocm_adds_the_rocm_archive_checked_by_the_published_sha256(host, rocm):
    assert host.file(f"{LIB}/rocm/mi50-standin-rocm-0.12.3.txt").is_file
    assert "ollama-linux-amd64-rocm.tgz (sha256 from http://" in rocm.stdout
    assert "/v0.12.3/sha256sum.txt)" in rocm.stdout


def test_restart_waited_for_the_new_release_to_answer(host, rocm):
    # The stand-in listens only 3 s after it starts: the handler had to retry.
    assert "FAILED - RETRYING: [mi50-ollama]: Wait until Ollama answers on /api/version" in rocm.stdout
    assert wait_for_ollama(host)["version"] == "0.12.3"


def test_pull_shows_progress_and_retries_with_backoff(host, rocm):
    out = rocm.stdout
    # Quarters as the stream reports them (a fast local download may skip the middle ones).
    assert "pulling manifest" in out and "0% of 0.25 GB" in out and "100% of 0.25 GB" in out
    assert "attempt 1 failed" in out and "unexpected EOF after 60000000" in out
    assert "retrying in 1 s" in out
    assert "served as gemma3:270m" in out


@pytest.mark.parametrize(("name", "value"), [("ROCR_VISIBLE_DEVICES", "0"), ("OLLAMA_VULKAN", None),
                                             ("GGML_VK_VISIBLE_DEVICES", None), ("HSA_OVERRIDE_GFX_VERSION", None),
                                             ("LD_LIBRARY_PATH", None), ("OLLAMA_GPU_DRIVER", None)])
def test_rocm_environment(host, rocm, name, value):
    assert process_environment(host).get(name) == value


def test_rocm_unit_opens_kfd_and_dri_only(host, rocm):
    assert unit_property(host, "PrivateDevices") == "no"
    assert unit_property(host, "DevicePolicy") == "closed"
    # char-rtc r comes with ProtectClock=yes.
    assert set(unit_property(host, "DeviceAllow").splitlines()) == {"/dev/kfd rw", "char-drm rw", "char-rtc r"}


ON_GPU = {"accelerated": True, "vram_fraction": 1.0, "processor": "100% GPU"}


def test_rocm_models_are_measured_in_vram(host, rocm):
    # The ROCm add-on brings gfx906 and the service user opens /dev/kfd: both models fit the 16 GB.
    assert read_fact(host)["offload"] == {"gemma3:270m": ON_GPU, "gemma3-local:270m": ON_GPU}
    assert "gemma3:270m: loaded in" in rocm.stdout and "100% GPU" in rocm.stdout


def test_rocm_fact(host, rocm):
    fact = read_fact(host)
    assert (fact["tier"], fact["version"], fact["accelerated"]) == ("rocm", "0.12.3", True)


def test_models_survive_the_release_change_and_generate(host, rocm):
    status, body = api(host, "POST", "/api/chat", {"model": "gemma3-local:270m", "stream": False,
                                                    "messages": [{"role": "user", "content": "Hi"}],
                                                    "options": {"num_predict": 4}})
    assert status == 200 and body["done"] and body["eval_count"] >= 1


# --------------------------------------------------------------------- vulkan: 0.12.3 -> 0.32.7

def test_vulkan_goes_back_to_a_vulkan_release_without_the_rocm_files(host, vulkan):
    assert wait_for_ollama(host)["version"] == "0.32.7"
    assert host.file(f"{LIB}/mi50-standin-0.32.7.txt").is_file
    assert not host.file(f"{LIB}/mi50-standin-0.12.3.txt").exists
    assert not host.file(f"{LIB}/rocm").exists


@pytest.mark.parametrize(("name", "value"), [("OLLAMA_VULKAN", "1"), ("GGML_VK_VISIBLE_DEVICES", "0"),
                                             ("ROCR_VISIBLE_DEVICES", None), ("HSA_OVERRIDE_GFX_VERSION", None),
                                             ("LD_LIBRARY_PATH", None), ("OLLAMA_GPU_DRIVER", None)])
def test_vulkan_environment(host, vulkan, name, value):
    assert process_environment(host).get(name) == value


def test_vulkan_unit_opens_dri_only(host, vulkan):
    assert unit_property(host, "PrivateDevices") == "no"
    assert set(unit_property(host, "DeviceAllow").splitlines()) == {"char-drm rw", "char-rtc r"}


def test_vulkan_fact(host, vulkan):
    fact = read_fact(host)
    assert (fact["tier"], fact["version"], fact["accelerated"]) == ("vulkan", "0.32.7", True)
    assert fact["offload"] == {"gemma3:270m": ON_GPU, "gemma3-local:270m": ON_GPU}


# --------------------------------------------------------------------- opencl: refused, or CPU when allowed

def test_opencl_is_refused_without_the_fallback(host, opencl):
    refused, _ = opencl
    assert refused.returncode != 0
    assert "Ollama 0.32.7 cannot use gfx906 on the OpenCL tier" in refused.stdout
    assert "Ollama has no OpenCL backend" in refused.stdout
    assert NOTHING_CHANGED in refused.stdout


def test_opencl_with_the_fallback_serves_on_the_cpu(host, opencl):
    fact = read_fact(host)
    assert (fact["tier"], fact["accelerated"]) == ("opencl", False)
    assert unit_property(host, "PrivateDevices") == "yes"
    assert "OLLAMA_VULKAN" not in process_environment(host)
