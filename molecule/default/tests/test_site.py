"""The whole site.yml on the lab container (no GPU): every tier is rejected with its
reason and the cpu tier recorded, the real llama.cpp engine serves the real small
model, the router stands in front of it, the smoke compression ran, and the run
report on the host says all of that. Everything is read from the box itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

FACTS = "/etc/ansible/facts.d"
REPORT = "/var/lib/mi50-llm-stack/report.json"
PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
STAGES = ["preflight", "gpu", "engine", "router", "smoke"]


def read_json(host, path: str) -> dict:
    return json.loads(host.file(path).content_string)


@pytest.fixture(scope="module")
def gpu(host):
    return read_json(host, f"{FACTS}/gpu_backend.fact")


@pytest.fixture(scope="module")
def engine(host):
    return read_json(host, f"{FACTS}/inference.fact")


@pytest.fixture(scope="module")
def router(host):
    return read_json(host, f"{FACTS}/llm_router.fact")


@pytest.fixture(scope="module")
def report(host):
    return read_json(host, REPORT)


# The lab image has no curl: requests go through the box's own Python.
HTTP = """
import json, sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
data = body.encode() if body else None
req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=300).read().decode())
"""


def http(host, url: str, body: dict | None = None) -> dict:
    """GET (or POST a JSON body to) a URL from inside the box; the decoded JSON answer."""
    return json.loads(host.check_output("python3 -c %s %s %s", HTTP, url, json.dumps(body) if body else ""))


def test_cpu_tier_with_each_gpu_tier_rejected_for_a_reason(gpu):
    assert gpu["tier"] == "cpu"
    assert sorted(gpu["rejected"]) == ["opencl", "rocm", "vulkan"]
    for tier, reason in gpu["rejected"].items():
        assert len(reason) > 10, (tier, reason)
    # A container has no amdgpu driver; lavapipe is a CPU device and is never accepted outside tests.
    assert "ROCk module is NOT loaded" in gpu["rejected"]["rocm"]
    assert "software" in gpu["rejected"]["vulkan"].lower() or "cpu" in gpu["rejected"]["vulkan"].lower()


def test_engine_is_llama_server_on_the_cpu_with_the_model(host, engine):
    assert engine["engine"] == "llamacpp"
    assert engine["accelerated"] is False
    assert engine["models"] == ["gemma-3-270m"]
    unit = host.service(engine["service"])
    assert unit.is_running and unit.is_enabled
    assert http(host, engine["health_url"])["status"] == "ok"


def test_engine_answers_a_completion_with_the_real_model(host, engine):
    body = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    answer = http(host, engine["base_url"] + "/chat/completions", body)
    assert answer["usage"]["completion_tokens"] > 0
    assert answer["choices"][0]["message"]["content"]


def test_router_is_ready_on_loopback(host, router):
    assert router["url"].startswith("http://127.0.0.1:")
    unit = host.service(router["service"])
    assert unit.is_running and unit.is_enabled
    assert http(host, router["url"] + "/readyz")["ready"] is True


def test_smoke_result_is_in_the_report_with_who_served_it(report):
    smoke = report["smoke"]
    assert smoke["backend"] in {"local", "zstd"}  # no cloud gateway runs in the lab
    assert smoke["round_trip_equal"] is True or smoke["method"] == "llm"
    if smoke["backend"] != "local":
        # The fallback says why the local model did not serve.
        assert "local" in smoke["passed_over"], smoke


def test_report_says_what_the_box_has(report, gpu, engine, router):
    assert report["check_mode"] is False
    assert report["gpu"]["tier"] == gpu["tier"]
    assert report["gpu"]["rejected"] == gpu["rejected"]
    assert report["engine"]["engine"] == engine["engine"]
    assert report["router"]["url"] == router["url"]
    assert sorted(report["stages_s"]) == sorted(STAGES)
    assert all(seconds >= 0 for seconds in report["stages_s"].values())
    assert report["total_s"] == pytest.approx(sum(report["stages_s"].values()), abs=0.5)


def test_ledger_recorded_the_smoke_compression(host, router):
    cost = http(host, router["url"] + "/v1/cost")
    assert sum(b["requests"] for b in cost["by_backend"].values()) >= 1


def test_benchmark_playbook_measures_and_reports(host, tmp_path):
    """playbooks/benchmark.yml end to end on one short item through zstd (fast and
    deterministic): the raw JSON, the Markdown report and the chart come home, and the
    report says the lab's figures are not comparable with the MI50 targets."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    extra = {"benchmark_items": ["legal-short"], "benchmark_duration": 0, "benchmark_backend": "zstd",
             "benchmark_latency_seconds": 60, "benchmark_reports_dir": str(tmp_path)}
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", json.dumps(extra), str(PROJECT / "playbooks" / "benchmark.yml")],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = tmp_path.iterdir()
    assert {p.name for p in run.iterdir()} >= {"benchmark.json", "report.md", "benchmark.png"}
    data = json.loads((run / "benchmark.json").read_text())
    assert data["summary"]["requests"]["failed"] == 0
    assert data["summary"]["compress"]["latency_s"]["n"] == 1
    assert data["summary"]["reconstruct"]["exact"] == 1
    assert "NOT COMPARABLE" in (run / "report.md").read_text().upper()


def test_check_mode_on_the_converged_box_changes_nothing(host):
    """`site.yml --check` on a converged box reports nothing to change (the repository key is compared
    with the one on disk, not downloaded over it)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "--check", str(PROJECT / "site.yml")],
        capture_output=True, text=True, env=env, timeout=1200, check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recap = re.search(r"changed=(\d+)", result.stdout.rpartition("PLAY RECAP")[2])
    task, changed = "", []
    for line in result.stdout.splitlines():
        task = line if line.startswith("TASK [") else task
        if line.startswith("changed:"):
            changed.append(task)
    assert recap and recap.group(1) == "0", "changed in check mode: " + "; ".join(changed)
