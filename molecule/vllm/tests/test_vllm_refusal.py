"""The role refuses, before changing anything, a host whose recorded GPU tier vLLM
cannot use, and bad inputs, saying what runs on a MI50 instead. Each case rewrites
the instance's gpu_backend.fact as the GPU stage would, runs the converge playbook
again with inputs that WOULD change the host (another port, another user), and
checks that it failed with the fix in the message and that nothing changed."""

from __future__ import annotations

import base64
import json

import pytest
from conftest import GPU_FACT, run_converge

testinfra_hosts = ["mi50-vllm"]

NOTHING_CHANGED = "Nothing was changed on this host."
ALTERNATIVES = ["inference_engine: llamacpp", "inference_engine: ollama", "OLLAMA_VULKAN=1"]
# Inputs that would rewrite the unit, the env file and the fact, and add a user.
WOULD_CHANGE = {"vllm_port": 8123, "vllm_user": "vllm2", "vllm_api_key": "another-key"}
WATCHED = "/etc /opt /usr/local /var/lib/vllm /home"


def backend(tier: str, target: str | None = "gfx906", rejected: dict | None = None) -> dict:
    device = None if target is None else {"name": "simulated", "gfx_target": target, "software": tier != "rocm"}
    return {"schema": 1, "tier": tier, "forced": False, "order": ["rocm", "vulkan", "opencl"], "device": device,
            "versions": {}, "available": [tier], "rejected": rejected or {}, "probes": {}}


ROCM_REJECTED = {"rocm": "rocminfo lists no gfx906 agent"}

CASES = {
    "vulkan-tier": (backend("vulkan", rejected=ROCM_REJECTED), {},
                    ["vLLM runs only on the ROCm tier", "recorded tier is vulkan (ROCm was rejected: rocminfo lists "
                     "no gfx906 agent)", "vLLM has no Vulkan backend", *ALTERNATIVES]),
    "opencl-tier": (backend("opencl"), {}, ["recorded tier is opencl", "vLLM has no OpenCL backend", *ALTERNATIVES]),
    "cpu-tier": (backend("cpu", target=None), {}, ["recorded tier is cpu", *ALTERNATIVES]),
    "no-tier-recorded": (None, {}, ["no tier is recorded on this host", "Run the GPU stage first"]),
    "upstream-build-on-gfx906": (backend("rocm"), {"vllm_gfx906_build": False},
                                 ["upstream vLLM does not support gfx906",
                                  "Set vllm_gfx906_build: true only for a community gfx906 build", *ALTERNATIVES]),
    "unsupported-card": (backend("rocm", target="gfx1030"), {}, ["vLLM has no kernels for this GPU (gfx1030)"]),
    "pip-without-spec": (backend("rocm"), {"vllm_pip_spec": []},
                         ["vllm_pip_spec must name your ROCm build of vLLM", "PyPI's vllm is the CUDA build"]),
    "bad-api-key": (backend("rocm"), {"vllm_api_key": "two words"}, ["vllm_api_key must be a bearer token"]),
}


def put(host, path: str, text: str) -> None:
    encoded = base64.b64encode(text.encode()).decode()
    host.run_expect([0], f"echo {encoded} | base64 -d > {path}")


@pytest.fixture
def gpu_fact(host):
    """Let a test rewrite the GPU fact; put the original back afterwards."""
    original = host.file(GPU_FACT).content_string

    def write(content: dict | None) -> None:
        if content is None:
            host.run_expect([0], f"rm {GPU_FACT}")
        else:
            put(host, GPU_FACT, json.dumps(content))
        host.run_expect([0], "touch /tmp/vllm-refusal-marker")

    yield write
    put(host, GPU_FACT, original)


def changed_since_marker(host) -> str:
    return host.check_output(f"find {WATCHED} -newer /tmp/vllm-refusal-marker -not -path {GPU_FACT} | sort")


@pytest.mark.parametrize("case", CASES)
def test_refuses_with_the_fix_and_changes_nothing(host, gpu_fact, case):
    fact, extra, expected = CASES[case]
    pid = host.check_output("systemctl show vllm.service --property MainPID --value")
    gpu_fact(fact)
    result = run_converge(host, {**WOULD_CHANGE, **extra})
    assert result.returncode != 0, result.stdout
    text = " ".join(result.stdout.split())  # the message is folded over several lines
    for phrase in expected:
        assert phrase in text
    assert NOTHING_CHANGED in text
    assert changed_since_marker(host) == ""
    assert not host.user("vllm2").exists
    assert host.check_output("systemctl show vllm.service --property MainPID --value") == pid


def test_allow_unsupported_installs_without_acceleration(host, gpu_fact):
    """With vllm_allow_unsupported, a Vulkan host is accepted and the fact says so (check mode)."""
    gpu_fact(backend("vulkan", rejected=ROCM_REJECTED))
    result = run_converge(host, {"vllm_allow_unsupported": True}, check=True, tags="vllm_configure")
    assert result.returncode == 0, result.stdout
    text = " ".join(result.stdout.split())
    assert "where it cannot use the GPU" in text
    added = [" ".join(line.split()) for line in result.stdout.splitlines() if line.startswith("+")]
    assert '+ "accelerated": false,' in added
    assert '+ "tier": "vulkan",' in added
