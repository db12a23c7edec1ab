"""Replay of a field report (files/field_report/field_report.py and the mi50.stack field_report filters).

Reports are built here from the real outputs in tests/unit/data (the published rocminfo of an MI50 box,
Debian's real rocminfo without a GPU, Mesa's lavapipe, PoCL): the replay must take the decisions
gpu_backend and diagnose take on such a box, and add-references must store the outputs byte for byte with
the decision, which test_added_references_decide_as_recorded then checks for every box added."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

# Not `from conftest import ...`: with tests/router in the same run that name is the router's conftest.
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "unit" / "data"
_spec = importlib.util.spec_from_file_location("field_report_cli", ROOT / "files" / "field_report" / "field_report.py")
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)


def read(path: str) -> str:
    return (DATA / path).read_text()


def report(*items: dict, context: dict | None = None, facts: dict | None = None) -> dict:
    fact_items = [{"id": f"fact:{name}", "command": f"cat /etc/ansible/facts.d/{name}.fact", "rc": 0,
                   "elapsed_s": 0.0, "stdout": json.dumps(value), "stderr": ""} for name, value in (facts or {}).items()]
    return {"schema": 1, "kind": "mi50-field-report", "host": "host-1", "created_at": "2026-11-29T10:00:00+00:00",
            "check_mode": False, "elapsed_s": 1.0, "context": context or {}, "items": [*items, *fact_items]}


def out(item_id: str, rc: int, stdout: str, stderr: str = "", command: str = "") -> dict:
    return {"id": item_id, "command": command or item_id, "rc": rc, "elapsed_s": 0.1, "stdout": stdout, "stderr": stderr}


# A box like ROCm issue #1886's (an MI210 listed before the MI50), with lavapipe and PoCL beside ROCm.
MI50_BOX = report(
    out("kernel_release", 0, "6.8.0-45-generic\n"),
    out("rocm_version", 0, "6.4.2-120\n"),
    out("rocminfo", 0, read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout")),
    out("vulkaninfo", 0, read("vulkaninfo/debian12-lavapipe.stdout"), read("vulkaninfo/debian12-lavapipe.stderr")),
    out("clinfo_raw", 0, read("clinfo/debian12-pocl.raw")),
    context={"tier_order": ["rocm", "vulkan", "opencl"], "accept_software_devices": False},
    facts={"gpu_backend": {"schema": 1, "tier": "rocm", "order": ["rocm", "vulkan", "opencl"]}})

# Debian 12's real rocminfo without a GPU (exit code 1), lavapipe, PoCL: what the lab container shows.
NO_GPU_BOX = report(
    out("kernel_release", 0, "6.1.0-28-amd64\n"),
    out("rocminfo", 1, read("rocminfo/debian12-5.2.3-no-gpu.stdout"), read("rocminfo/debian12-5.2.3-no-gpu.stderr")),
    out("vulkaninfo", 0, read("vulkaninfo/debian12-lavapipe.stdout"), read("vulkaninfo/debian12-lavapipe.stderr")),
    out("clinfo_raw", 127, "", "/usr/bin/clinfo: not installed"),
    context={"tier_order": ["rocm", "vulkan", "opencl"], "accept_software_devices": True},
    facts={"gpu_backend": {"schema": 1, "tier": "vulkan", "order": ["rocm", "vulkan", "opencl"]}})


def archive(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "field-report-host-1-20261129T100000Z.tar.gz"
    data = json.dumps(doc).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("field-report-host-1-20261129T100000Z/report.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# --------------------------------------------------------------------- the tier

def test_replay_chooses_rocm_on_the_published_mi50_box(tmp_path):
    result = cli.decide(cli.load_report(archive(tmp_path, MI50_BOX)))
    fact = result["choice"]["fact"]
    assert (result["tier"], result["recorded_tier"], result["same_as_recorded"]) == ("rocm", "rocm", True)
    # The first GPU agent is the MI210; the MI50 is listed too, with its target.
    assert fact["device"]["gfx_target"] == "gfx90a"
    assert "gfx906" in [d["gfx_target"] for d in fact["probes"]["rocm"]["devices"]]
    assert fact["versions"]["rocm"] == "6.4.2"
    assert fact["rejected"]["vulkan"].startswith("vulkaninfo lists no GPU device, only software devices: llvmpipe")
    assert fact["rejected"]["opencl"].startswith("clinfo lists no GPU device, only software devices")


def test_replay_refuses_the_box_without_a_gpu_as_gpu_backend_does():
    result = cli.decide(NO_GPU_BOX, accept_software=False)
    assert result["tier"] is None
    assert "rocm: rocminfo lists no GPU agent: ROCk module is NOT loaded, possibly no GPU devices" in result["choice"]["error"]
    assert "opencl: clinfo not installed" in result["choice"]["error"]


def test_replay_takes_the_recorded_test_switch_and_lands_on_lavapipe():
    result = cli.decide(NO_GPU_BOX)
    assert (result["tier"], result["same_as_recorded"]) == ("vulkan", True)
    assert result["choice"]["fact"]["device"]["software"] is True


def test_replay_follows_an_order_given_on_the_command_line(tmp_path, capsys):
    assert cli.main(["replay", "--json", "--order", "vulkan,rocm", "--accept-software-devices",
                     str(archive(tmp_path, MI50_BOX))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["tier"], result["same_as_recorded"]) == ("vulkan", False)


def test_a_failed_amdgpu_dkms_build_recorded_by_the_rocm_role_rejects_rocm():
    doc = json.loads(json.dumps(MI50_BOX))
    doc["items"].append(out("fact:rocm", 0, json.dumps({"dkms": {"state": "failed", "kernel": "6.8.0-45-generic",
                                                                  "reason": "amdgpu-dkms failed to build for 6.8.0-45"}})))
    result = cli.decide(doc, accept_software=True)
    assert result["tier"] == "vulkan" and result["recorded_tier"] == "rocm" and not result["same_as_recorded"]
    assert result["choice"]["fact"]["rejected"]["rocm"].startswith("amdgpu-dkms failed to build for 6.8.0-45")


def test_replay_text_says_the_decision(tmp_path, capsys):
    assert cli.main(["replay", str(archive(tmp_path, MI50_BOX))]) == 0
    text = capsys.readouterr().out
    assert "Chosen tier: rocm on AMD Instinct MI210 (gfx90a)" in text
    assert "Recorded on the box (gpu_backend.fact): rocm, the same" in text
    assert "rocminfo                         rc 0" in text


def test_something_else_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"kind": "other"}')
    with pytest.raises(SystemExit, match="not a field report"):
        cli.load_report(path)


# --------------------------------------------------------------------- diagnose

MI50_PCI = "0000:03:00.0 class=0x038000 vendor=0x1002 device=0x66a1 driver=-\n"
ENGINE = {"schema": 1, "engine": "ollama", "version": "0.12.3", "tier": "rocm", "service": "ollama.service",
          "base_url": "http://127.0.0.1:11434/v1", "health_url": "http://127.0.0.1:11434/api/version",
          "models": ["gemma3:270m"]}
ROUTER = {"schema": 1, "url": "http://127.0.0.1:8090", "service": "llm-router.service",
          "config": "/etc/llm-router/config.yml"}


def broken_box() -> dict:
    """After a kernel update: amdgpu built for the old kernel only, not loaded, no /dev/kfd; Ollama stopped."""
    doc = json.loads(json.dumps(MI50_BOX))
    rocminfo = next(i for i in doc["items"] if i["id"] == "rocminfo")
    rocminfo.update(rc=1, stdout=read("rocminfo/debian12-5.2.3-no-gpu.stdout"))
    doc["items"] += [
        out("pci_gpus", 0, MI50_PCI),
        out("module_state", 2, "/sys/module/amdgpu: absent\n"),
        out("dkms_status", 0, "amdgpu/6.12.12-2187269.24.04, 6.8.0-40-generic, x86_64: installed\n"),
        out("kernel_headers", 1, "/lib/modules/6.8.0-45-generic/build/include: absent\n"),
        out("device_nodes", 2, "\n/dev/dri:\ntotal 0\ncrw-rw---- 1 root video 226, 0 Nov 29 10:00 card0\n",
            "ls: cannot access '/dev/kfd': No such file or directory"),
        out("kernel_log", 0, "[    4.1] amdgpu: module verification failed: signature and/or required key missing\n"),
        out("fact:inference", 0, json.dumps(ENGINE)),
        out("fact:llm_router", 0, json.dumps(ROUTER)),
        out("unit:ollama.service", 0, "LoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n"),
        out("unit:llm-router.service", 0, "LoadState=loaded\nActiveState=active\nUnitFileState=enabled\n"),
        {**out("http:router:/readyz", 0, '{"ready": true}'), "url": "http://127.0.0.1:8090/readyz", "status": 200},
        out("router_check_config", 0, "ok\n"),
    ]
    return doc


def test_replay_diagnoses_the_broken_box_as_diagnose_does():
    result = cli.decide(broken_box(), accept_software=True)
    ids = [f["id"] for f in result["findings"]]
    assert {"dkms_not_built", "module_not_loaded", "device_nodes_missing", "tier_failing", "engine_down"} <= set(ids)
    assert "router_not_ready" not in ids and "router_config_invalid" not in ids
    dkms = next(f for f in result["findings"] if f["id"] == "dkms_not_built")
    assert "built for 6.8.0-40-generic only, not for the running kernel 6.8.0-45-generic (its headers are missing)" \
        in dkms["problem"]
    assert result["summary"]["router"] == "ready"
    assert result["summary"]["engine"] == "ollama 0.12.3 on rocm: inactive"


def test_state_rebuilt_from_the_items():
    state = cli.replay.field_report_state(broken_box())
    assert state["gpus"][0]["gfx_target"] == "gfx906" and state["gpus"][0]["driver"] is None
    assert state["module"] == {"name": "amdgpu", "path": "/sys/module/amdgpu", "loaded": False, "initstate": ""}
    assert state["nodes"] == {"kfd": False, "render": []}
    assert state["router"]["ready"] == {"status": 200, "msg": ""}
    # The engine's service is inactive: diagnose does not ask it, so neither does the replay.
    assert state["engine"]["health"] == {"status": None, "msg": ""}


# --------------------------------------------------------------------- test references

@pytest.fixture
def data_dir(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    shutil.copy(DATA / "README.md", target / "README.md")
    return target


def test_add_references_stores_the_outputs_and_the_decision(tmp_path, data_dir, capsys):
    source = archive(tmp_path, MI50_BOX)
    assert cli.main(["add-references", str(source), "issue1886-box", "--data-dir", str(data_dir)]) == 0
    assert "the parsers choose rocm on these outputs (the box recorded rocm)" in capsys.readouterr().out
    assert (data_dir / "rocminfo/issue1886-box.stdout").read_text() == read("rocminfo/rocm-issue-1886-mi210-mi50-mi100.stdout")
    assert (data_dir / "vulkaninfo/issue1886-box.stderr").read_text() == read("vulkaninfo/debian12-lavapipe.stderr")
    assert (data_dir / "clinfo/issue1886-box.raw").read_text() == read("clinfo/debian12-pocl.raw")
    entry = json.loads((data_dir / "field_reports/issue1886-box.json").read_text())
    assert entry["source"] == source.name and entry["expected"]["tier"] == "rocm"
    assert entry["expected"]["probes"]["vulkan"]["ok"] is False
    readme = (data_dir / "README.md").read_text()
    assert readme.startswith((DATA / "README.md").read_text().rstrip("\n"))
    assert "## Field reports" in readme and f"field report `{source.name}` of host-1" in readme
    assert "kernel 6.8.0-45-generic, ROCm 6.4.2-120" in readme


def test_add_references_refuses_to_overwrite_and_bad_names(tmp_path, data_dir):
    source = str(archive(tmp_path, MI50_BOX))
    cli.main(["add-references", source, "issue1886-box", "--data-dir", str(data_dir)])
    with pytest.raises(SystemExit, match="already there"):
        cli.main(["add-references", source, "issue1886-box", "--data-dir", str(data_dir)])
    assert cli.main(["add-references", source, "issue1886-box", "--data-dir", str(data_dir), "--force"]) == 0
    assert (data_dir / "README.md").read_text().count("`field_reports/issue1886-box.json`") == 1
    with pytest.raises(SystemExit, match="lowercase"):
        cli.main(["add-references", source, "Bad Name", "--data-dir", str(data_dir)])


def test_an_added_reference_reads_back_to_its_decision(tmp_path, data_dir):
    cli.main(["add-references", str(archive(tmp_path, NO_GPU_BOX)), "lab-no-gpu", "--data-dir", str(data_dir)])
    entry, outputs = cli.read_reference(data_dir / "field_reports/lab-no-gpu.json")
    assert set(outputs) == {"rocm", "vulkan"}  # clinfo was not installed: nothing to add
    assert outputs["rocm"]["rc"] == 1
    assert cli.reference_decision(outputs, entry["order"], entry["accept_software_devices"]) == entry["expected"]
    assert entry["expected"]["tier"] == "vulkan"


REFERENCES = sorted((DATA / "field_reports").glob("*.json"))


@pytest.mark.parametrize("index", REFERENCES, ids=[p.stem for p in REFERENCES])
def test_added_references_decide_as_recorded(index):
    """Every box added with add-references: the parsers still decide what they decided then."""
    entry, outputs = cli.read_reference(index)
    assert cli.reference_decision(outputs, entry["order"], entry["accept_software_devices"]) == entry["expected"]
