#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: pull one model into a running Ollama, resumably, with progress.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_pull
short_description: Pull a model into a running Ollama server through its API
description:
  - Asks the server (C(GET /api/tags)) whether the model is there; if it is, changes nothing.
  - Otherwise streams C(POST /api/pull) and keeps its progress lines, retrying a failed pull
    with a growing pause. Ollama keeps the part of a blob already downloaded and resumes it,
    so a retry after an interrupted download does not start over.
  - When the model comes from another reference (a mirror, another namespace), it is copied
    to its name (C(POST /api/copy)) and the reference is removed (C(DELETE /api/delete));
    the blobs stay, shared.
  - In check mode it only says whether the model would be pulled.
options:
  url:
    description: Base URL of the Ollama server.
    type: str
    default: http://127.0.0.1:11434
  name:
    description: The name the model is served under (with its tag).
    type: str
    required: true
  source:
    description: What to pull, when it differs from C(name) (e.g. C(mirror:5000/library/qwen2.5:7b)).
    type: str
  insecure:
    description: Allow a plain-HTTP registry (Ollama's C(insecure)).
    type: bool
    default: false
  retries:
    description: Pull attempts before giving up.
    type: int
    default: 5
  backoff:
    description: Seconds to wait after the first failed attempt; doubled after each further one.
    type: float
    default: 10
  timeout:
    description: Seconds without any progress line before an attempt is abandoned.
    type: int
    default: 600
author: mi50-llm-stack maintainers
"""

RETURN = r"""
progress:
  description: Progress lines (each layer at 0/25/50/75/100 %, statuses, errors, retries).
  type: list
  elements: str
  returned: always
attempts:
  description: Pull attempts made (0 when the model was already there).
  type: int
  returned: always
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url


def normalize(name: str) -> str:
    """Ollama's default tag is latest."""
    return name if name.rfind(":") > name.rfind("/") else name + ":latest"


def installed(url: str) -> set[str]:
    with open_url(url + "/api/tags", timeout=30, use_proxy=False) as resp:
        return {normalize(m["name"]) for m in json.loads(resp.read())["models"]}


def api(url: str, method: str, path: str, body: dict, timeout: int = 60) -> None:
    with open_url(url + path, method=method, data=json.dumps(body), timeout=timeout, use_proxy=False,
                  headers={"Content-Type": "application/json"}) as resp:
        resp.read()


def pull_once(url: str, source: str, insecure: bool, timeout: int, progress: list[str]) -> str | None:
    """One attempt; returns the error Ollama reported, or None on success."""
    body = {"model": source, "insecure": insecure, "stream": True}
    shown: dict[str, int] = {}
    with open_url(url + "/api/pull", method="POST", data=json.dumps(body), timeout=timeout, use_proxy=False,
                  headers={"Content-Type": "application/json"}) as resp:
        for raw in resp:
            line = raw.strip()
            if not line:
                continue
            event = json.loads(line)
            if "error" in event:
                return event["error"]
            status = event.get("status", "")
            total = event.get("total") or 0
            if total:
                quarter = 25 * (100 * (event.get("completed") or 0) // total // 25)
                if shown.get(status, -1) < quarter:
                    shown[status] = quarter
                    progress.append(f"{source}: {status} {quarter}% of {total / 1e9:.2f} GB")
            elif status:
                progress.append(f"{source}: {status}")
            if status == "success":
                return None
    return "the pull stream ended without success"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "default": "http://127.0.0.1:11434"},
            "name": {"type": "str", "required": True},
            "source": {"type": "str"},
            "insecure": {"type": "bool", "default": False},
            "retries": {"type": "int", "default": 5},
            "backoff": {"type": "float", "default": 10},
            "timeout": {"type": "int", "default": 600},
        },
        supports_check_mode=True,
    )
    p = module.params
    url, name = p["url"].rstrip("/"), normalize(p["name"])
    source = p["source"] or p["name"]
    progress: list[str] = []
    try:
        if name in installed(url):
            module.exit_json(changed=False, progress=[f"{name} is already there"], attempts=0)
    except Exception as err:  # noqa: BLE001 (any failure to reach the server is reported)
        if not module.check_mode:  # in check mode on a fresh host nothing runs yet
            module.fail_json(msg=f"Cannot list Ollama's models at {url}/api/tags: {err}", progress=progress,
                             attempts=0)
    if module.check_mode:
        module.exit_json(changed=True, progress=[f"would pull {source} as {name}"], attempts=0)

    attempts, pause = 0, p["backoff"]
    error = None
    while attempts < max(p["retries"], 1):
        attempts += 1
        try:
            error = pull_once(url, source, p["insecure"], p["timeout"], progress)
        except Exception as err:  # noqa: BLE001 (a dropped connection is one failed attempt)
            error = str(err)
        if error is None:
            break
        progress.append(f"{source}: attempt {attempts} failed: {error}")
        if attempts < p["retries"]:
            progress.append(f"{source}: retrying in {pause:g} s (Ollama resumes what it already downloaded)")
            time.sleep(pause)
            pause *= 2
    if error is not None:
        module.fail_json(msg=f"Pulling {source} failed after {attempts} attempt(s): {error}",
                         progress=progress, attempts=attempts)
    try:
        if normalize(source) != name:
            api(url, "POST", "/api/copy", {"source": source, "destination": name})
            api(url, "DELETE", "/api/delete", {"model": source})
            progress.append(f"{source}: served as {name}")
        if name not in installed(url):
            module.fail_json(msg=f"{name} is not listed by /api/tags after the pull", progress=progress,
                             attempts=attempts)
    except Exception as err:  # noqa: BLE001
        module.fail_json(msg=f"Naming {source} as {name} failed: {err}", progress=progress, attempts=attempts)
    module.exit_json(changed=True, progress=progress, attempts=attempts)


if __name__ == "__main__":
    main()
