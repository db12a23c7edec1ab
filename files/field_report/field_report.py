#!/usr/bin/env python3
"""Replay a field report (playbooks/field_report.yml) offline, or add its tool outputs to the test references.

    field_report.py replay REPORT [--json] [--order rocm,vulkan] [--accept-software-devices]
    field_report.py add-references REPORT NAME [--data-dir tests/unit/data] [--force]

REPORT is the archive the playbook fetched (field-report-host-1-<time>.tar.gz) or its report.json.

replay runs the project's own parsers and decisions on the report: the rocminfo, vulkaninfo and clinfo
outputs through mi50.stack.gpu_probes and gpu_tier_choice (the tier gpu_backend would record, compared with
the one gpu_backend.fact records on the box), and the state diagnose reads through diagnose_findings (what
repair.yml would say and do). It needs Ansible's Python packages (the project's .venv, or wherever
ansible-playbook runs) and this checkout; it reads nothing but the report.

add-references copies the report's probe outputs into tests/unit/data/{rocminfo,vulkaninfo,clinfo}/ as
<NAME>.*, notes their source in tests/unit/data/README.md, and records the decision the parsers take on
them in tests/unit/data/field_reports/<NAME>.json; tests/unit/test_field_report_references.py then checks
every such box on every run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "collections"))

from ansible_collections.mi50.stack.plugins.filter import field_report as replay  # noqa: E402
from ansible_collections.mi50.stack.plugins.filter.probes import gpu_tier_summary  # noqa: E402


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The diagnose role's judgement and its kernel-log reading, exactly as the role runs them.
diagnose = _load(ROOT / "roles/diagnose/filter_plugins/diagnose.py", "mi50_diagnose_filters")
kernel_state = _load(ROOT / "roles/diagnose/library/gpu_kernel_state.py", "mi50_gpu_kernel_state")

# Where each probe's output goes under tests/unit/data (the layout tests/unit/data/README.md describes).
REFERENCE_FILES = {
    "rocm": ("rocminfo", [("stdout", ".stdout"), ("stderr", ".stderr")]),
    "vulkan": ("vulkaninfo", [("stdout", ".stdout"), ("stderr", ".stderr")]),
    "opencl": ("clinfo", [("stdout", ".raw")]),
}
NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{2,60}$")


def load_report(path: Path) -> dict:
    """report.json, from the archive or as it is."""
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:
            member = next((m for m in archive.getmembers() if m.name.endswith("/report.json") or m.name == "report.json"),
                          None)
            if member is None:
                raise SystemExit(f"{path}: no report.json in the archive")
            report = json.load(archive.extractfile(member))
    else:
        report = json.loads(path.read_text())
    if report.get("kind") != "mi50-field-report":
        raise SystemExit(f"{path}: not a field report (kind {report.get('kind')!r})")
    return report


def decide(report: dict, order=None, accept_software=None) -> dict:
    """What gpu_backend and diagnose would decide from the report."""
    choice = replay.field_report_tier(report, order=order, accept_software=accept_software)
    recorded = replay.field_report_facts(report).get("gpu_backend", {}).get("tier")
    state = replay.field_report_state(report)
    state["kernel_log"] = kernel_state.kernel_log_lines("\n".join(state["kernel_log"]), state["module"]["name"])
    findings = diagnose.diagnose_findings(state)
    return {
        "host": report.get("host"),
        "created_at": report.get("created_at"),
        "tier": choice["fact"]["tier"],
        "choice": choice,
        "recorded_tier": recorded,
        "same_as_recorded": recorded is None or recorded == choice["fact"]["tier"],
        "findings": findings,
        "summary": diagnose.diagnose_summary(state),
        "lines": diagnose.diagnose_lines({"findings": findings}),
    }


def replay_text(report: dict, result: dict) -> str:
    context = report.get("context") or {}
    out = [f"Field report of {report.get('host')}, {report.get('created_at')}: {len(report.get('items') or [])} items "
           f"in {report.get('elapsed_s')} s{' (collected in check mode)' if report.get('check_mode') else ''}",
           "", "Runtime listings:"]
    for item_id in ("rocm_version", "rocminfo", "vulkaninfo", "clinfo_raw", "clinfo_amd"):
        item = replay.field_report_item(report, item_id)
        if item:
            note = "  (not installed)" if item.get("rc") == 127 else ""
            out.append(f"  {item['command']:<32} rc {item['rc']:<4} {item['elapsed_s']:>7.2f} s{note}")
    fact = result["choice"]["fact"]
    out += ["", f"GPU tier, as gpu_backend decides (order {', '.join(fact['order'])}; software devices "
                f"{'accepted' if context.get('accept_software_devices') else 'refused'}):"]
    out += [f"  {line}" for line in gpu_tier_summary(fact)]
    if result["choice"]["error"]:
        out.append(f"  gpu_backend would refuse: {result['choice']['error']}")
    if result["recorded_tier"]:
        same = "the same" if result["recorded_tier"] == fact["tier"] else f"DIFFERENT from the replay's {fact['tier']}"
        out.append(f"  Recorded on the box (gpu_backend.fact): {result['recorded_tier']}, {same}")
    out += ["", "Diagnosis, as diagnose judges the box (what repair.yml would do):"]
    out += [f"  {line}" for line in result["lines"]]
    out += ["", "State: " + "; ".join(f"{k} {v}" for k, v in result["summary"].items())]
    return "\n".join(out)


# --------------------------------------------------------------------------- test references

def reference_decision(outputs: dict, order: list, accept_software: bool) -> dict:
    """The tier and each probe's verdict from stored outputs ({tier: {rc, stdout, stderr}})."""
    report = {"kind": "mi50-field-report", "context": {"tier_order": order, "accept_software_devices": accept_software},
              "items": [{"id": replay.PROBE_ITEMS[tier], **out} for tier, out in outputs.items()]}
    choice = replay.field_report_tier(report, allow_cpu=True)
    probes = replay.field_report_probes(report, veto=False)
    return {"tier": choice["fact"]["tier"],
            "probes": {t: {"ok": p["ok"], "reason": p["reason"],
                           "device": (p.get("device") or {}).get("name")} for t, p in probes.items()}}


