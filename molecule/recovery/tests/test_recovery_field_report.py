"""playbooks/field_report.yml on the recovered box, run as a user runs it (after test_recovery.py: the file
names sort after it, and the box is healthy again on the rocm tier).

Before the report, the tests plant what must never leave the box: a secret in the router's secrets file
(which the report must not even open), an API key in an engine's env file (/etc/vllm/vllm.env) and a token
in an Ollama drop-in (both read, so masked), a peer's IP and MAC address, and a login user. The report
runs twice: on the healthy box, and in check mode with Ollama stopped. The archive must hold every tool's
output with its command, exit code and time, none of the planted values nor the box's own name, addresses
or user, and its replay (files/field_report/field_report.py) must choose the tier the box recorded and
see what diagnose sees. Nothing on the box may change.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from recoverykit import PROJECT, changed_since, fact, mark, unit, wait_until

ROUTER_SECRETS = "/etc/llm-router/secrets.env"
VLLM_ENV = "/etc/vllm/vllm.env"
DROPIN = "/etc/systemd/system/ollama.service.d/mi50-field-report.conf"
USER = "fieldtester"
PEER_IP = "192.168.77.12"
PEER_MAC = "3c:ec:ef:12:34:56"
CLI = PROJECT / "files" / "field_report" / "field_report.py"


def run_field_report(host, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    """ansible-playbook playbooks/field_report.yml against this instance; the archive it wrote."""
    out_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"field-reports-{int(time.time())}"
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", f"field_report_dir={out_dir}", *args, str(PROJECT / "playbooks" / "field_report.yml")],
        capture_output=True, text=True, env=env, timeout=900)
    result.stdout += result.stderr
    (out_dir.parent / f"{out_dir.name}.log").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:]
    archives = sorted(out_dir.glob("field-report-*.tar.gz"))
    assert len(archives) == 1, (archives, result.stdout[-3000:])
    return result, archives[0]


def archive_text(archive: Path) -> str:
    """Everything in the archive, as one text (what an issue would receive)."""
    with tarfile.open(archive) as tar:
        return "\n".join(tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile())


def report_of(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/report.json"))
        return json.load(tar.extractfile(member))


def replay(archive: Path) -> dict:
    done = subprocess.run([sys.executable, str(CLI), "replay", "--json", str(archive)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def item(report: dict, key: str) -> dict:
    found = [i for i in report["items"] if i["id"] == key or i.get("url") == key]
    assert found, f"no item {key} in {[i['id'] for i in report['items']]}"
    return found[0]


def recap_changed(output: str) -> int:
    return int(re.search(r"changed=(\d+)", output.split("PLAY RECAP", 1)[1]).group(1))


@pytest.fixture(scope="module")
def planted(host):
    """Plant secrets, a peer's addresses and a login user; what the box calls itself. Removed afterwards."""
    values = {name: f"planted-{name}-{secrets.token_hex(8)}" for name in ("router", "vllm", "hf")}
    router_before = host.file(ROUTER_SECRETS).content_string
    host.run_expect([0], f"printf 'MI50_PLANTED_ROUTER={values['router']}\\n' >> {ROUTER_SECRETS}")
    host.run_expect([0], f"mkdir -p /etc/vllm && printf 'VLLM_API_KEY={values['vllm']}\\nVLLM_PEER={PEER_IP}\\n' "
                         f"> {VLLM_ENV} && chmod 600 {VLLM_ENV}")
    host.run_expect([0], f"useradd --create-home {USER}")
    name = host.check_output("hostname")
    # A drop-in added as a user adds one (systemctl cat shows what systemd loaded: hence the reload).
    host.run_expect([0], f"printf '[Service]\\nEnvironment=\"HF_TOKEN={values['hf']}\" "
                         f"\"MI50_FIELD_NOTE=peer {PEER_IP} {PEER_MAC} owner {USER} on {name} home /home/{USER}\"\\n' "
                         f"> {DROPIN} && systemctl daemon-reload")
    identity = {
        "hostname": name,
        "ips": host.check_output("hostname -I").split(),
        "macs": [m for m in host.check_output("cat /sys/class/net/*/address").split() if m != "00:00:00:00:00:00"],
    }
    yield values, identity, router_before
    host.run(f"rm -f {DROPIN} {VLLM_ENV} && rmdir /etc/vllm; userdel --remove {USER}; systemctl daemon-reload")
    host.run(f"printf %s {shlex.quote(router_before)} > {ROUTER_SECRETS}")


