"""llama.cpp for real: a real llama-server serving the real gemma-3-270m model
on the CPU, checked from inside the instance.

mi50-llamacpp is installed from the lab's release-like archive (from source when
MI50_LLAMACPP_SOURCE_BUILD=1) and serves the model under two names, one
downloaded and one copied from the controller, in llama-server's router mode,
behind an API key.

Refusals, plans for other tiers and `--tags models` are provoked by running the
converge playbook again against the instance with inputs a user could give.
Each refusal run gives every problem at once, so one run checks many messages."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1]
MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
MODEL_URL = "{{ mi50_fixtures_url }}/models/gemma-3-270m-q4_k_m.gguf"
MODEL_SRC = "{{ _lab_model_cache }}/gemma-3-270m-q4_k_m.gguf"
MODELS = ["gemma-3-270m", "gemma-3-270m-copy"]
KEY = "lab-key-not-secret"
NOTHING_CHANGED = "Nothing was changed on this host."
SOURCE_BUILD = os.environ.get("MI50_LLAMACPP_SOURCE_BUILD") == "1"
UNIT = "/etc/systemd/system/llama-server.service"
GPU_FACT = "/etc/ansible/facts.d/gpu_backend.fact"
# What the unit must say, as systemd reads it (systemctl show), on the CPU tier.
SANDBOX = {
    "User": "llamacpp",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictNamespaces": "yes",
    "CapabilityBoundingSet": "",
    "DevicePolicy": "closed",
    "SupplementaryGroups": "",
}
MI50_ROCM = {
    "schema": 1, "tier": "rocm", "forced": False, "order": ["rocm", "vulkan", "opencl"],
    "device": {"name": "AMD Instinct MI50/MI60", "gfx_target": "gfx906", "software": False},
    "versions": {"rocm": "6.4.2"}, "available": ["rocm"], "rejected": {}, "probes": {},
}
LAVAPIPE = MI50_ROCM | {"tier": "vulkan", "device": {"name": "llvmpipe", "gfx_target": "", "software": True}}


def api(host, path, body=None, key="", timeout=300):
    """Call the server from inside the instance; returns (status, parsed JSON or text)."""
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "path, body, key, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])\n"
        "req = urllib.request.Request('http://127.0.0.1:8080' + path, data=body.encode() or None,"
        " headers={'Content-Type': 'application/json'})\n"
        "if key: req.add_header('Authorization', 'Bearer ' + key)\n"
        "try:\n"
        "    with urllib.request.urlopen(req, timeout=timeout) as r: print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code); print(e.read().decode())\n"
    )
    out = host.check_output(
        "python3 -c %s %s %s %s %s",
        script, path, json.dumps(body) if body is not None else "", key, str(timeout),
    )
    status, _, text = out.partition("\n")
    try:
        return int(status), json.loads(text)
    except ValueError:
        return int(status), text


def run_playbook(host, playbook: str, extra: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    """Run one of this scenario's playbooks against the instance."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
           "--limit", host.backend.get_hostname(), *args]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    result = subprocess.run([*cmd, str(SCENARIO / playbook)],
                            check=False, capture_output=True, text=True, env=env, timeout=900)
    # The YAML callback wraps long messages: compare with whitespace collapsed.
    result.stdout = " ".join((result.stdout + result.stderr).split())
    return result


