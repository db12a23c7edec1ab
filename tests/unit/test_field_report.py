"""The field report module (mi50.stack.field_report): what it collects, and its redaction on the box.

The module runs here with its commands and HTTP requests replaced by planted outputs (the real rocminfo of
ROCm issue #1886 among them) and a temporary facts directory, records and env files: a planted secret, host
name, IP and MAC address and user name must never reach the report, the secrets file must not be opened,
and the same value must get the same placeholder everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.mi50.stack.plugins.modules import field_report

DATA = Path(__file__).parent / "data"
ROCMINFO = (DATA / "rocminfo" / "rocm-issue-1886-mi210-mi50-mi100.stdout").read_text()

HOST, FQDN = "mi50box", "mi50box.lab.example"
USER = "alice"
LAN_IP, PEER_IP = "10.20.30.41", "192.168.77.12"
MAC = "3C:EC:EF:12:34:56"
IPV6 = "fe80::3eec:efff:fe12:3456"
CLOUD_KEY = "sk-proj-A1b2C3d4E5f6G7h8I9j0"
VLLM_KEY = "vllm-key-very-secret-0042"
ROUTER_SECRET = "router-secret-never-read-9876"
HF_TOKEN = "hf_plantedTokenValue1234567890"


@pytest.fixture
def box(tmp_path):
    """A box's files: facts, records, an env file, the router's secrets file."""
    facts = tmp_path / "facts.d"
    facts.mkdir()
    (facts / "gpu_backend.fact").write_text(json.dumps({"schema": 1, "tier": "rocm", "order": ["rocm", "vulkan"]}))
    (facts / "inference.fact").write_text(json.dumps({
        "schema": 1, "engine": "ollama", "version": "0.12.3", "tier": "rocm", "service": "ollama.service",
        "base_url": "http://127.0.0.1:11434/v1", "health_url": "http://127.0.0.1:11434/api/version",
        "models": ["qwen2.5:7b-instruct-q4_K_M"], "auth": "none"}))
    (facts / "llm_router.fact").write_text(json.dumps({
        "schema": 1, "url": f"http://{LAN_IP}:8090", "service": "llm-router.service",
        "config": str(tmp_path / "config.yml")}))
    repair = tmp_path / "repair.json"
    repair.write_text(json.dumps({"schema": 1, "host": FQDN, "finished_at": "2026-11-29T10:00:00+00:00"}))
    env = tmp_path / "vllm.env"
    env.write_text(f"# written by the vllm role\nVLLM_API_KEY={VLLM_KEY}\nVLLM_PEER={PEER_IP}\n")
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"LLM_ROUTER_CLOUD_API_KEY={CLOUD_KEY}\nMI50_PLANTED={ROUTER_SECRET}\n")
    return tmp_path


def params(box: Path, **changes) -> dict:
    base = {
        "sysfs_root": str(box / "sys"), "kernel_module": "amdgpu", "facts_dir": str(box / "facts.d"),
        "records": [str(box / "repair.json"), str(box / "report.json")],
        # The secrets file is asked for as an env file too: never_read wins.
        "env_files": [str(box / "vllm.env"), str(box / "secrets.env")],
        "never_read": [str(box / "secrets.env")],
        "services": {"ollama": {"service": "ollama.service", "url": "http://127.0.0.1:11434",
                                "paths": ["/api/version", "/api/ps", "/v1/models"]},
                     "vllm": {"service": "vllm.service", "url": "http://127.0.0.1:8000", "paths": ["/v1/models"]}},
        "journal_lines": 60, "timeout": 5, "probe_path": ["/opt/rocm/bin", "/usr/bin"],
        "hostnames": [FQDN], "users": [], "context": {"tier_order": ["rocm", "vulkan"], "controller": FQDN},
        "max_output_bytes": 262144,
    }
    base.update(changes)
    return base


JOURNAL = (f"2026-11-29T10:00:01+0000 {HOST} ollama[812]: time=... level=INFO msg=\"Listening on {LAN_IP}:11434\"\n"
           f"2026-11-29T10:00:02+0000 {HOST} ollama[812]: client {PEER_IP} ({MAC}) via {IPV6} user {USER} "
           f"Authorization: Bearer {HF_TOKEN[3:]}\n"
           f"2026-11-29T10:00:03+0000 {HOST} ollama[812]: loading /home/{USER}/models with OPENAI_API_KEY={CLOUD_KEY}\n")


def fake_run(argv: list, timeout: int) -> tuple[int, str, str]:
    """The box's tools as planted here; anything else is not installed."""
    key = " ".join(argv)
    if key == "uname -a":
        return 0, f"Linux {HOST} 6.8.0-45-generic #45-Ubuntu SMP x86_64 GNU/Linux\n", ""
    if key == "uname -r":
        return 0, "6.8.0-45-generic\n", ""
    if key == "rocminfo":
        return 0, ROCMINFO, ""
    if key.startswith("systemctl show ollama.service"):
        return 0, "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n", ""
    if key.startswith("systemctl show"):
        return 0, "LoadState=not-found\nActiveState=inactive\n", ""
    if key.startswith("systemctl cat --no-pager ollama.service"):
        return 0, (f"# /etc/systemd/system/ollama.service.d/user.conf\n[Service]\n"
                   f"Environment=\"HF_TOKEN={HF_TOKEN}\" \"OLLAMA_ORIGINS=http://{HOST}:3000,http://{PEER_IP}:3000\"\n"), ""
    if key.startswith("journalctl -u ollama.service"):
        return 0, JOURNAL, ""
    if key.startswith("dpkg-query"):
        return 0, ("ii  libvulkan1 1.3.239.0-1\nii  vulkan-tools 1.3.239.0+dfsg1-1\nii  rocminfo 1.0.0.60402-120~24.04\n"), ""
    if key == "vulkaninfo --summary":
        return 0, "Vulkan Instance Version: 1.3.239\n\tconformanceVersion = 1.3.1.1\n", ""
    return 127, "", f"{argv[0]}: not installed"


