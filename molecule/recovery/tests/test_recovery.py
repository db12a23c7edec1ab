"""repair.yml against a box broken the ways users report it, run as a user runs it.

The converge left the whole stack on the rocm tier (a simulated MI50, ROCm from
the stand-in mirror, the amdgpu module built by the real DKMS from a stand-in
source), Ollama (stand-in) with its model, the router with a cost ledger.
Before breaking anything the tests add what a user would have: a systemd
drop-in for Ollama and a model of their own.

1. A kernel update that left the amdgpu module unbuilt (and so unloaded), a
   removed ROCm package, a deleted Vulkan ICD file, the engine stopped and
   disabled, the router's configuration corrupted (the router then restarted
   and refused it). `repair.yml --check` names every breakage and changes
   nothing; `repair.yml` rebuilds DKMS for the running kernel (headers first),
   reinstalls the package and the ICD file, restores the configuration, and,
   since the module only loads at a reboot, falls back to vulkan, reconfigures
   Ollama for it and records why.
2. The "reboot" (the module loads), a deleted model and a hung router:
   `repair.yml` moves back up to rocm, reconfigures Ollama again, pulls the
   model and restarts the router.
3. The box is healthy again: `repair.yml` changes nothing.

Throughout, the ledger's rows, the models that were there and the user's
configuration survive. Stand-ins: the card, the kernel update, the headers,
AMD's packages and Ollama (tests/standins); real: dkms, apt/dpkg, Mesa's
lavapipe, systemd, llama.cpp and the model behind the stand-in Ollama, the router.
"""

from __future__ import annotations

import pytest
from recoverykit import (LAVAPIPE_ICD, PROJECT, ROUTER_CONFIG, USER_DROPIN, USER_MODEL, USER_SETTING, changed_since,
                         changed_tasks, fact, findings, http, ledger, mark, models, ollama, process_environment, recap,
                         record, run_repair, unit, wait_until)

ROCM_PREFIX = "/opt/rocm-6.4.2"
DKMS_VERSION = "6.12.12-2187269.22.04"
PREVIOUS_KERNEL = "6.1.0-28-amd64"
MODEL = "gemma3:270m"


def kernel(host) -> str:
    return host.check_output("uname -r")


def dkms_status(host) -> str:
    return host.check_output("dkms status -m amdgpu")


def router_ready(host) -> int:
    status, _ = http(host, "GET", fact(host, "llm_router")["url"] + "/readyz")
    return status


# --------------------------------------------------------------------- the sequence

@pytest.fixture(scope="module")
def baseline(host):
    """The converged box, with a user's own drop-in and model added; what must survive."""
    gpu = fact(host, "gpu_backend")
    assert gpu["tier"] == "rocm", gpu
    assert f"amdgpu/{DKMS_VERSION}, {kernel(host)}, x86_64: installed" in dkms_status(host)
    name, value = USER_SETTING
    host.run_expect([0], f"mkdir -p {USER_DROPIN.rsplit('/', 1)[0]} && "
                         f"printf '[Service]\\nEnvironment=\"{name}={value}\"\\n' > {USER_DROPIN} && "
                         "systemctl daemon-reload")
    status, body = ollama(host, "POST", "/api/copy", {"source": MODEL, "destination": USER_MODEL})
    assert status == 200, body
    state = {"ledger": ledger(host), "models": models(host), "config": host.file(ROUTER_CONFIG).content_string}
    assert state["ledger"]["requests"], "the converge's smoke compression left no ledger rows"
    return state


@pytest.fixture(scope="module")
def checked(host, baseline):
    """Break the box the first way, then ask repair.yml --check for the diagnosis."""
    # The kernel update: amdgpu built for the previous kernel only, the running
    # kernel's headers gone, and after the "reboot" into it no module (and /run cleared).
    host.run_expect([0], f"simulate-kernel-update {PREVIOUS_KERNEL}")
    host.run_expect([0], "simulate-gpu unload && rm -f /run/reboot-required /run/reboot-required.pkgs")
    # A runtime package removed (apt takes the rocm metapackage along), an ICD file deleted.
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get remove --yes --quiet rocminfo")
    host.run_expect([0], f"rm {LAVAPIPE_ICD}")
    host.run_expect([0], "systemctl disable --now ollama.service")
    # A hand edit that breaks the router's configuration, found at its next start.
    host.run_expect([0], f"printf 'routing: [unclosed\\n' >> {ROUTER_CONFIG}")
    host.run("systemctl restart llm-router.service")
    wait_until(lambda: unit(host, "llm-router.service")["ActiveState"] == "failed", timeout=60)
    marker = mark(host, "before-check")
    result = run_repair(host, "--check")
    assert result.returncode == 0, result.stdout[-6000:]
    result.marker = marker
    return result


