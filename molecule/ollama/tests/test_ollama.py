"""The ollama role on the cpu tier, as converged: Ollama's install layout, the
service user, a sandboxed unit with the plan's tuning and a clean environment,
the models pulled (resuming an interrupted download) and imported, real text
generated through the stand-in (llama.cpp underneath), the fact for the router,
and the refusals that must leave the host as it was.

Ollama itself is a STAND-IN here (tests/standins/ollama/ollama.py); llama.cpp's
llama-server that it runs, and the gemma 3 270M model, are real."""

from __future__ import annotations

import json

import pytest
from ollamakit import (MI50, NOTHING_CHANGED, api, process_environment, read_fact, run_engine, unit_property,
                       wait_for_ollama, write_tier)

VERSION = "0.32.7"  # what ollama_version_by_tier gives the cpu tier
STORE = "/usr/share/ollama/.ollama/models"
MODELS = ["gemma3:270m", "gemma3-local:270m"]


@pytest.fixture(scope="module", autouse=True)
def cpu_tier(host):
    """The converged state; re-converged only if an earlier verify left another tier behind."""
    fact = read_fact(host)
    if fact["tier"] != "cpu" or fact["version"] != VERSION:
        write_tier(host, "cpu")
        result = run_engine(host)
        assert result.returncode == 0, result.stdout
    wait_for_ollama(host)


# --------------------------------------------------------------------- install layout

def test_binary_is_where_ollamas_installer_puts_it(host):
    binary = host.file("/usr/local/bin/ollama")
    assert binary.is_file and binary.user == "root" and binary.mode == 0o755
    assert host.check_output("/usr/local/bin/ollama --version").startswith(
        f"ollama version is {VERSION} (mi50-llm-stack stand-in)")


@pytest.mark.parametrize("path", ["llama-server", "libgomp.so.1", f"mi50-standin-{VERSION}.txt"])
def test_libraries_are_in_usr_local_lib_ollama(host, path):
    assert host.file(f"/usr/local/lib/ollama/{path}").is_file


def test_install_record_names_the_release_and_its_checksum_source(host):
    record = json.loads(host.file("/usr/local/lib/ollama/.mi50-llm-stack-install.json").content_string)
    assert record["version"] == VERSION
    assert list(record["archives"]) == ["ollama-linux-amd64.tar.zst"]
    assert record["archives"]["ollama-linux-amd64.tar.zst"].endswith(f"/v{VERSION}/sha256sum.txt")


def test_downloaded_archives_are_deleted(host):
    assert not host.file(f"/var/cache/ollama-install/{VERSION}").exists


# --------------------------------------------------------------------- user and unit

def test_service_user_is_a_system_user_in_render_and_video(host):
    user = host.user("ollama")
    assert user.exists and user.uid < 1000
    assert user.shell == "/bin/false" and user.home == "/usr/share/ollama"
    assert user.group == "ollama"
    assert {"render", "video"} <= set(user.groups)


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("ActiveState", "active"),
        ("UnitFileState", "enabled"),
        ("ExecStart", "path=/usr/local/bin/ollama"),
        ("User", "ollama"),
        ("Restart", "always"),
        ("RestartUSec", "3s"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),  # the cpu tier opens no device node
        ("DeviceAllow", "char-rtc r"),  # ProtectClock's read-only RTC, nothing else
        ("UnsetEnvironment", "LD_LIBRARY_PATH HIP_PATH"),
        ("ReadWritePaths", f"/usr/share/ollama/.ollama {STORE}"),
    ],
)
def test_unit(host, prop, value):
    got = unit_property(host, prop)
    assert value in got if prop == "ExecStart" else got == value


def test_unit_passes_systemd_analyze_verify(host):
    host.run_expect([0], "systemd-analyze verify /etc/systemd/system/ollama.service")


@pytest.mark.parametrize("assignment", [
    "OLLAMA_HOST=127.0.0.1:11434", f"OLLAMA_MODELS={STORE}", "OLLAMA_NUM_PARALLEL=4",
    "OLLAMA_MAX_LOADED_MODELS=2", "OLLAMA_MAX_QUEUE=512", "OLLAMA_KEEP_ALIVE=5m",
])
def test_running_server_has_the_tuning(host, assignment):
    key, value = assignment.split("=", 1)
    assert process_environment(host).get(key) == value


@pytest.mark.parametrize("name", ["LD_LIBRARY_PATH", "HIP_PATH", "OLLAMA_GPU_DRIVER", "OLLAMA_VULKAN",
                                  "HSA_OVERRIDE_GFX_VERSION", "ROCR_VISIBLE_DEVICES", "GGML_VK_VISIBLE_DEVICES",
                                  "OLLAMA_CONTEXT_LENGTH", "HTTPS_PROXY"])
def test_cpu_tier_server_has_no_gpu_or_unset_variable(host, name):
    assert name not in process_environment(host)


def test_a_library_path_in_the_managers_environment_does_not_reach_ollama(host):
    """What a ROCm 6.4 install gives login shells must not steer Ollama's ROCm library search."""
    host.run_expect([0], "systemctl set-environment LD_LIBRARY_PATH=/opt/rocm-6.4.2/lib HIP_PATH=/opt/rocm-6.4.2")
    try:
        # Control: any other unit started now does get it.
        control = host.check_output("systemd-run --quiet --pipe --wait env")
        assert "LD_LIBRARY_PATH=/opt/rocm-6.4.2/lib" in control
        host.run_expect([0], "systemctl restart ollama.service")
        wait_for_ollama(host)
        environment = process_environment(host)
        assert "LD_LIBRARY_PATH" not in environment and "HIP_PATH" not in environment
    finally:
        host.run("systemctl unset-environment LD_LIBRARY_PATH HIP_PATH && systemctl restart ollama.service")
        wait_for_ollama(host)


