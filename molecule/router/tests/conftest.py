"""Helpers for the router scenario's tests: what molecule.yml and prepare.yml gave the
instance, HTTP from inside the container, and running a stage playbook against it again
(to provoke a refused configuration, a rebuild, or a smoke compression)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
SCENARIO = Path(__file__).resolve().parents[1]

ROUTER = "http://127.0.0.1:8090"
UNIT = "llm-router.service"
UNIT_FILE = "/etc/systemd/system/llm-router.service"
CONFIG = "/etc/llm-router/config.yml"
SECRETS_FILE = "/etc/llm-router/secrets.env"
VENV = "/opt/llm-router/venv"
FACT = "/etc/ansible/facts.d/llm_router.fact"
ENGINE_FACT = "/etc/ansible/facts.d/inference.fact"
STATE_DIR = "/var/lib/llm-router"
USER = "llm-router"

_GROUP_VARS = yaml.safe_load((SCENARIO / "molecule.yml").read_text())["provisioner"]["inventory"]["group_vars"]["mi50"]
TOKEN = _GROUP_VARS["llm_router_auth_tokens"][0]
# Every secret the role handles, by what it is.
SECRETS = {
    "cloud-key": _GROUP_VARS["llm_router_cloud_api_key"],
    "engine-key": _GROUP_VARS["llm_router_local_api_key"],
    "router-token": TOKEN,
    "backup-key": _GROUP_VARS["llm_router_api_keys"]["LAB_BACKUP_KEY"],
}
VERSION = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (PROJECT / "files/llm_router/pyproject.toml").read_text())[1]

_HTTP = """
import json, sys, urllib.request, urllib.error
method, url, token, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None)
if token:
    req.add_header("Authorization", "Bearer " + token)
if body:
    req.add_header("Content-Type", "application/json")
try:
    with urllib.request.urlopen(req, timeout=60) as resp:
        status, text = resp.status, resp.read().decode()
except urllib.error.HTTPError as err:
    status, text = err.code, err.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def http(host, path: str, token: str | None = None, method: str = "GET", body: Any = None) -> tuple[int, str]:
    """A request to the router from inside the container (it listens on loopback only)."""
    out = host.check_output(
        "python3 -c %s %s %s %s %s", _HTTP, method, ROUTER + path, token or "", json.dumps(body) if body else ""
    )
    answer = json.loads(out)
    return answer["status"], answer["body"]


def main_pid(host) -> int:
    return int(host.check_output(f"systemctl show {UNIT} --property MainPID --value"))


def run_playbook(host, playbook: str, extra: dict | None = None, *, json_output: bool = False,
                 tags: str | None = None, verbose: bool = False, diff: bool = False) -> subprocess.CompletedProcess:
    """Run playbooks/<playbook> against this scenario's instance, as the stages run
    (verbose: -vvv, which prints every module's arguments unless the task has no_log)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname()]
    if extra:
        cmd += ["-e", json.dumps(extra)]
    if tags:
        cmd += ["--tags", tags]
    if verbose:
        cmd.append("-vvv")
    if diff:
        cmd.append("--diff")
    result = subprocess.run(cmd + [str(PROJECT / "playbooks" / playbook)],
                            capture_output=True, text=True, env=env, timeout=900)
    if not json_output:
        result.stdout += result.stderr  # ansible-core prints task failures on stderr
    return result


def task_result(output: str, task: str, hostname: str) -> dict:
    """The result of the named task in ansible.posix.json output."""
    data = json.loads(output)
    for play in data["plays"]:
        for entry in play["tasks"]:
            if entry["task"]["name"].split(" : ", 1)[-1] == task:  # "role : task" in a role
                return entry["hosts"][hostname]
    raise AssertionError(f"no task {task!r} in the output")


@pytest.fixture(scope="module")
def engine_fact(host) -> dict:
    return json.loads(host.file(ENGINE_FACT).content_string)


@pytest.fixture(scope="module")
def config(host) -> dict:
    return yaml.safe_load(host.check_output(f"cat {CONFIG}"))


@pytest.fixture(scope="module")
def unit_properties(host) -> dict[str, str]:
    """Every property of the unit as systemd parsed it (one call for all the tests)."""
    shown = host.check_output(f"systemctl show --all {UNIT}")  # --all: empty ones too
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def endpoints(host) -> dict[tuple[str, str | None], tuple[int, str]]:
    """The router's answers, fetched once: (path, token) -> (status, body)."""
    wanted = [("/healthz", None), ("/readyz", None), ("/metrics", None), ("/v1/cost", TOKEN),
              ("/v1/cost", None), ("/v1/models", TOKEN)]
    return {(path, token): http(host, path, token) for path, token in wanted}