@pytest.fixture(scope="module")
def repaired(host, checked):
    result = run_repair(host)
    assert result.returncode == 0, result.stdout[-8000:]
    return result


@pytest.fixture(scope="module")
def moved_up(host, repaired):
    """The "reboot" loads the rebuilt module; meanwhile a model was deleted and the router hangs."""
    host.run_expect([0], "simulate-gpu add && rm -f /run/reboot-required /run/reboot-required.pkgs")
    status, body = ollama(host, "DELETE", "/api/delete", {"model": MODEL})
    assert status == 200, body
    assert MODEL not in models(host)
    host.run_expect([0], "systemctl kill --signal=SIGSTOP llm-router.service")
    hung = unit(host, "llm-router.service")["MainPID"]
    result = run_repair(host)
    assert result.returncode == 0, result.stdout[-8000:]
    return result, hung


@pytest.fixture(scope="module")
def steady(host, moved_up):
    """repair.yml once more, on the box it just repaired."""
    pids = {s: unit(host, s)["MainPID"] for s in ("ollama.service", "llm-router.service")}
    marker = mark(host, "before-steady")
    result = run_repair(host)
    assert result.returncode == 0, result.stdout[-8000:]
    return result, pids, marker


@pytest.fixture(scope="module")
def typical(host, steady):
    """What breaks most often once the GPU side works: the engine stopped, a model deleted, the router's
    configuration corrupted. The repair reruns only the engine and router stages."""
    status, body = ollama(host, "DELETE", "/api/delete", {"model": MODEL})
    assert status == 200, body
    host.run_expect([0], "systemctl stop ollama.service")
    host.run_expect([0], f"printf 'routing: [unclosed\\n' >> {ROUTER_CONFIG}")
    host.run("systemctl restart llm-router.service")
    wait_until(lambda: unit(host, "llm-router.service")["ActiveState"] == "failed", timeout=60)
    result = run_repair(host)
    assert result.returncode == 0, result.stdout[-8000:]
    return result


# --------------------------------------------------------------------- 1. diagnosis only

@pytest.mark.parametrize("finding", ["dkms_not_built", "module_not_loaded", "device_nodes_missing", "tier_failing",
                                     "fallback_lost", "engine_down", "router_down", "router_config_invalid"])
def test_check_mode_diagnosis_names_each_breakage(checked, finding):
    assert finding in findings(checked.stdout)


@pytest.mark.parametrize("text", [
    # what each line says, and what will be done about it
    f"DKMS has amdgpu {DKMS_VERSION} built for {PREVIOUS_KERNEL} only, not for the running kernel",
    "(its headers are missing) => repair: install linux-headers-",
    "rocminfo not installed",
    "vulkaninfo lists no GPU device",
    "ollama (ollama.service) is inactive and disabled => repair: enable and start it",
    "the router refuses /etc/llm-router/config.yml: error: /etc/llm-router/config.yml: (file): not valid YAML",
    "Check mode: this was the diagnosis only; nothing was changed.",
])
def test_check_mode_diagnosis_says_what_and_what_repair_does(checked, text):
    assert text in checked.stdout


def test_check_mode_changed_nothing(host, checked):
    assert recap(checked.stdout)["changed"] == 0, changed_tasks(checked.stdout)
    assert changed_since(host, checked.marker) == []
    assert unit(host, "ollama.service")["ActiveState"] == "inactive"
    assert unit(host, "ollama.service")["UnitFileState"] == "disabled"
    assert not host.file(LAVAPIPE_ICD).exists
    assert not host.package("rocminfo").is_installed
    assert "built for" not in host.check_output(f"dkms status -m amdgpu -k {kernel(host)}")


