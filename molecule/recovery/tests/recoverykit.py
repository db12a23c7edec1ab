"""Helpers for the recovery scenario: run repair.yml against the instance as a
user would, and read the box (facts, services, models, the cost ledger) from
inside it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

PROJECT = Path(os.environ.get("MI50_PROJECT_DIR", Path(__file__).resolve().parents[3]))
FACTS = "/etc/ansible/facts.d"
RECORD = "/var/lib/mi50-llm-stack/repair.json"
LEDGER = "/var/lib/llm-router/ledger.sqlite3"
ROUTER_CONFIG = "/etc/llm-router/config.yml"
LAVAPIPE_ICD = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
# Something the user configured the Ollama way (systemctl edit): repair must keep it.
USER_DROPIN = "/etc/systemd/system/ollama.service.d/mi50-user.conf"
USER_SETTING = ("MI50_USER_SETTING", "kept-by-repair")
# A model the user made themselves, outside ollama_models.
USER_MODEL = "user-extra:latest"
# Where repair may write: a healthy box must see no file change there.
WATCHED = "/etc /opt /usr /lib/modules /var/lib/dkms /var/lib/dpkg/info"

# Talks HTTP from inside the instance (the lab image has python3, no curl).
_HTTP = r"""
import json, sys, urllib.request, urllib.error
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=120) as resp:
        print(json.dumps({"status": resp.status, "body": resp.read().decode()}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code, "body": err.read().decode()}))
except OSError as err:
    print(json.dumps({"status": 0, "body": str(err)}))
"""

_LEDGER = r"""
import json, sqlite3
db = sqlite3.connect("file:%s?mode=ro" % "{path}", uri=True)
rows = db.execute("SELECT request_id, ts, endpoint, status, backend FROM requests ORDER BY ts, request_id").fetchall()
usage = db.execute("SELECT id, request_id, backend, call, cost_usd FROM usage ORDER BY id").fetchall()
print(json.dumps({{"requests": rows, "usage": usage}}))
"""


def http(host, method: str, url: str, body: dict | None = None) -> tuple[int, object]:
    out = json.loads(host.check_output(
        f"python3 -c {shlex.quote(_HTTP)} {method} {shlex.quote(url)} {shlex.quote(json.dumps(body) if body else '')}"))
    try:
        return out["status"], json.loads(out["body"])
    except ValueError:
        return out["status"], out["body"]


def ollama(host, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    return http(host, method, "http://127.0.0.1:11434" + path, body)


def models(host) -> dict[str, str]:
    """name -> digest of the models Ollama has."""
    status, body = ollama(host, "GET", "/api/tags")
    assert status == 200, body
    return {m["name"]: m["digest"] for m in body["models"]}


def ledger(host) -> dict:
    return json.loads(host.check_output(f"python3 -c {shlex.quote(_LEDGER.format(path=LEDGER))}"))


def fact(host, name: str) -> dict:
    return json.loads(host.file(f"{FACTS}/{name}.fact").content_string)


def record(host) -> dict:
    return json.loads(host.file(RECORD).content_string)


def unit(host, service: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {service} --property ActiveState,UnitFileState,MainPID")
    return dict(line.split("=", 1) for line in out.splitlines())


def process_environment(host, service: str) -> dict[str, str]:
    pid = unit(host, service)["MainPID"]
    assert pid not in ("", "0"), f"{service} has no main process"
    raw = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def mark(host, name: str) -> str:
    """A marker file in /run (gone at a reboot) whose mtime later runs are compared with."""
    path = f"/run/mi50-recovery-{name}"
    host.run_expect([0], f"touch {path} && sleep 1")
    return path


def changed_since(host, marker: str) -> list[str]:
    """Files where repair may write (WATCHED) that changed since marker was written."""
    out = host.check_output(
        f"find {WATCHED} -xdev -newer {marker} -not -path '*/__pycache__*' -print 2>/dev/null || true")
    return sorted(out.splitlines())


def wait_until(predicate, timeout: float = 120, every: float = 2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def run_repair(host, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`ansible-playbook repair.yml` against this instance, with the scenario's inventory, as a user runs it.

    MI50_RECOVERY_EXTRA_ARGS adds arguments to every run: a way to break the
    repair on purpose (`-e vulkan_repair_packages=false`, say) and watch the
    tests that must catch it fail."""
    args = (*args, *shlex.split(os.environ.get("MI50_RECOVERY_EXTRA_ARGS", "")))
    env = dict(os.environ, ANSIBLE_CONFIG=os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/ansible.cfg",
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1",
               # One line per result: messages are matched whole, not as wrapped YAML.
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    started = time.monotonic()
    result = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", host.backend.get_hostname(),
         *args, str(PROJECT / "repair.yml")],
        capture_output=True, text=True, env=env, timeout=timeout)
    result.stdout += result.stderr
    result.seconds = round(time.monotonic() - started, 1)
    # Kept for a reader of a failed run (and for the wall times in the report).
    log = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / f"repair-{int(time.time())}.log"
    log.write_text(f"$ ansible-playbook repair.yml {' '.join(args)}  ({result.seconds} s, rc {result.returncode})\n"
                   + result.stdout)
    print(f"repair.yml {' '.join(args)}: {result.seconds} s, rc {result.returncode} ({log})")
    return result


FINDING = re.compile(r"(PROBLEM|MOVE UP|NOTICE) \[(\w+)\]")
AFTER = "PLAY [Diagnose again and say what changed]"
_RECAP = re.compile(r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                    r"\s+failed=(?P<failed>\d+)", re.M)


def findings(output: str, when: str = "before") -> list[str]:
    """The finding ids a repair run printed before it repaired anything, or after."""
    before, _, after = output.partition(AFTER)
    return [m.group(2) for m in FINDING.finditer(before if when == "before" else after)]


def recap(output: str) -> dict[str, int]:
    """The PLAY RECAP counters of a run (one host)."""
    found = [m.groupdict() for m in _RECAP.finditer(output)]
    assert len(found) == 1, output[-3000:]
    return {k: int(v) for k, v in found[0].items() if k != "host"}


def changed_tasks(output: str) -> list[str]:
    """The names of the tasks that reported a change (for a readable failure)."""
    tasks, current = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            current = line[line.index("[") + 1:line.rfind("]")]
        elif line.startswith("changed: "):
            tasks.append(current)
    return tasks
