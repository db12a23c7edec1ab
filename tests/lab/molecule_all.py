#!/usr/bin/env python3
"""Run Molecule scenarios, several at a time, each in its own container.

`make test` calls this after the fixtures are built and served. Scenarios are
independent (each has its own instance `mi50-<scenario>` and its own ephemeral
directory), and most of a scenario's time is spent waiting on apt, dpkg and
systemd inside its container, so running two or three side by side shortens
the whole run even on two cores. Each scenario's output goes to its own log;
a failed scenario's log is printed whole at the end, and a table says how long
each one took. Lab tooling; nothing here is deployed.

    molecule_all.py [--jobs N] [--logs DIR] SCENARIO...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Longest first, so that the last scenario to start is a short one.
LONGEST_FIRST = ["recovery", "default", "driver", "ollama", "router", "rocm", "vllm", "llamacpp", "vulkan", "opencl"]
# A scenario that has not finished after this long is stopped and counted as failed.
SCENARIO_TIMEOUT_S = 40 * 60

_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(message, flush=True)


def run_one(scenario: str, logs: Path) -> tuple[str, int, float, Path]:
    log = logs / f"{scenario}.log"
    started = time.monotonic()
    say(f"=== molecule test -s {scenario} (log: {log})")
    with log.open("w") as out:
        try:
            rc = subprocess.run(
                ["molecule", "test", "-s", scenario],
                stdout=out, stderr=subprocess.STDOUT, timeout=SCENARIO_TIMEOUT_S,
                env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0"),
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\nmolecule_all: stopped after {SCENARIO_TIMEOUT_S} s\n")
            # Leave no instance behind for the next run.
            subprocess.run(["molecule", "destroy", "-s", scenario], stdout=out, stderr=subprocess.STDOUT,
                           check=False)
            rc = 124
    seconds = time.monotonic() - started
    say(f"=== {scenario}: {'passed' if rc == 0 else f'FAILED (exit {rc})'} in {seconds / 60:.1f} min")
    return scenario, rc, seconds, log


def order(scenarios: list[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    return sorted(scenarios, key=lambda s: rank.get(s, -1))  # unknown (new) scenarios first


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MOLECULE_JOBS", "3")))
    parser.add_argument("--logs", type=Path, default=Path(".cache/molecule-logs"))
    parser.add_argument("scenarios", nargs="+")
    args = parser.parse_args(argv)
    args.logs.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda s: run_one(s, args.logs), order(args.scenarios)))

    failed = [r for r in results if r[1] != 0]
    for scenario, rc, _, log in failed:
        print(f"\n===== {scenario} failed (exit {rc}): {log} =====")
        print(log.read_text(errors="replace"))
    print("\nscenario     result   minutes")
    for scenario, rc, seconds, _ in sorted(results, key=lambda r: args.scenarios.index(r[0])):
        print(f"{scenario:<12} {'passed' if rc == 0 else 'FAILED':<8} {seconds / 60:6.1f}")
    print(f"all scenarios: {(time.monotonic() - started) / 60:.1f} min with {args.jobs} at a time")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