def run_converge(host, extra: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    """The whole role, as converge runs it."""
    return run_playbook(host, "converge.yml", extra, *args)


def plan(host, extra: dict | None = None) -> subprocess.CompletedProcess:
    """The role's preflight and configure tasks in check mode (plan.yml): what it would do on this tier."""
    return run_playbook(host, "plan.yml", extra, "--check", "--diff")


def with_tier(host, fact: dict, run, *args, **kwargs) -> subprocess.CompletedProcess:
    """Call run(host, ...) as if the gpu stage had recorded `fact`."""
    original = host.file(GPU_FACT).content_string
    host.run_expect([0], "printf '%%s\\n' %s > %s", json.dumps(fact), GPU_FACT)
    try:
        return run(host, *args, **kwargs)
    finally:
        host.run_expect([0], "printf %%s %s > %s", original, GPU_FACT)


def snapshot(host):
    """Every file the role manages, with its mtime and size: equal only if none was touched."""
    return host.check_output(
        f"find /etc/llama.cpp {UNIT} /etc/ansible/facts.d/inference.fact /opt/llama.cpp"
        " /var/lib/llama.cpp -printf '%p %T@ %s %l\\n' | sort")


def fingerprint(host, path):
    """Inode, mtime and sha256 of a file: equal only if the file was left alone."""
    return host.check_output("stat -c '%%i %%Y' %s && sha256sum %s", path, path)


def main_pid(host):
    return host.check_output("systemctl show -p MainPID --value llama-server.service")


# --------------------------------------------------------------------------- install

def test_current_points_at_the_only_release(host):
    link = host.file("/opt/llama.cpp/current")
    assert link.is_symlink
    target = link.linked_to
    assert re.fullmatch(r"/opt/llama\.cpp/b11434-cpu-[0-9a-f]{8}/bin", target), target
    releases = host.check_output("find /opt/llama.cpp -mindepth 1 -maxdepth 1 -type d ! -name '.*'").split()
    assert releases == [str(Path(target).parent)]


def test_release_records_how_it_was_made(host):
    release = Path(host.file("/opt/llama.cpp/current").linked_to).parent
    stamp = json.loads(host.file(f"{release}/install.json").content_string)
    assert stamp["method"] == ("source" if SOURCE_BUILD else "archive")
    assert stamp["backend"] == "cpu"
    assert stamp["version"] == "b11434"


def test_llama_server_binary_is_root_owned(host):
    binary = host.file("/opt/llama.cpp/current/llama-server")
    assert binary.is_file
    assert (binary.user, binary.group, binary.mode) == ("root", "root", 0o755)


def test_nothing_is_left_in_the_downloads(host):
    assert host.check_output("ls -A /opt/llama.cpp/.downloads") == ""


def test_source_build_leaves_no_build_tree_and_is_not_tuned_for_the_build_cpu(host):
    if not SOURCE_BUILD:
        pytest.skip("set MI50_LLAMACPP_SOURCE_BUILD=1 to build from source")
    release = Path(host.file("/opt/llama.cpp/current").linked_to).parent
    assert not host.file(f"{release}/src").exists
    assert not host.file(f"{release}/build").exists
    stamp = json.loads(host.file(f"{release}/install.json").content_string)
    assert "-DGGML_NATIVE=OFF" in stamp["cmake_args"]


def test_service_user_is_a_system_user_without_gpu_groups(host):
    user = host.user("llamacpp")
    assert user.exists
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/llama.cpp"
    assert user.groups == ["llamacpp"]  # the CPU tier needs neither render nor video


# --------------------------------------------------------------------------- models

def test_model_store_belongs_to_the_service_user(host):
    store = host.file("/var/lib/llama.cpp/models")
    assert (store.user, store.group, store.mode) == ("llamacpp", "llamacpp", 0o750)


@pytest.mark.parametrize("name", MODELS, ids=["downloaded", "copied-from-controller"])
def test_model_file_matches_its_sha256(host, name):
    model = host.file(f"/var/lib/llama.cpp/models/{name}.gguf")
    assert (model.user, model.group, model.mode) == ("llamacpp", "llamacpp", 0o640)
    assert model.sha256sum == MODEL_SHA256


def test_no_partial_download_is_left(host):
    assert host.check_output("ls -A /var/lib/llama.cpp/models/.partial") == ""


# --------------------------------------------------------------------------- unit

def test_unit_passes_systemd_analyze_verify(host):
    result = host.run(f"systemd-analyze verify {UNIT}")
    assert result.rc == 0, result.stderr


@pytest.mark.parametrize("prop", list(SANDBOX))
def test_unit_is_sandboxed(host, prop):
    assert host.check_output("systemctl show -p %s --value llama-server.service", prop) == SANDBOX[prop]


def test_unit_opens_no_gpu_device_on_the_cpu_tier(host):
    allowed = host.check_output("systemctl show -p DeviceAllow --value llama-server.service")
    assert "kfd" not in allowed and "drm" not in allowed, allowed


def test_unit_reaches_only_localhost(host):
    assert host.check_output("systemctl show -p IPAddressDeny --value llama-server.service") in {
        "0.0.0.0/0 ::/0", "::/0 0.0.0.0/0"}
    assert "127.0.0.0/8" in host.check_output("systemctl show -p IPAddressAllow --value llama-server.service")


def test_unit_exposure_is_low(host):
    out = host.check_output("systemd-analyze security --no-pager llama-server.service")
    level = float(re.search(r"Overall exposure level for llama-server\.service: ([0-9.]+)", out).group(1))
    assert level <= 2.0, out


def test_router_presets_name_each_model_and_its_file(host):
    presets = host.file("/etc/llama.cpp/models.ini")
    assert (presets.user, presets.group, presets.mode) == ("root", "llamacpp", 0o640)
    text = presets.content_string
    for name in MODELS:
        assert f"[{name}]\nmodel = /var/lib/llama.cpp/models/{name}.gguf\n" in text
    assert "[gemma-3-270m-copy]\nmodel = /var/lib/llama.cpp/models/gemma-3-270m-copy.gguf\nctx-size = 1024\n" in text


def test_service_runs_enabled(host):
    service = host.service("llama-server")
    assert service.is_running
    assert service.is_enabled


def test_first_install_started_the_server_once(host):
    # Converge installed and configured everything, idempotence changed nothing: one start, not a
    # start followed by a restart (which would load every model twice).
    started = host.check_output("journalctl -u llama-server.service -o cat --no-pager | grep -c '^Started ' || true")
    assert started == "1"


def test_listens_only_on_loopback(host):
    # Nothing else listens in the instance, and without CAP_SYS_PTRACE ss cannot
    # name the processes: every listening TCP socket here is llama-server's (the
    # router's port and one per loaded model).
    addresses = [line.split()[3] for line in host.check_output("ss -Hltn").splitlines()]
    assert "127.0.0.1:8080" in addresses
    assert all(address.startswith("127.0.0.1:") for address in addresses), addresses


# --------------------------------------------------------------------------- API

def test_health_answers(host):
    assert api(host, "/health")[0] == 200


def test_serves_exactly_the_configured_models(host):
    status, body = api(host, "/v1/models", key=KEY)
    assert status == 200, body
    assert sorted(model["id"] for model in body["data"]) == sorted(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_chat_completion_returns_generated_text(host, name):
    status, body = api(host, "/v1/chat/completions", {
        "model": name,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
        "temperature": 0,
    }, key=KEY)
    assert status == 200, body
    assert body["model"] == name
    assert body["usage"]["completion_tokens"] >= 1
    assert body["choices"][0]["message"]["content"].strip()


def test_api_key_is_required(host):
    status, _ = api(host, "/v1/models")
    assert status == 401
    key_file = host.file("/etc/llama.cpp/api-keys")
    assert (key_file.user, key_file.group, key_file.mode) == ("root", "llamacpp", 0o640)
    assert KEY not in host.check_output("systemctl cat llama-server.service")


# --------------------------------------------------------------------------- fact

def test_inference_fact_follows_the_contract(host):
    fact_file = host.file("/etc/ansible/facts.d/inference.fact")
    assert (fact_file.user, fact_file.mode) == ("root", 0o644)
    assert json.loads(fact_file.content_string) == {
        "schema": 1,
        "engine": "llamacpp",
        "version": "b11434",
        "backend": "cpu",
        "tier": "cpu",
        "accelerated": False,
        "base_url": "http://127.0.0.1:8080/v1",
        "health_url": "http://127.0.0.1:8080/health",
        "service": "llama-server.service",
        "models": MODELS,
        "default_model": MODELS[0],
        "auth": "bearer",
    }


# --------------------------------------------------------------------------- refusals, before any change

@pytest.fixture(scope="module")
def refused_inputs(host):
    """One run on a simulated MI50 (rocm tier) with every input problem a user could make at once."""
    bad_models = [
        {"name": "bad name", "url": MODEL_URL, "sha256": MODEL_SHA256},
        {"name": "two-sources", "url": MODEL_URL, "src": MODEL_SRC, "sha256": MODEL_SHA256},
        {"name": "no-sha", "url": MODEL_URL},
        {"name": "short-sha", "url": MODEL_URL, "sha256": "abc123"},
        {"name": "twice", "url": MODEL_URL, "sha256": MODEL_SHA256},
        {"name": "twice", "url": MODEL_URL, "sha256": MODEL_SHA256},
        {"name": "a:b", "url": MODEL_URL, "sha256": MODEL_SHA256},
        {"name": "a/b", "url": MODEL_URL, "sha256": MODEL_SHA256},
        {"name": "not-on-controller", "src": "/nonexistent/model.gguf", "sha256": MODEL_SHA256},
        {"name": "wrong-src-sha", "src": MODEL_SRC, "sha256": "0" * 64},
    ]
    before = snapshot(host)
    result = with_tier(host, MI50_ROCM, run_converge, {
        "llamacpp_install_method": "archive",
        "llamacpp_archive_sha256": "",
        "llamacpp_gpu_targets": "gfx90a",
        "llamacpp_models_dir": "/home/models",
        "llamacpp_default_model": "absent-model",
        "llamacpp_models": bad_models,
    })
    return result, before, snapshot(host)


@pytest.mark.parametrize("message", [
    "Add gfx906 to llamacpp_gpu_targets",
    "llama.cpp publishes no HIP build with gfx906 kernels",
    "llamacpp_archive_sha256 must be the 64-hex-digit sha256",
    "llamacpp_models_dir (/home/models) is under a path the service's sandbox hides",
    "llamacpp_default_model 'absent-model' is not one of the served models",
    "Model bad name: its name must match",
    "Model two-sources: give exactly one of url",
    "Model no-sha: it has no sha256. Add the file's sha256",
    "or set llamacpp_allow_unverified_models to true",
    "Model short-sha: its sha256 must be 64 hex digits, got 'abc123'",
    "Model names must be unique; these appear more than once: twice.",
    "Two models would be stored in the same file",
    "Model not-on-controller: /nonexistent/model.gguf does not exist on the controller.",
    f"has sha256 {MODEL_SHA256}, not the {'0' * 64} given.",
])
def test_bad_input_is_refused_with_its_fix(refused_inputs, message):
    result, _, _ = refused_inputs
    assert result.returncode != 0, result.stdout
    assert message in result.stdout, result.stdout


def test_refused_inputs_change_nothing(refused_inputs):
    result, before, after = refused_inputs
    assert "llamacpp refused mi50-llamacpp:" in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert after == before


def test_vulkan_source_build_is_refused_on_debian_12(host):
    """Debian 12's Vulkan headers are too old for this llama.cpp (seen in the lab): refuse before building."""
    before = snapshot(host)
    result = with_tier(host, LAVAPIPE, run_converge,
                       {"llamacpp_install_method": "source", "llamacpp_source_sha256": "nope"})
    assert result.returncode != 0, result.stdout
    assert "needs Vulkan headers 1.3.272 or newer" in result.stdout
    assert "Set llamacpp_install_method: archive" in result.stdout
    assert "llamacpp_source_sha256 must be the 64-hex-digit sha256" in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert snapshot(host) == before


def test_missing_tier_is_refused_with_the_fix(host):
    host.run_expect([0], f"mv {GPU_FACT} /root/gpu_backend.fact.aside")
    try:
        before = snapshot(host)
        result = run_converge(host)
        after = snapshot(host)
        # Check mode on a fresh host has no fact either (the gpu stage installed nothing to
        # probe): it plans for the cpu tier instead of failing.
        planned = plan(host)
    finally:
        host.run_expect([0], f"mv /root/gpu_backend.fact.aside {GPU_FACT}")
    assert result.returncode != 0, result.stdout
    assert "Run the gpu stage first" in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert after == before
    assert planned.returncode == 0, planned.stdout
    assert "Check mode: no gpu_backend.fact yet; planning llama.cpp for the cpu tier." in planned.stdout


# --------------------------------------------------------------------------- other tiers, planned in check mode

def test_opencl_tier_says_it_serves_on_the_cpu(host):
    fact = json.loads(host.file(GPU_FACT).content_string) | {"tier": "opencl"}
    result = with_tier(host, fact, plan)
    assert result.returncode == 0, result.stdout
    assert "no LLM engine runs inference over OpenCL on an MI50" in result.stdout
    assert "with the cpu backend (from the tier)" in result.stdout
    assert "changed=0" in result.stdout  # the same unit as on the cpu tier


def test_rocm_tier_plans_a_hip_build_with_the_gpu_devices(host):
    """Check mode on a simulated MI50: a HIP source build, and a unit opening /dev/kfd and /dev/dri."""
    result = with_tier(host, MI50_ROCM, plan, {"llamacpp_install_method": "source"})
    assert result.returncode == 0, result.stdout
    assert "llama.cpp can use gfx906 on the ROCm tier" in result.stdout
    assert "with the hip backend (from the tier)" in result.stdout
    assert "-DGGML_NATIVE=OFF -DGGML_HIP=ON -DGPU_TARGETS=gfx906" in result.stdout
    for line in ("+SupplementaryGroups=render video", "+DeviceAllow=/dev/kfd rw", "+DeviceAllow=char-drm rw",
                 "-PrivateDevices=yes", "-MemoryDenyWriteExecute=yes"):
        assert line in result.stdout, line
    assert host.file(UNIT).contains("PrivateDevices=yes")


# --------------------------------------------------------------------------- --tags models

def test_models_tag_alone_repairs_a_damaged_model_and_changes_nothing_else(host):
    """`--tags models` without the install: the damaged file is fetched again, the server restarted
    and each model proven; every other task of the run (configure, service, verify) reports no change."""
    pid = main_pid(host)
    # Same size, one byte changed: only the checksum can tell.
    host.run_expect([0], "printf X | dd of=/var/lib/llama.cpp/models/gemma-3-270m.gguf bs=1 seek=4096 conv=notrunc")
    result = run_converge(host, None, "--tags", "models")
    assert result.returncode == 0, result.stdout
    assert "TASK [llamacpp : Install what llama-server needs at run time]" not in result.stdout
    assert "changed: [mi50-llamacpp] => (item=gemma-3-270m <- " in result.stdout
    assert "RUNNING HANDLER [llamacpp : Restart llama-server]" in result.stdout
    assert "RUNNING HANDLER [llamacpp : Wait until llama-server is healthy]" in result.stdout
    for name in MODELS:
        assert re.search(rf"ok: \[mi50-llamacpp\] => \(item={re.escape(name)}\)", result.stdout), name
    # The download and the restart, nothing else.
    assert re.search(r"mi50-llamacpp : ok=\d+ changed=2 ", result.stdout), result.stdout
    assert host.file("/var/lib/llama.cpp/models/gemma-3-270m.gguf").sha256sum == MODEL_SHA256
    assert main_pid(host) != pid
    assert api(host, "/v1/models", key=KEY)[0] == 200


def test_models_tag_refuses_a_build_that_is_not_installed(host):
    before = snapshot(host)
    result = run_converge(host, {"llamacpp_version": "b99999"}, "--tags", "models")
    assert result.returncode != 0, result.stdout
    assert "the wanted build b99999-cpu-" in result.stdout
    assert "is not the one installed" in result.stdout
    assert "Run the engine stage without --tags" in result.stdout
    assert NOTHING_CHANGED in result.stdout
    assert snapshot(host) == before


# --------------------------------------------------------------------------- failures that keep the service

def test_wrong_model_sha256_fails_before_the_model_is_replaced(host):
    path = "/var/lib/llama.cpp/models/gemma-3-270m.gguf"
    before = fingerprint(host, path)
    unit_before = host.file(UNIT).content_string
    models = [
        {"name": "gemma-3-270m", "url": MODEL_URL, "sha256": "0" * 64},
        {"name": "gemma-3-270m-copy", "src": MODEL_SRC, "sha256": MODEL_SHA256, "ctx_size": 1024},
    ]
    result = run_converge(host, {"llamacpp_models": models, "llamacpp_download_retries": 3}, "--tags", "models")
    assert result.returncode != 0, result.stdout
    assert "did not match" in result.stdout
    assert "attempts: 1" in result.stdout  # a checksum mismatch is not retried
    assert fingerprint(host, path) == before
    assert host.file(UNIT).content_string == unit_before
    assert host.check_output("ls -A /var/lib/llama.cpp/models/.partial") == ""
    assert host.service("llama-server").is_running
    assert api(host, "/v1/models", key=KEY)[0] == 200


def test_wrong_source_sha256_fails_fast_and_leaves_the_running_build(host):
    """The source path, short of a build: the archive is checked before any compiler is installed,
    and a failed install leaves no half-made release behind."""
    link = host.file("/opt/llama.cpp/current").linked_to
    listing = host.check_output("ls -A /opt/llama.cpp /opt/llama.cpp/.downloads")
    result = run_converge(host, {"llamacpp_install_method": "source", "llamacpp_source_sha256": "0" * 64})
    assert result.returncode != 0, result.stdout
    assert "failed at 'Download the llama.cpp source'" in result.stdout
    assert "did not match" in result.stdout
    assert "The service was not switched to it." in result.stdout
    assert "TASK [llamacpp : Install the build tools]" not in result.stdout
    assert host.file("/opt/llama.cpp/current").linked_to == link
    assert host.check_output("ls -A /opt/llama.cpp /opt/llama.cpp/.downloads") == listing
    assert host.service("llama-server").is_running