def read_reference(index: Path) -> tuple[dict, dict]:
    """A field_reports/<name>.json and the outputs it names, read back from the data directory."""
    entry = json.loads(index.read_text())
    data = index.parent.parent
    outputs = {}
    for tier, files in entry["outputs"].items():
        outputs[tier] = {"rc": files["rc"], "stdout": (data / files["stdout"]).read_text(),
                         "stderr": (data / files["stderr"]).read_text() if files.get("stderr") else ""}
    return entry, outputs


def add_references(report: dict, source: str, name: str, data_dir: Path, force: bool = False) -> list[Path]:
    if not NAME.match(name):
        raise SystemExit(f"{name!r}: a reference name is lowercase letters, digits, dots and dashes (e.g. ubuntu2404-mi50)")
    written: dict[Path, str] = {}
    outputs: dict[str, dict] = {}
    context = report.get("context") or {}
    order = list(context.get("tier_order") or ["rocm", "vulkan", "opencl"])
    for tier, (folder, streams) in REFERENCE_FILES.items():
        item = replay.field_report_item(report, replay.PROBE_ITEMS[tier])
        if not item or item.get("rc") == 127:
            continue
        entry = {"rc": item["rc"], "command": item["command"]}
        for stream, suffix in streams:
            path = Path(folder) / f"{name}{suffix}"
            written[data_dir / path] = item.get(stream) or ""
            entry[stream] = str(path)
        outputs[tier] = entry
    if not outputs:
        raise SystemExit("the report has no output of rocminfo, vulkaninfo or clinfo to add")
    amd = replay.field_report_item(report, "clinfo_amd")
    if amd and amd.get("rc") != 127 and amd.get("stdout"):
        written[data_dir / "clinfo" / f"{name}-amd-clinfo.txt"] = amd["stdout"]
    stored = {t: {"rc": o["rc"], "stdout": written[data_dir / o["stdout"]],
                  "stderr": written.get(data_dir / o["stderr"], "") if o.get("stderr") else ""} for t, o in outputs.items()}
    accept = bool(context.get("accept_software_devices"))
    index = data_dir / "field_reports" / f"{name}.json"
    written[index] = json.dumps({
        "name": name, "source": source, "created_at": report.get("created_at"), "host": report.get("host"),
        "order": [t for t in order if t in outputs], "accept_software_devices": accept,
        "recorded_tier": replay.field_report_facts(report).get("gpu_backend", {}).get("tier"),
        "outputs": outputs,
        "expected": reference_decision(stored, [t for t in order if t in outputs], accept),
    }, indent=2, sort_keys=True) + "\n"
    clash = [str(p) for p in written if p.exists()]
    if clash and not force:
        raise SystemExit("already there (--force replaces them): " + ", ".join(clash))
    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    readme = data_dir / "README.md"
    files = ", ".join(f"`{p.relative_to(data_dir)}`" for p in written if p != index)
    versions = {i: replay.field_report_item(report, i).get("stdout", "").strip().splitlines()[:1]
                for i in ("rocm_version", "kernel_release")}
    row = (f"| {files} | field report `{source}` of {report.get('host')} ({report.get('created_at')}; kernel "
           f"{(versions['kernel_release'] or ['?'])[0]}, ROCm {(versions['rocm_version'] or ['none'])[0]}); exit codes "
           + ", ".join(f"{replay.PROBE_ITEMS[t]} {o['rc']}" for t, o in outputs.items())
           + f"; redacted on the box (host names, addresses, user names, secrets); decision in `field_reports/{name}.json` |\n")
    text = readme.read_text() if readme.exists() else "# Captured probe outputs\n"
    if "## Field reports" not in text:
        text = text.rstrip("\n") + ("\n\n## Field reports\n\nOutputs of real boxes, added from a field report with "
                                    "`files/field_report/field_report.py add-references` (they are byte for byte what "
                                    "the tool printed, after the report's redaction).\n\n| files | source |\n|---|---|\n")
    # One row per reference: --force replaces it.
    kept = [line for line in text.rstrip("\n").split("\n") if f"`field_reports/{name}.json`" not in line]
    text = "\n".join(kept) + "\n" + row
    readme.write_text(text)
    return [*written, readme]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("replay", help="what gpu_backend and diagnose would decide from a report")
    one.add_argument("report", type=Path)
    one.add_argument("--json", action="store_true", help="print the decision as JSON")
    one.add_argument("--order", help="tier order, comma-separated (default: as the report records)")
    one.add_argument("--accept-software-devices", action=argparse.BooleanOptionalAction, default=None,
                     help="the test-only switch (default: as the report records)")
    add = sub.add_parser("add-references", help="add a report's probe outputs to tests/unit/data")
    add.add_argument("report", type=Path)
    add.add_argument("name", help="the files' name, e.g. ubuntu2404-mi50-rocm642")
    add.add_argument("--data-dir", type=Path, default=ROOT / "tests/unit/data")
    add.add_argument("--force", action="store_true", help="replace references of the same name")
    args = parser.parse_args(argv)
    report = load_report(args.report)
    if args.command == "replay":
        result = decide(report, order=args.order.split(",") if args.order else None,
                        accept_software=args.accept_software_devices)
        print(json.dumps(result, indent=2, sort_keys=True) if args.json else replay_text(report, result))
        return 0
    for path in add_references(report, args.report.name, args.name, args.data_dir, args.force):
        print(f"wrote {path}")
    entry = json.loads((args.data_dir / "field_reports" / f"{args.name}.json").read_text())
    print(f"the parsers choose {entry['expected']['tier']} on these outputs (the box recorded {entry['recorded_tier']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