@pytest.fixture(scope="module")
def healthy(host, planted):
    marker = mark(host, "before-field-report")
    result, archive = run_field_report(host)
    return result, archive, report_of(archive), changed_since(host, marker)


@pytest.fixture(scope="module")
def checked(host, healthy):
    """--check on a box whose engine is stopped: still read-only, and the replay sees the engine down."""
    host.run_expect([0], "systemctl stop ollama.service")
    marker = mark(host, "before-field-report-check")
    try:
        result, archive = run_field_report(host, "--check")
        changed = changed_since(host, marker)
        still_stopped = unit(host, "ollama.service")["ActiveState"]
    finally:
        host.run_expect([0], "systemctl start ollama.service")
        wait_until(lambda: unit(host, "ollama.service")["ActiveState"] == "active", timeout=60)
    return result, archive, report_of(archive), changed, still_stopped


# --------------------------------------------------------------------- the archive

def test_archive_is_named_after_the_placeholder_and_holds_json_and_text(healthy):
    _result, archive, report, _changed = healthy
    assert re.fullmatch(r"field-report-host-1-\d{8}T\d{6}Z\.tar\.gz", archive.name), archive.name
    with tarfile.open(archive) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
    stem = archive.name[:-len(".tar.gz")]
    assert names == [f"{stem}/report.json", f"{stem}/report.txt"]
    assert report["kind"] == "mi50-field-report" and report["host"] == "host-1" and report["check_mode"] is False


@pytest.mark.parametrize("key", [
    "os_release", "uname", "kernels_installed", "pci_gpus", "module_state", "modinfo", "dkms_status", "kernel_log",
    "secure_boot", "secure_boot_efivar", "rocm_version", "rocminfo", "rocm_smi", "amd_smi", "vulkaninfo",
    "clinfo_raw", "clinfo_amd", "packages", "fact:gpu_backend", "fact:inference", "fact:llm_router",
    "record:repair.json", "record:report.json", "unit:ollama.service", "journal:ollama.service",
    "journal:llm-router.service", "unit_file:ollama.service", "http://127.0.0.1:11434/api/ps",
    "http://127.0.0.1:11434/api/version", "router_check_config",
])
def test_each_item_has_its_command_exit_code_and_time(healthy, key):
    _result, _archive, report, _changed = healthy
    found = item(report, key)
    assert isinstance(found["command"], str) and found["command"]
    assert isinstance(found["rc"], int)
    assert isinstance(found["elapsed_s"], (int, float)) and 0 <= found["elapsed_s"] < 120


def test_the_box_was_read_as_it_is(host, healthy):
    _result, _archive, report, _changed = healthy
    assert "gfx906" in item(report, "rocminfo")["stdout"] and item(report, "rocminfo")["rc"] == 0
    assert "amdgpu/" in item(report, "dkms_status")["stdout"]
    assert item(report, "pci_gpus")["stdout"].count("vendor=0x1002") == 1
    assert json.loads(item(report, "fact:gpu_backend")["stdout"])["tier"] == fact(host, "gpu_backend")["tier"]
    version = item(report, "http://127.0.0.1:11434/api/version")
    assert version["status"] == 200 and json.loads(version["stdout"])["version"] == fact(host, "inference")["version"]
    assert "models" in json.loads(item(report, "http://127.0.0.1:11434/api/ps")["stdout"])
    assert item(report, fact(host, "llm_router")["url"] + "/readyz")["status"] == 200
    assert item(report, "journal:ollama.service")["stdout"].strip()


def test_a_missing_tool_is_recorded_not_a_failure(host, healthy):
    _result, _archive, report, _changed = healthy
    for key, tool in (("secure_boot", "mokutil"), ("amd_smi", "amd-smi"), ("lspci", "lspci")):
        if not host.exists(tool):
            assert item(report, key)["rc"] == 127 and "not installed" in item(report, key)["stderr"]
    assert any(i["rc"] == 127 for i in report["items"]), "expected at least one tool the lab box lacks"


