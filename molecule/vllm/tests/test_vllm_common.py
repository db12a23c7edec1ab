"""Both instances: the service user, the secret, the unit (checked by
systemd-analyze verify), the server's flags and the inference fact."""

from __future__ import annotations

import json

import pytest
from conftest import ENV_FILE, FACT, PLAN_FLAGS, UNIT, exec_start, expect, flag_value, server_args


def test_service_user_is_a_system_user_in_the_gpu_groups(host):
    user = host.user("vllm")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/vllm"
    assert {"video", "render"} <= set(user.groups)


@pytest.mark.parametrize("path", ["/var/lib/vllm", "/var/lib/vllm/huggingface"])
def test_state_directories_belong_to_the_service_user(host, path):
    directory = host.file(path)
    assert directory.is_directory
    assert (directory.user, directory.group, directory.mode) == ("vllm", "vllm", 0o750)


def test_api_key_is_in_a_root_only_environment_file(host):
    env_file = host.file(ENV_FILE)
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    assert f"VLLM_API_KEY={expect(host)['key']}" in env_file.content_string.splitlines()


@pytest.mark.parametrize(
    "command",
    [
        f"cat {UNIT}",
        "systemctl show vllm.service",
        f"cat {FACT}",
        "ps -eo args",
        # Files holding the key, other than the environment file itself.
        f"grep -rl --exclude={ENV_FILE.rsplit('/', 1)[1]} -e KEY /etc /opt /var/lib/vllm || true",
    ],
    ids=["unit-file", "systemd-view", "inference-fact", "process-list", "other-files"],
)
def test_api_key_appears_nowhere_else(host, command):
    key = expect(host)["key"]
    output = host.check_output(command.replace("KEY", key))
    assert key not in output
    if command.startswith("grep"):
        assert output.strip() == ""


def test_no_api_key_flag_on_the_command_line(host):
    assert not [arg for arg in exec_start(host) if arg.startswith("--api-key")]


def test_unit_passes_systemd_analyze_verify(host):
    result = host.run(f"systemd-analyze verify {UNIT}")
    assert result.rc == 0, result.stderr
    # verify exits 0 on warnings (an unknown key, a line outside a section): none may name our unit.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "vllm.service" in line]
    assert complaints == []


@pytest.mark.parametrize("flag", sorted(PLAN_FLAGS))
def test_server_runs_with_the_plans_settings(host, flag):
    assert flag_value(server_args(host), flag) == PLAN_FLAGS[flag]


def test_server_serves_the_model_under_its_name(host):
    args = server_args(host)
    assert args[0] == expect(host)["model"]
    assert flag_value(args, "--served-model-name") == expect(host)["served"]
    assert flag_value(args, "--quantization") == expect(host)["quantization"]


def test_service_is_enabled(host):
    assert host.service("vllm.service").is_enabled


def test_inference_fact_follows_the_contract(host):
    fact_file = host.file(FACT)
    assert (fact_file.user, fact_file.group, fact_file.mode) == ("root", "root", 0o644)
    want = expect(host)
    assert json.loads(fact_file.content_string) == {
        "schema": 1,
        "engine": "vllm",
        "version": want["version"],
        "method": want["method"],
        "image": want["image"],
        "tier": "rocm",
        "accelerated": True,
        "base_url": "http://127.0.0.1:8000/v1",
        "health_url": "http://127.0.0.1:8000/health",
        "service": "vllm.service",
        "models": [want["served"]],
        "default_model": want["served"],
        "auth": "bearer",
    }