# --------------------------------------------------------------------- 1. after the first repair

def test_dkms_rebuilt_the_module_for_the_running_kernel_after_its_headers(host, repaired):
    running = kernel(host)
    assert f"amdgpu/{DKMS_VERSION}, {running}, x86_64: installed" in dkms_status(host)
    assert host.package(f"linux-headers-{running}").is_installed
    # The stand-in build fails without the headers' Makefile: a module built for
    # the running kernel means the headers came first.
    module = host.file(f"/lib/modules/{running}/updates/dkms/amdgpu.ko")
    assert module.exists and f"for kernel {running}" in module.content_string
    # The module changed: a reboot is needed, and a container is never rebooted.
    assert "REBOOT NEEDED" in repaired.stdout
    assert "amdgpu-dkms" in host.file("/run/reboot-required.pkgs").content_string


@pytest.mark.parametrize(("package", "path"), [("rocminfo", f"{ROCM_PREFIX}/bin/rocminfo"),
                                                ("mesa-vulkan-drivers", LAVAPIPE_ICD)])
def test_runtime_files_are_back_and_verify_clean(host, repaired, package, path):
    assert host.file(path).exists
    assert host.run(f"dpkg --verify {package}").stdout == ""


def test_vulkan_reinstall_was_the_targeted_one(repaired):
    assert f"mesa-vulkan-drivers:amd64 lost or changed {LAVAPIPE_ICD}" in repaired.stdout


def test_falls_back_to_vulkan_and_records_why(host, repaired):
    gpu = fact(host, "gpu_backend")
    assert gpu["tier"] == "vulkan"
    assert "ROCk module is NOT loaded" in gpu["rejected"]["rocm"]
    moved = record(host)["tier_change"]
    assert (moved["from"], moved["to"]) == ("rocm", "vulkan")
    assert "ROCk module is NOT loaded" in moved["why"]


def test_engine_is_reconfigured_for_vulkan_enabled_and_healthy(host, repaired):
    engine = fact(host, "inference")
    assert (engine["tier"], engine["version"]) == ("vulkan", "0.32.7")
    state = unit(host, "ollama.service")
    assert (state["ActiveState"], state["UnitFileState"]) == ("active", "enabled")
    env = process_environment(host, "ollama.service")
    assert env.get("OLLAMA_VULKAN") == "1" and "ROCR_VISIBLE_DEVICES" not in env
    status, body = ollama(host, "GET", "/api/version")
    assert status == 200 and body["version"] == "0.32.7"


def test_router_configuration_is_restored_and_ready(host, baseline, repaired):
    assert host.file(ROUTER_CONFIG).content_string == baseline["config"]
    assert unit(host, "llm-router.service")["ActiveState"] == "active"
    assert router_ready(host) == 200


def test_smoke_compression_ran_at_the_end(host, baseline, repaired):
    smoke = record(host)["smoke"]
    assert smoke["backend"] and smoke["round_trip_equal"] is not None
    # Its two requests are in the ledger, after the rows that were there.
    assert len(ledger(host)["requests"]) >= len(baseline["ledger"]["requests"]) + 2


@pytest.mark.parametrize("line", [
    "tier: rocm (fails its probe) -> vulkan (passes its probe)",
    "engine: ollama 0.12.3 on rocm: inactive -> ollama 0.32.7 on vulkan: healthy",
    "router: failed -> ready",
    "tier moved rocm -> vulkan: rocminfo lists no GPU agent",
])
def test_prints_before_and_after(repaired, line):
    assert line in repaired.stdout


def test_record_says_what_was_repaired_and_what_still_needs_a_reboot(host, repaired):
    rec = record(host)
    repaired_text = " ".join(rec["repaired"])
    for fixed in ("DKMS has amdgpu", "is inactive and disabled", "the router refuses"):
        assert fixed in repaired_text
    assert any("amdgpu kernel module is not loaded" in p for p in rec["still_open"])
    assert "reboot_pending" in [f["id"] for f in rec["after"]["findings"]]


# --------------------------------------------------------------------- 2. back up the ladder