def test_the_report_changed_nothing_on_the_box(healthy):
    result, _archive, _report, changed = healthy
    assert recap_changed(result.stdout) == 0
    assert changed == []


# --------------------------------------------------------------------- redaction

def test_planted_secrets_never_reach_the_archive(planted, healthy):
    values, _identity, _before = planted
    text = archive_text(healthy[1])
    for name, value in values.items():
        assert value not in text, f"the planted {name} secret is in the archive"


def test_the_router_secrets_file_is_never_read(planted, healthy):
    _values, _identity, router_before = planted
    _result, _archive, report, _changed = healthy
    text = archive_text(healthy[1])
    assert "/etc/llm-router/secrets.env" in report["redaction"]["never_read"]
    assert "MI50_PLANTED_ROUTER" not in text
    # Nor anything the router role wrote there (the scenario has no cloud key, but maybe tokens).
    for line in router_before.splitlines():
        value = line.split("=", 1)[1] if "=" in line and not line.startswith("#") else ""
        if len(value) >= 6:
            assert value not in text


def test_read_secrets_are_masked_where_they_were(healthy):
    _result, _archive, report, _changed = healthy
    assert "VLLM_API_KEY=REDACTED" in item(report, f"env:{VLLM_ENV}")["stdout"]
    assert "HF_TOKEN=REDACTED" in item(report, "unit_file:ollama.service")["stdout"]


def test_the_box_name_addresses_and_users_never_reach_the_archive(planted, healthy):
    _values, identity, _before = planted
    text = archive_text(healthy[1]).lower()
    for value in [identity["hostname"], *identity["ips"], *identity["macs"], PEER_IP, PEER_MAC, USER]:
        assert value.lower() not in text, f"{value} is in the archive"


def test_placeholders_are_the_same_for_the_same_value(healthy):
    _result, _archive, report, _changed = healthy
    note = re.search(r"MI50_FIELD_NOTE=peer (\S+) (\S+) owner (\S+) on (\S+) home ([^\s\"]+)",
                     item(report, "unit_file:ollama.service")["stdout"])
    assert note, item(report, "unit_file:ollama.service")["stdout"]
    ip, mac, user, box, home = note.groups()
    assert re.fullmatch(r"ip-\d+", ip) and re.fullmatch(r"mac-\d+", mac) and re.fullmatch(r"user-\d+", user)
    assert box == report["host"] == "host-1" and home == f"/home/{user}"
    # The same peer address in another file, and the box's name in its journal, get the same placeholders.
    assert f"VLLM_PEER={ip}" in item(report, f"env:{VLLM_ENV}")["stdout"]
    assert " host-1 " in item(report, "journal:ollama.service")["stdout"]


# --------------------------------------------------------------------- check mode

def test_check_mode_collects_the_same_and_changes_nothing(healthy, checked):
    result, _archive, report, changed, still_stopped = checked
    assert report["check_mode"] is True
    assert recap_changed(result.stdout) == 0 and changed == []
    assert still_stopped == "inactive"
    # Ollama stopped: nothing answers, but each request is still an item.
    assert [i["id"] for i in report["items"]] == [i["id"] for i in healthy[2]["items"]]
    assert item(report, "http://127.0.0.1:11434/api/ps")["status"] == -1


# --------------------------------------------------------------------- replay

def test_replay_chooses_the_tier_the_box_recorded(host, healthy):
    result = replay(healthy[1])
    recorded = fact(host, "gpu_backend")["tier"]
    assert recorded == "rocm"
    assert (result["tier"], result["recorded_tier"], result["same_as_recorded"]) == (recorded, recorded, True)
    assert result["choice"]["fact"]["device"]["gfx_target"] == fact(host, "gpu_backend")["device"]["gfx_target"]


def test_replay_of_the_healthy_box_finds_no_problem(healthy):
    result = replay(healthy[1])
    assert [f["id"] for f in result["findings"] if f["severity"] != "notice"] == []
    assert result["summary"]["router"] == "ready" and result["summary"]["models"] == "all served"


def test_replay_sees_the_stopped_engine(checked):
    result = replay(checked[1])
    assert "engine_down" in [f["id"] for f in result["findings"]]
    assert result["tier"] == "rocm"