def fake_fetch(url: str, headers: dict, timeout: int) -> tuple[int, str, str]:
    if url == "http://127.0.0.1:11434/api/version":
        return 200, '{"version": "0.12.3"}', ""
    if url == "http://127.0.0.1:11434/api/ps":
        return 200, json.dumps({"models": [{"name": "qwen2.5:7b-instruct-q4_K_M", "size_vram": 5 << 30}]}), ""
    if url == "http://127.0.0.1:11434/v1/models":
        return 200, json.dumps({"data": [{"id": "qwen2.5:7b-instruct-q4_K_M"}]}), ""
    return -1, "", "Request failed: <urlopen error [Errno 111] Connection refused>"


@pytest.fixture
def report(box, monkeypatch):
    opened = []
    real = field_report.read_file

    def spy(path):
        opened.append(str(path))
        return real(path)

    monkeypatch.setattr(field_report, "read_file", spy)
    result = field_report.build_report(params(box), False, run=fake_run, fetch=fake_fetch, hostname=HOST,
                                       names={HOST, FQDN}, users={USER})
    result["_opened"] = opened
    return result


def item(report: dict, key: str) -> dict:
    return next(i for i in report["items"] if i["id"] == key or i.get("url") == key)


# --------------------------------------------------------------------- what it collects

def test_every_item_has_command_exit_code_and_time(report):
    ids = [i["id"] for i in report["items"]]
    assert len(ids) == len(set(ids))
    for entry in report["items"]:
        assert entry["command"] and isinstance(entry["rc"], int) and entry["elapsed_s"] >= 0, entry


def test_a_missing_tool_is_an_item_with_rc_127(report):
    for key in ("dkms_status", "modinfo", "secure_boot", "clinfo_raw", "amd_smi", "rocm_smi"):
        assert item(report, key)["rc"] == 127
        assert "not installed" in item(report, key)["stderr"]


def test_real_rocminfo_output_is_kept_whole(report):
    assert item(report, "rocminfo")["stdout"] == ROCMINFO


def test_facts_records_and_the_recorded_engine_are_collected(report):
    assert json.loads(item(report, "fact:gpu_backend")["stdout"])["tier"] == "rocm"
    assert item(report, "http://127.0.0.1:11434/api/ps")["status"] == 200
    assert item(report, "http://127.0.0.1:11434/v1/models")["rc"] == 0
    assert item(report, "record:report.json")["rc"] == 1  # missing: recorded, not fatal
    # vLLM's unit is unknown to systemd and not recorded: left out.
    assert not any("vllm.service" in i["id"] for i in report["items"])
    # The router's unit is unknown here but its fact records it: asked anyway, its failure recorded.
    ready = item(report, "http://ip-1:8090/readyz")
    assert (ready["status"], ready["rc"]) == (-1, 1)


def test_a_long_output_keeps_its_end(box):
    def loud(argv, timeout):
        return (0, "x" * 1000 + "THE END\n", "") if argv == ["rocminfo"] else fake_run(argv, timeout)

    result = field_report.build_report(params(box, max_output_bytes=100), False, run=loud, fetch=fake_fetch,
                                       hostname=HOST, names=set(), users=set())
    rocminfo = item(result, "rocminfo")
    assert rocminfo["truncated"] is True and rocminfo["stdout"].endswith("THE END\n") and len(rocminfo["stdout"]) == 100


# --------------------------------------------------------------------- redaction

