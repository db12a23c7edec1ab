"""Shared helpers for the rocm scenario's tests: the stand-in's package list,
the fixture mirror, and running the scenario's playbooks again with other inputs."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
SCENARIO = Path(__file__).resolve().parents[1]
FIXTURES_URL = os.environ.get("MI50_FIXTURES_URL", "http://172.17.0.1:8765")
MIRROR = f"{FIXTURES_URL}/repo.radeon.com"
CARD = "mi50-rocm-card"
NOCARD = "mi50-rocm-nocard"
ROCM_PATH = "/opt/rocm-6.4.2"
ROCBLAS_DIR = f"{ROCM_PATH}/lib/rocblas/library"
MANIFEST = "/var/lib/mi50-llm-stack/rocm/rocblas-gfx906.json"
FACT = "/etc/ansible/facts.d/gpu_backend.fact"


def _load_standin_packages():
    spec = importlib.util.spec_from_file_location("rocm_standin_packages",
                                                  PROJECT / "tests" / "standins" / "rocm" / "packages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STANDIN = _load_standin_packages()


def name(host) -> str:
    return host.backend.get_hostname()


def mirror_fingerprint() -> str:
    with urllib.request.urlopen(f"{MIRROR}/rocm/rocm.gpg.fingerprint", timeout=10) as resp:
        return resp.read().decode().strip()


def read_fact(host) -> dict:
    return json.loads(host.file(FACT).content_string)


def run_playbook(host, playbook: str, extra: dict | None = None, *args: str) -> subprocess.CompletedProcess:
    """Run one of this scenario's playbooks against one instance, as Molecule does."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               # One line per result: messages are matched whole, not as wrapped YAML.
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", name(host),
           *(["-e", json.dumps(extra)] if extra else []), *args, str(SCENARIO / playbook)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    # ansible-core prints task failures on stderr; the tests read both.
    result.stdout += result.stderr
    return result


@pytest.fixture
def card(host):
    if name(host) != CARD:
        pytest.skip("runs on the instance with the simulated MI50")
    return host


@pytest.fixture
def nocard(host):
    if name(host) != NOCARD:
        pytest.skip("runs on the instance without a GPU")
    return host


# Testinfra's ansible backend costs a round trip per command: read-only tests
# that look at many items of one kind share one listing per host.
_CACHE: dict = {}


def cached(host, key: str, read):
    if (name(host), key) not in _CACHE:
        _CACHE[(name(host), key)] = read()
    return _CACHE[(name(host), key)]


def installed_versions(host) -> dict[str, str]:
    """{package: version} of every installed package."""
    def read():
        out = host.check_output("dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\\n'")
        return {parts[1]: parts[2] for parts in (line.split() for line in out.splitlines()) if parts[0] == "ii"}
    return cached(host, "versions", read)


def rocblas_library(host) -> dict[str, dict]:
    """{file name: {mode, sha1, head}} of ROCm 6.4.2's rocBLAS library directory."""
    def read():
        out = host.check_output(
            f"cd {ROCBLAS_DIR} && for f in *; do printf '%s\\t%s\\t%s\\t%s\\n' \"$f\" \"$(stat -c %a \"$f\")\" "
            "\"$(sha1sum < \"$f\" | cut -d' ' -f1)\" \"$(head -n1 \"$f\")\"; done")
        rows = (line.split("\t") for line in out.splitlines())
        return {r[0]: {"mode": int(r[1], 8), "sha1": r[2], "head": r[3]} for r in rows}
    return cached(host, "rocblas", read)


def login_env(host) -> dict[str, str]:
    """The environment of a login shell of the user the role gave the GPU to."""
    def read():
        out = host.check_output("su - alice -c 'env; echo WHICH=$(command -v rocminfo)'")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return cached(host, "login_env", read)