def test_second_diagnosis_sees_the_card_back_the_model_gone_and_the_router_hung(moved_up):
    result, _ = moved_up
    assert findings(result.stdout)[:1] == ["tier_recovered"]
    assert {"models_missing", "router_not_ready"} <= set(findings(result.stdout))
    assert "MOVE UP [tier_recovered] rocm, preferred over the recorded vulkan, passes its probe again" in result.stdout


def test_moves_back_up_to_rocm(host, moved_up):
    gpu = fact(host, "gpu_backend")
    assert gpu["tier"] == "rocm" and "rocm" not in gpu["rejected"]
    moved = record(host)["tier_change"]
    assert (moved["from"], moved["to"]) == ("vulkan", "rocm")


def test_engine_is_reconfigured_for_rocm_again(host, moved_up):
    engine = fact(host, "inference")
    assert (engine["tier"], engine["version"]) == ("rocm", "0.12.3")
    env = process_environment(host, "ollama.service")
    assert env.get("ROCR_VISIBLE_DEVICES") == "0" and "OLLAMA_VULKAN" not in env
    status, body = ollama(host, "GET", "/api/version")
    assert status == 200 and body["version"] == "0.12.3"


def test_deleted_model_is_pulled_again(host, moved_up):
    assert MODEL in models(host)


def test_hung_router_was_restarted(host, moved_up):
    _, hung = moved_up
    state = unit(host, "llm-router.service")
    assert state["ActiveState"] == "active" and state["MainPID"] != hung
    assert router_ready(host) == 200


def test_nothing_is_left_to_repair_but_notices(host, moved_up):
    assert [f["id"] for f in record(host)["after"]["findings"] if f["severity"] != "notice"] == []


# --------------------------------------------------------------------- 3. a healthy box

def test_repair_on_a_healthy_box_finds_nothing_and_changes_nothing(host, steady):
    result, pids, marker = steady
    assert "No problem found: every check passed." in result.stdout.partition("PLAY [Preflight")[0]
    assert recap(result.stdout)["changed"] == 0, changed_tasks(result.stdout)
    # Not only what Ansible reported: no file changed, no service restarted.
    assert changed_since(host, marker) == []
    assert {s: unit(host, s)["MainPID"] for s in pids} == pids
    assert record(host)["after"]["findings"] == [] and record(host)["tier_change"] is None


def test_a_healthy_box_reruns_no_stage(host, steady):
    result, _pids, _marker = steady
    assert "No stage needs rerunning (nothing found broken)" in result.stdout
    assert record(host)["stages_rerun"] == []


# --------------------------------------------------------------------- 4. a typical repair

def test_a_typical_repair_reruns_only_the_engine_and_the_router(host, typical):
    assert "Stages to rerun: engine, router; not rerun: gpu" in typical.stdout
    # The wall time, for the README's figures (tests assert behaviour; this only records it).
    timings = PROJECT / ".cache" / "molecule-logs" / "recovery-timings.txt"
    timings.parent.mkdir(parents=True, exist_ok=True)
    with timings.open("a") as out:
        out.write(f"typical repair (engine, router, smoke): {typical.seconds} s; stages {record(host)['stages_s']}\n")
    rec = record(host)
    assert rec["stages_rerun"] == ["engine", "router"]
    assert "gpu" not in rec["stages_s"] and {"engine", "router", "smoke"} <= set(rec["stages_s"])
    assert "Repair took " in typical.stdout
    assert [f["id"] for f in rec["after"]["findings"] if f["severity"] != "notice"] == []
    assert MODEL in models(host) and router_ready(host) == 200
    assert unit(host, "ollama.service")["ActiveState"] == "active"


# --------------------------------------------------------------------- kept throughout

def test_ledger_rows_survive_every_repair(host, baseline, steady):
    now = ledger(host)
    for table in ("requests", "usage"):
        assert now[table][:len(baseline["ledger"][table])] == baseline["ledger"][table]
        # Each repair's smoke compression added its own rows.
        assert len(now[table]) >= len(baseline["ledger"][table]) + 3


def test_users_model_survives_unchanged(host, baseline, steady):
    assert models(host)[USER_MODEL] == baseline["models"][MODEL]


def test_users_drop_in_survives_and_is_in_effect(host, steady):
    name, value = USER_SETTING
    assert host.file(USER_DROPIN).exists
    assert process_environment(host, "ollama.service").get(name) == value
