"""Helpers for the vllm scenario's tests: what each instance was converged with,
the unit's command line as systemd parsed it, and running the converge playbook
again against one instance (to provoke refusals and restarts)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]

# What molecule.yml gives each instance, and the plan's server settings.
EXPECT = {
    "mi50-vllm": {
        "method": "pip",
        "model": "Qwen/Qwen2.5-7B-Instruct-AWQ",
        "served": "qwen2.5-7b-instruct-awq",
        "quantization": "awq",
        "key": "mi50-test-key_pip.0123456789",
        "version": "0.1.0+standin",
        "image": None,
    },
    "mi50-vllm-podman": {
        "method": "container",
        "model": "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4",
        "served": "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4",
        "quantization": "gptq",
        "key": "mi50-test-key_podman.abcdef",
        "version": "v0.11.2-rocm6.3",
        "image": "docker.io/nalanzeyu/vllm-gfx906:v0.11.2-rocm6.3",
    },
}
PLAN_FLAGS = {
    "--gpu-memory-utilization": "0.9",
    "--max-model-len": "8192",
    "--host": "127.0.0.1",
    "--port": "8000",
    "--dtype": "float16",
}
UNIT = "/etc/systemd/system/vllm.service"
ENV_FILE = "/etc/vllm/vllm.env"
FACT = "/etc/ansible/facts.d/inference.fact"
GPU_FACT = "/etc/ansible/facts.d/gpu_backend.fact"


def expect(host) -> dict:
    return EXPECT[host.backend.get_hostname()]


def exec_start(host) -> list[str]:
    """The ExecStart argv as systemd parsed it from the unit."""
    shown = host.check_output("systemctl show vllm.service --property ExecStart --value")
    match = re.search(r"argv\[\]=(.*?) ;", shown)
    assert match, shown
    return match.group(1).split()


def flag_value(argv: list[str], flag: str) -> str | None:
    for index, item in enumerate(argv):
        if item == flag and index + 1 < len(argv):
            return argv[index + 1]
        if item.startswith(flag + "="):
            return item.split("=", 1)[1]
    return None


def server_args(host) -> list[str]:
    """The `vllm serve` part of the command line: everything after `serve`."""
    argv = exec_start(host)
    return argv[argv.index("serve") + 1:]


def run_converge(host, extra: dict | None = None, check: bool = False,
                 tags: str | None = None) -> subprocess.CompletedProcess:
    """Run this scenario's converge playbook again against one instance."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
               "--limit", host.backend.get_hostname(), str(SCENARIO / "converge.yml")]
    if extra:
        command += ["-e", json.dumps(extra)]
    if check:
        command += ["--check", "--diff"]
    if tags:
        command += ["--tags", tags]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    # ansible-core prints task failures on stderr; the tests read both.
    result.stdout += result.stderr
    return result
