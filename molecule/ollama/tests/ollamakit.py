"""Helpers for the ollama scenario: run the engine stage again with other inputs,
record another GPU tier, and talk to Ollama's API from inside the instance."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
NOTHING_CHANGED = "Nothing was changed on this host."
MI50 = {"name": "AMD Instinct MI50/MI60", "gfx_target": "gfx906", "software": False}

# Talks to Ollama from inside the instance (the lab image has python3, no curl).
API = r"""
import json, sys, urllib.request, urllib.error
method, path, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request("http://127.0.0.1:11434" + path, data=body.encode() or None, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=600) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
except OSError as err:
    print(json.dumps({"status": 0, "body": str(err)}))
"""


def api(host, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    """(status, parsed JSON body or text) of one request to the instance's Ollama."""
    out = json.loads(host.check_output(
        f"python3 -c {shlex.quote(API)} {method} {shlex.quote(path)} {shlex.quote(json.dumps(body) if body else '')}"))
    try:
        return out["status"], json.loads(out["body"])
    except ValueError:
        return out["status"], out["body"]


def wait_for_ollama(host, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = api(host, "GET", "/api/version")
        if status == 200:
            return body
        time.sleep(1)
    raise AssertionError("Ollama did not answer /api/version")


def process_environment(host) -> dict[str, str]:
    """The environment of the running ollama serve (not the unit's declaration)."""
    pid = host.check_output("systemctl show ollama.service -p MainPID --value")
    assert pid not in ("", "0"), "ollama.service has no main process"
    raw = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def unit_property(host, name: str) -> str:
    return host.check_output(f"systemctl show ollama.service -p {name} --value")


def write_tier(host, tier: str, device: dict | None = None) -> None:
    """Record a tier the way gpu_backend does (the role reads only this)."""
    fact = {"schema": 1, "tier": tier, "forced": False, "order": ["rocm", "vulkan", "opencl"], "device": device,
            "versions": {}, "available": [tier] if tier != "cpu" else [], "rejected": {}, "probes": {}}
    host.run_expect([0], f"printf '%s\\n' {shlex.quote(json.dumps(fact))} > /etc/ansible/facts.d/gpu_backend.fact")


def read_fact(host) -> dict:
    return json.loads(host.file("/etc/ansible/facts.d/inference.fact").content_string)


def run_engine(host, extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run playbooks/engine.yml against this instance with the scenario's inventory and extra vars."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")  # no line wrapping in what the tests read
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         "-e", json.dumps(extra or {}), str(PROJECT / "playbooks" / "engine.yml")],
        capture_output=True, text=True, env=env, timeout=1200,
    )
    result.stdout += result.stderr
    return result