@pytest.mark.parametrize("planted", [CLOUD_KEY, VLLM_KEY, ROUTER_SECRET, HF_TOKEN, HF_TOKEN[3:], HOST, LAN_IP,
                                     PEER_IP, MAC, MAC.lower(), IPV6, USER])
def test_planted_values_never_reach_the_report(report, planted):
    text = json.dumps({k: v for k, v in report.items() if k != "_opened"})
    assert planted.lower() not in text.lower()


def test_the_secrets_file_is_never_opened(report, box):
    assert str(box / "secrets.env") not in report["_opened"]
    assert str(box / "vllm.env") in report["_opened"]
    refused = item(report, f"env:{box / 'secrets.env'}")
    assert refused["not_read"] is True and refused["stdout"] == ""
    assert str(box / "secrets.env") in report["redaction"]["never_read"]


def test_secrets_are_masked_where_they_were(report, box):
    assert f"VLLM_API_KEY={field_report.Redactor.SECRET}" in item(report, f"env:{box / 'vllm.env'}")["stdout"]
    assert "HF_TOKEN=REDACTED" in item(report, "unit_file:ollama.service")["stdout"]
    journal = item(report, "journal:ollama.service")["stdout"]
    assert "Bearer REDACTED" in journal and "OPENAI_API_KEY=REDACTED" in journal


def test_placeholders_are_consistent_across_the_report(report, box):
    assert report["host"] == "host-1"
    assert item(report, "uname")["stdout"].startswith("Linux host-1 ")
    journal = item(report, "journal:ollama.service")["stdout"]
    assert journal.count(" host-1 ollama[812]") == 3
    # The FQDN the record names is another name of the box: its own placeholder, the same everywhere.
    fqdn = json.loads(item(report, "record:repair.json")["stdout"])["host"]
    assert fqdn.startswith("host-") and report["context"]["controller"] == fqdn
    # The peer's address: the same placeholder in the journal, the unit file and the env file.
    peer = journal.split("client ")[1].split()[0]
    assert peer.startswith("ip-")
    assert f"http://{peer}:3000" in item(report, "unit_file:ollama.service")["stdout"]
    assert f"VLLM_PEER={peer}" in item(report, f"env:{box / 'vllm.env'}")["stdout"]
    # Distinct values, distinct placeholders; the user in a path too.
    lan = json.loads(item(report, "fact:llm_router")["stdout"])["url"].split("//")[1].split(":")[0]
    assert lan.startswith("ip-") and lan != peer and f"Listening on {lan}:11434" in journal
    assert "/home/user-1/models" in journal and "mac-1" in journal
    counts = report["redaction"]["counts"]
    assert counts["ip"] >= 5 and counts["host"] >= 5 and counts["secret"] >= 4 and counts["user"] == 2


def test_loopback_versions_and_pci_addresses_are_kept(report):
    packages = item(report, "packages")["stdout"]
    assert "1.3.239.0-1" in packages and "1.3.239.0+dfsg1-1" in packages
    assert "conformanceVersion = 1.3.1.1" in item(report, "vulkaninfo")["stdout"]
    assert item(report, "fact:inference")["stdout"].count("127.0.0.1") == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("0000:03:00.0 VGA", "0000:03:00.0 VGA"),
    ("at 12:34:56 on ::1 and 127.0.0.1", "at 12:34:56 on ::1 and 127.0.0.1"),
    ("ListenAddress 0.0.0.0:8090", "ListenAddress 0.0.0.0:8090"),
    ("sig_key: 4A:3B:2C:1D:0E:FF:AA:BB:CC:DD", "sig_key: 4A:3B:2C:1D:0E:FF:AA:BB:CC:DD"),
    ("addr 2001:db8:85a3:0:0:8a2e:370:7334/64", "addr ip-1/64"),
    ("https://bob:hunter22@mirror.example/x", "https://REDACTED@mirror.example/x"),
    ('{"api_key": "abcdef123456", "auth": "none"}', '{"api_key": "REDACTED", "auth": "none"}'),
    ("password: hunter22", "password: REDACTED"),
    ("Key was rejected by service", "Key was rejected by service"),
])
def test_redaction_rules(text, expected):
    assert field_report.Redactor().text(text) == expected


def test_common_and_short_names_are_not_taken_for_the_box():
    redactor = field_report.Redactor(hostnames=["ubuntu", "vm", "gpu-node-7"], users=["root", "bob"])
    assert redactor.text("Ubuntu 24.04 on vm gpu-node-7 for bob and root") == "Ubuntu 24.04 on vm host-1 for user-1 and root"


def test_env_assignments():
    assert field_report.env_assignments("# c\nexport A=1\nB = 'two'\nC=\"3\"\nnot a line\n") == {"A": "1", "B": "two",
                                                                                             "C": "3"}
