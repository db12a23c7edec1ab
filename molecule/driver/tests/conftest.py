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
    # Kept for a reader of a failed run.
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"{Path(playbook).stem}-{host.backend.get_hostname()}.log"
    log.write_text(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
    result.stdout = " ".join((result.stdout + result.stderr).split())
    return result


def line_of(output: str, start: str) -> str:
    """The printed message that begins with `start` (up to its closing quote), for assertions that show it."""
    at = output.find(start)
    if at < 0:
        return ""
    end = at + len(start)
    while end < len(output) and not (output[end] == '"' and output[end - 1] != "\\"):
        end += 1
    return output[at:end]
