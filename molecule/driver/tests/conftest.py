"""Shared helpers for the driver scenario's tests: run the project's playbooks
against one instance, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))


def run_playbook(host, playbook: str, *args: str, extra: dict | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook PROJECT/<playbook> on this instance; stdout holds stderr too, its whitespace
    folded to single spaces."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               # One line per result: messages are matched whole, not as wrapped (and escaped) YAML.
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    command = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
               *args, str(PROJECT / playbook)]
    if extra:
        command[1:1] = ["-e", json.dumps(extra)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    result.stdout = " ".join((result.stdout + result.stderr).split())
    return result
