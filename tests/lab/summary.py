#!/usr/bin/env python3
"""Print what the lab container now has: the end of `make lab`.

It reads only what the playbook left on the box: the local facts the roles
record in /etc/ansible/facts.d and, when present, the run report. Lab tooling;
nothing here is deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CONTAINER = os.environ.get("MI50_LAB_CONTAINER", "mi50-lab")
FACTS_DIR = "/etc/ansible/facts.d"
REPORT = "/var/lib/mi50-llm-stack/report.json"
# The report's JSON keys are sorted; stages are shown in the order they run.
STAGE_ORDER = ["preflight", "diagnose", "gpu", "engine", "router", "smoke"]


def sh(command: str) -> tuple[int, str]:
    res = subprocess.run(["docker", "exec", CONTAINER, "sh", "-c", command],
                         capture_output=True, text=True)
    return res.returncode, res.stdout.strip()


def read_json(path: str) -> dict | None:
    code, out = sh(f"cat {path} 2>/dev/null")
    if code != 0 or not out:
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return None


def row(key: str, value: object) -> None:
    print(f"  {key:<22} {value}")


def main() -> int:
    code, os_name = sh(". /etc/os-release && echo \"$PRETTY_NAME\"")
    if code != 0:
        print(f"lab summary: container {CONTAINER} is not running (make lab starts it)")
        return 1
    _, kernel = sh("uname -r")
    print(f"\nLab box {CONTAINER} (a container standing in for the MI50 host; no GPU)")
    row("OS / kernel", f"{os_name} / {kernel} (the host's kernel)")

    _, names = sh(f"ls {FACTS_DIR} 2>/dev/null")
    facts = {n.removesuffix(".fact"): read_json(f"{FACTS_DIR}/{n}") for n in names.split() if n.endswith(".fact")}
    gpu = facts.get("gpu_backend")
    if gpu:
        row("GPU tier", f"{gpu.get('tier')} ({(gpu.get('device') or {}).get('name', 'no device')})")
        for tier, reason in (gpu.get("rejected") or {}).items():
            row(f"  {tier} rejected", reason)
    engine = facts.get("inference")
    if engine:
        row("Inference engine", f"{engine.get('engine')} {engine.get('version', '')} at {engine.get('base_url')}")
        row("Models", ", ".join(engine.get("models") or []) or "none")
        for model, place in sorted((engine.get("offload") or {}).items()):
            row(f"  {model}", f"{place.get('processor')} (measured after loading)")
    router = facts.get("llm_router")
    if router:
        row("Router", router.get("url"))
    report = read_json(REPORT)
    if report and report.get("smoke"):
        smoke = report["smoke"]
        row("Smoke compression", f"served by {smoke.get('backend')} ({smoke.get('method')}), "
                                 f"ratio {smoke.get('ratio')}, quality {smoke.get('quality')}, "
                                 f"round trip {'exact' if smoke.get('round_trip_equal') else 'not exact'}")
        for backend, why in (smoke.get("passed_over") or {}).items():
            row(f"  {backend} passed over", why)
    if report and report.get("stages_s"):
        stages = sorted(report["stages_s"].items(),
                        key=lambda kv: STAGE_ORDER.index(kv[0]) if kv[0] in STAGE_ORDER else len(STAGE_ORDER))
        row("Stages (s)", ", ".join(f"{k} {v}" for k, v in stages)
            + f" (total {report.get('total_s')})")
    if not facts:
        row("Recorded facts", "none yet (only preflight has run)")
    if router:
        # The router listens on the container's loopback; the lab image has no curl.
        cli = "/opt/llm-router/venv/bin/llm-router"
        print("\nTry next:")
        print(f"  docker exec {CONTAINER} {cli} compress /etc/os-release")
        print(f"  docker exec {CONTAINER} sh -c '{cli} compress /etc/os-release | {cli} reconstruct'")
        print(f"  docker exec {CONTAINER} journalctl -u {router.get('service', 'llm-router')} -n 20")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