def test_api_listens_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:11434").is_listening
    assert not host.socket("tcp://0.0.0.0:11434").is_listening


# --------------------------------------------------------------------- models

def test_models_are_listed_under_their_names(host):
    status, body = api(host, "GET", "/api/tags")
    assert status == 200
    assert sorted(m["name"] for m in body["models"]) == sorted(MODELS)
    status, body = api(host, "GET", "/v1/models")
    assert sorted(m["id"] for m in body["data"]) == sorted(MODELS)


@pytest.mark.parametrize("model", ["gemma3/270m", "gemma3-local/270m"])
def test_store_has_ollamas_layout_owned_by_the_service(host, model):
    manifest = host.file(f"{STORE}/manifests/registry.ollama.ai/library/{model}")
    assert manifest.is_file and manifest.user == "ollama"
    for layer in json.loads(manifest.content_string)["layers"]:
        blob = host.file(f"{STORE}/blobs/{layer['digest'].replace(':', '-')}")
        assert blob.is_file and blob.user == "ollama" and blob.size == layer["size"]


def test_mirror_reference_was_renamed_and_nothing_partial_is_left(host):
    assert not host.file(f"{STORE}/manifests/172.17.0.1:8765").exists
    assert host.check_output(f"find {STORE}/blobs -name '*-partial' | wc -l") == "0"


def test_import_left_no_gguf_copy_behind(host):
    assert host.check_output("find /var/lib/ollama-import -name '*.gguf' | wc -l") == "0"


def test_interrupted_pull_resumed_where_it_stopped(host):
    manifest = json.loads(host.file(f"{STORE}/manifests/registry.ollama.ai/library/gemma3/270m").content_string)
    digest = manifest["layers"][0]["digest"]
    journal = host.check_output("journalctl -u ollama.service --no-pager -o cat")
    assert f"download of {digest} interrupted at byte 60000000" in journal
    assert f"resuming the download of {digest} at byte 60000000" in journal


def test_generate_returns_real_text(host):
    status, body = api(host, "POST", "/api/generate", {"model": "gemma3:270m", "prompt": "The capital of France is",
                                                        "stream": False, "options": {"num_predict": 8, "seed": 1}})
    assert status == 200, body
    assert body["done"] is True and body["eval_count"] >= 1
    assert body["response"].strip()


def test_openai_chat_completion_returns_real_text(host):
    status, body = api(host, "POST", "/v1/chat/completions", {
        "model": "gemma3-local:270m", "messages": [{"role": "user", "content": "Write one word."}],
        "max_tokens": 8, "seed": 1})
    assert status == 200, body
    assert body["object"] == "chat.completion"
    assert body["usage"]["completion_tokens"] >= 1
    assert body["choices"][0]["finish_reason"] in ("length", "stop")


def test_unknown_model_is_a_404_in_openai_form(host):
    status, body = api(host, "POST", "/v1/chat/completions", {"model": "nope:1b", "messages": []})
    assert status == 404 and "not found" in body["error"]["message"]


# --------------------------------------------------------------------- the fact

def test_fact_tells_the_router_where_and_what(host):
    fact_file = host.file("/etc/ansible/facts.d/inference.fact")
    assert fact_file.user == "root" and fact_file.mode == 0o644
    assert read_fact(host) == {
        "schema": 1, "engine": "ollama", "version": VERSION, "tier": "cpu", "accelerated": False,
        "base_url": "http://127.0.0.1:11434/v1", "health_url": "http://127.0.0.1:11434/api/version",
        "service": "ollama.service", "models": MODELS, "default_model": "gemma3:270m", "auth": "none",
        # Measured after each model loaded (/api/ps): the cpu tier's unit has no device nodes.
        "offload": {m: {"accelerated": False, "vram_fraction": 0.0, "processor": "100% CPU"} for m in MODELS},
    }


# --------------------------------------------------------------------- refusals

def snapshot(host) -> str:
    return host.check_output(
        "sha256sum /usr/local/bin/ollama /etc/systemd/system/ollama.service /etc/ansible/facts.d/inference.fact"
        " && ls /usr/local/lib/ollama")


def test_bad_archive_checksum_fails_before_anything_is_replaced(host):
    before = snapshot(host)
    result = run_engine(host, {"ollama_version": "0.12.3",
                               "ollama_checksums": {"0.12.3": {"ollama-linux-amd64.tgz": "0" * 64}}})
    assert result.returncode != 0
    assert "did not match" in result.stdout
    assert snapshot(host) == before
    assert wait_for_ollama(host)["version"] == VERSION


def test_refuses_a_release_the_recorded_tier_cannot_use(host):
    write_tier(host, "rocm", MI50)
    try:
        host.run_expect([0], "touch /tmp/before-refusal && sleep 1")
        result = run_engine(host, {"ollama_version": "0.13.0"})
        changed = host.check_output(
            "find /etc /usr/local /usr/share/ollama /var/cache /var/lib/ollama-import -newer /tmp/before-refusal")
    finally:
        write_tier(host, "cpu")
    assert result.returncode != 0
    assert "Ollama 0.13.0 cannot use gfx906 on the ROCm tier and would serve on the CPU only" in result.stdout
    assert 'Pin ollama_version "0.12.3"' in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert changed == ""
