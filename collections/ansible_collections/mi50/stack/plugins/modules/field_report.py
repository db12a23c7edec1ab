#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: gather a box's real tool outputs for a field report, timed and
# redacted ON the box, returned as one JSON document (nothing written on the box).
# files/field_report/field_report.py replays a report offline; docs/field-report.md.

from __future__ import annotations

DOCUMENTATION = r"""
---
module: field_report
short_description: Collect the GPU stack's tool outputs, facts and service state, redacted, as one document
description:
  - Runs the read-only commands a diagnosis of the MI50 stack needs (OS and kernels, PCI GPUs, C(dkms status),
    C(modinfo amdgpu), the kernel log's amdgpu/kfd lines, Secure Boot, C(rocminfo), C(rocm-smi), C(amd-smi),
    C(vulkaninfo --summary), C(clinfo --raw) and AMD's C(clinfo), package versions), reads the local facts, the
    last run and repair records and the engines' environment files, asks each installed engine and the router
    over HTTP, and takes the last lines of each service's journal.
  - Every item carries its command, exit code and elapsed time. A missing tool is an item with rc 127
    ("not installed"), never a failure.
  - Everything is redacted before the module returns, on the box - secrets (values of variables named like keys,
    tokens, passwords; bearer tokens; credentials in URLs; the values of secrets read from I(env_files)), host names,
    IPv4/IPv6 and MAC addresses, and login user names, each replaced by a placeholder that is the same for the
    same value across the whole report. The files in I(never_read) are never opened.
  - Changes nothing and writes no file; supports check mode (it runs there too).
options:
  sysfs_root:
    description: Where sysfs is mounted (the PCI devices and the kernel module's state are read below it).
    type: path
    default: /sys
  kernel_module:
    description: The GPU's kernel module, also its DKMS name.
    type: str
    default: amdgpu
  facts_dir:
    description: The local facts directory; every C(*.fact) file in it is read.
    type: path
    default: /etc/ansible/facts.d
  records:
    description: Records the playbooks leave on the box (the run report, the last repair with its diagnosis).
    type: list
    elements: path
    default: [/var/lib/mi50-llm-stack/report.json, /var/lib/mi50-llm-stack/repair.json]
  env_files:
    description: Environment files of the engines, read with the values of secret-named variables masked.
    type: list
    elements: path
    default: [/etc/vllm/vllm.env]
  never_read:
    description: Files that are never opened, whatever else asks for them (the router's secrets, llama.cpp's keys).
    type: list
    elements: path
    default: [/etc/llm-router/secrets.env, /etc/llama.cpp/api-keys]
  services:
    description: >-
      The services to ask about - a dict of name to C(service) (the systemd unit), C(url) (where it answers) and
      C(paths) (the HTTP paths asked). An engine whose unit systemd does not know is left out, unless
      C(inference.fact) records it (its C(base_url) then replaces C(url)).
    type: dict
    default:
      ollama: {service: ollama.service, url: "http://127.0.0.1:11434", paths: [/api/version, /api/ps, /v1/models]}
      llamacpp: {service: llama-server.service, url: "http://127.0.0.1:8080", paths: [/health, /props, /v1/models]}
      vllm: {service: vllm.service, url: "http://127.0.0.1:8000", paths: [/health, /version, /v1/models]}
  journal_lines:
    description: How many of the last lines of each service's journal are kept.
    type: int
    default: 60
  timeout:
    description: Seconds each command or HTTP request may take (a command that runs longer is killed, rc 124).
    type: int
    default: 60
  probe_path:
    description: PATH for the tools (ROCm's bin first, as gpu_backend probes them).
    type: list
    elements: str
    default: [/opt/rocm/bin, /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin]
  hostnames:
    description: More names of the box to redact (the inventory name and address the controller uses).
    type: list
    elements: str
    default: []
  users:
    description: More user names to redact (the SSH user); login users of C(/etc/passwd) are redacted anyway.
    type: list
    elements: str
    default: []
  context:
    description: Settings from the inventory recorded as they are (the tier order, the software-device switch), for replay.
    type: dict
    default: {}
  max_output_bytes:
    description: Longer outputs keep their last bytes (and say they were cut).
    type: int
    default: 262144
author: mi50-llm-stack maintainers
"""

EXAMPLES = r"""
- name: Collect the field report, redacted on the box
  mi50.stack.field_report:
    hostnames: ["{{ inventory_hostname }}"]
  register: __field_report
"""

RETURN = r"""
report:
  description: >-
    The report - schema, created_at, host (the box's placeholder), check_mode, context, items (each with id, title,
    command, rc, elapsed_s, stdout, stderr, and url and status for HTTP), redaction (the rules and how often each
    applied; never the values) and elapsed_s.
  returned: always
  type: dict
"""

import glob
import json
import os
import pwd
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

SECURE_BOOT_VAR = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
ROUTER = {"service": "llm-router.service", "paths": ["/readyz"]}
UNIT_KEYS = "LoadState,ActiveState,SubState,UnitFileState,ExecMainStatus,ExecStart"
# Packages whose versions say what runs: ROCm, the drivers, Mesa, the OpenCL and Vulkan loaders, kernels.
PACKAGE_PATTERNS = ["rocm*", "rocminfo", "rocblas*", "hip-*", "hsa-*", "amdgpu*", "amd-smi*", "mesa-*", "libvulkan1",
                    "vulkan-tools", "ocl-icd*", "clinfo", "pocl-*", "dkms", "firmware-amd-graphics", "linux-firmware",
                    "linux-image-*", "linux-headers-*", "python3"]
# The kernel log lines kept: the GPU's driver and KFD, and why a module or its firmware did not load.
KERNEL_LOG = re.compile(r"amdgpu|kfd|Lockdown:|module verification|PKCS#7|Loading of .*module|Unknown symbol|"
                        r"disagrees about version|Direct firmware load|drm\]", re.I)


# --------------------------------------------------------------------------- redaction

class Redactor:
    """Replaces secrets, host names, addresses and user names in every string of a document. A value gets
    one placeholder (host-1, ip-2, mac-1, user-1) for the whole report; secrets all become REDACTED."""

    SECRET = "REDACTED"
    # Variable names whose values are secrets (OPENAI_API_KEY, HF_TOKEN, LLM_ROUTER_TOKENS, DB_PASSWORD, ...).
    SECRET_NAME = r"[A-Za-z0-9_.-]*(?:api[_-]?key|apikey|token|secret|passw(?:or)?d|access[_-]?key|private[_-]?key|credential)s?"
    _ASSIGNED = re.compile(r"(?i)(\b" + SECRET_NAME + r"[\"']?\s*[=:]\s*[\"']?)([^\s\"',;}]+)")
    _PATTERNS = [
        re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/-]+=*)"),
        re.compile(r"(://)([^/\s:@]+:[^/\s@]+)(@)"),  # user:password@ in a URL
    ]
    _TOKENS = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|"
                         r"xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b")
    _MAC = re.compile(r"(?<![0-9A-Fa-f:-])(?:[0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:-])")
    _IPV4 = re.compile(r"(?<![\w.-])((?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})(?![\w.+~-])")
    _IPV6 = re.compile(r"(?<![\w:.])((?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}|"
                       r"(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?::(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?)"
                       r"(?:%\w+)?(?![\w:.])")
    # Addresses that say nothing about the box: loopback, unspecified, broadcast.
    _KEEP_IP = re.compile(r"^(?:127\.|0\.0\.0\.0$|255\.255\.255\.255$|::1?$)")
    _KEEP_MAC = ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff")
    # Four-part versions (vulkaninfo's conformanceVersion = 1.3.1.1) are not addresses.
    _VERSION_BEFORE = re.compile(r"(?i)version\W{0,4}$")
    # Names never taken for the box's or a user's: they are everywhere and tell nothing.
    COMMON = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "ubuntu", "debian", "root",
              "none", "user", "admin", "test", "ollama", "render", "video"}

    def __init__(self, hostnames=(), users=(), secrets=()):
        self.counts = {"secret": 0, "host": 0, "ip": 0, "mac": 0, "user": 0}
        self._names: dict[str, dict[str, str]] = {"host": {}, "ip": {}, "mac": {}, "user": {}}
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._hosts = self._words(hostnames)
        self._users = self._words(users)

    def _words(self, names) -> re.Pattern | None:
        wanted = sorted({n.strip() for n in names if n and len(n.strip()) >= 3 and n.strip().lower() not in self.COMMON},
                        key=len, reverse=True)
        if not wanted:
            return None
        return re.compile(r"(?i)(?<![A-Za-z0-9])(" + "|".join(re.escape(n) for n in wanted) + r")(?![A-Za-z0-9])")

    def add_secret(self, value: str) -> None:
        if value and len(value) >= 4 and value not in self._secrets:
            self._secrets = sorted(self._secrets + [value], key=len, reverse=True)

    def placeholder(self, kind: str, value: str, count: bool = True) -> str:
        table = self._names[kind]
        key = value.lower()
        if key not in table:
            table[key] = f"{kind}-{len(table) + 1}"
        self.counts[kind] += count
        return table[key]

    def _secret(self, match: re.Match) -> str:
        self.counts["secret"] += 1
        groups = match.groups()
        if len(groups) == 3:
            return groups[0] + self.SECRET + groups[2]
        return (groups[0] if groups else "") + self.SECRET

    def _ip(self, match: re.Match, kind: str = "ip") -> str:
        value = match.group(1)
        if self._KEEP_IP.match(value) or (kind == "ip" and self._VERSION_BEFORE.search(match.string[:match.start()])):
            return match.group(0)
        if kind == "ipv6" and not re.search(r"[0-9A-Fa-f]", value):
            return match.group(0)
        return self.placeholder("ip", value)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                self.counts["secret"] += value.count(secret)
                value = value.replace(secret, self.SECRET)
        value = self._ASSIGNED.sub(self._secret, value)
        for pattern in self._PATTERNS:
            value = pattern.sub(self._secret, value)
        value = self._TOKENS.sub(lambda m: self._secret_whole(), value)
        value = self._MAC.sub(lambda m: m.group(0) if m.group(0).replace("-", ":").lower() in self._KEEP_MAC
                              else self.placeholder("mac", m.group(0).replace("-", ":")), value)
        value = self._IPV4.sub(self._ip, value)
        value = self._IPV6.sub(lambda m: self._ip(m, "ipv6"), value)
        if self._hosts:
            value = self._hosts.sub(lambda m: self.placeholder("host", m.group(1)), value)
        if self._users:
            value = self._users.sub(lambda m: self.placeholder("user", m.group(1)), value)
        return value

    def _secret_whole(self) -> str:
        self.counts["secret"] += 1
        return self.SECRET

    def apply(self, data):
        """The document with every string (keys too) redacted."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {self.apply(k) if isinstance(k, str) else k: self.apply(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.apply(v) for v in data]
        return data


def env_assignments(text: str) -> dict:
    """NAME=value pairs of an environment file (systemd's EnvironmentFile syntax, quotes removed)."""
    pairs = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$", line)
        if match:
            pairs[match.group(1)] = match.group(2).strip("'\"")
    return pairs


def box_names() -> set:
    """What the box calls itself: its host name, FQDN, /etc/hostname, and the names /etc/hosts gives its addresses."""
    names = {socket.gethostname(), socket.getfqdn(), read_file("/etc/hostname")[0].strip()}
    names |= {n.split(".")[0] for n in names if n}
    for line in read_file("/etc/hosts")[0].splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) > 1 and not re.match(r"^(?:127\.0\.0\.1|::1|fe00::|ff0[0-9]::)", fields[0]):
            names.update(fields[1:])
    return {n for n in names if n}


def login_users() -> set:
    """Login users (uid 1000 and up, nobody excepted) and whoever ran sudo."""
    users = {p.pw_name for p in pwd.getpwall() if 1000 <= p.pw_uid < 65534}
    return users | {os.environ.get("SUDO_USER", "")} - {""}


# --------------------------------------------------------------------------- collection

def read_file(path: str) -> tuple[str, str, int]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(), "", 0
    except FileNotFoundError:
        return "", f"{path}: No such file or directory", 1
    except OSError as err:
        return "", f"{path}: {err.strerror}", 1


class Collector:
    """Gathers the items. `run(argv, timeout)` -> (rc, stdout, stderr) and `fetch(url, headers, timeout)` ->
    (status, body, error) are injected, so that tests feed it planted outputs."""

    def __init__(self, params: dict, run=None, fetch=None, clock=time.monotonic):
        self.p = params
        self.run = run or self._run
        self.fetch = fetch or self._fetch
        self.clock = clock
        self.items: list[dict] = []
        self.secrets: list[str] = []
        self.env = dict(os.environ, LC_ALL="C", PATH=":".join(params["probe_path"]))

    # -- primitives
    def _run(self, argv: list, timeout: int) -> tuple[int, str, str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                                  env=self.env, stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: not installed"
        except PermissionError:
            return 126, "", f"{argv[0]}: permission denied"
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
            return 124, out, f"killed after {timeout} s"
        return done.returncode, done.stdout, done.stderr

    @staticmethod
    def _fetch(url: str, headers: dict, timeout: int) -> tuple[int, str, str]:
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (the box's own services)
                return resp.status, resp.read(1 << 20).decode(errors="replace"), ""
        except urllib.error.HTTPError as err:
            return err.code, err.read(1 << 20).decode(errors="replace"), f"HTTP Error {err.code}: {err.reason}"
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            return -1, "", f"Request failed: <urlopen error {reason}>"

    def _cut(self, text: str) -> tuple[str, bool]:
        limit = self.p["max_output_bytes"]
        return (text, False) if len(text) <= limit else (text[-limit:], True)

    def add(self, item_id: str, title: str, command: str, rc: int, stdout: str, stderr: str, elapsed: float,
            **extra) -> dict:
        stdout, cut_out = self._cut(stdout or "")
        stderr, cut_err = self._cut(stderr or "")
        item = {"id": item_id, "title": title, "command": command, "rc": rc, "elapsed_s": round(elapsed, 3),
                "stdout": stdout, "stderr": stderr, **extra}
        if cut_out or cut_err:
            item["truncated"] = True
        self.items.append(item)
        return item

    def command(self, item_id: str, title: str, argv: list, keep=None) -> dict:
        """Run argv; `keep` filters stdout (the kernel log's GPU lines) and is noted in the command."""
        start = self.clock()
        rc, out, err = self.run(argv, self.p["timeout"])
        shown = " ".join(argv)
        if keep is not None and out:
            out = "".join(line + "\n" for line in out.splitlines() if keep.search(line))
            shown += f"  (only the lines matching {keep.pattern})"
        return self.add(item_id, title, shown, rc, out, err, self.clock() - start)

    def read(self, item_id: str, title: str, path: str, mask_env: bool = False) -> dict:
        start = self.clock()
        if os.path.realpath(path) in {os.path.realpath(p) for p in self.p["never_read"]}:
            return self.add(item_id, title, f"cat {path}", 0, "", "not read: this file holds secrets", 0.0,
                            not_read=True)
        text, err, rc = read_file(path)
        if mask_env:
            for name, value in env_assignments(text).items():
                if re.fullmatch(Redactor.SECRET_NAME, name, re.I) and value:
                    self.secrets.append(value)
        return self.add(item_id, title, f"cat {path}", rc, text, err, self.clock() - start)

    def http(self, item_id: str, title: str, url: str, headers: dict | None = None) -> dict:
        for item in self.items:
            if item.get("url") == url:
                return item
        start = self.clock()
        status, body, error = self.fetch(url, headers or {}, self.p["timeout"])
        return self.add(item_id, title, f"GET {url}", 0 if 200 <= status < 300 else 1, body, error,
                        self.clock() - start, url=url, status=status)

    def probe(self, item_id: str, title: str, check) -> dict:
        """A read done here rather than by a tool (sysfs, the kernel headers' directory): check() -> (rc, text)."""
        start = self.clock()
        rc, text, command = check()
        return self.add(item_id, title, command, rc, text, "", self.clock() - start)

    # -- the report's sections
    def system(self) -> None:
        self.read("os_release", "OS release", "/etc/os-release")
        self.command("uname", "Running kernel", ["uname", "-a"])
        self.command("kernel_release", "Running kernel release", ["uname", "-r"])
        self.command("kernels_installed", "Installed kernels", ["ls", "-1", "/boot"],
                     keep=re.compile(r"^(?:vmlinuz|initrd\.img)-"))
        self.read("kernel_cmdline", "Kernel command line", "/proc/cmdline")
        self.command("packages", "Package versions (ROCm, drivers, Mesa, loaders, kernels)",
                     ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n", *PACKAGE_PATTERNS])
        self.command("dpkg_audit", "Packages dpkg left unfinished", ["dpkg", "--audit"])
        self.command("apt_holds", "Packages held back", ["apt-mark", "showhold"])

    def kernel(self) -> None:
        sysfs, module = self.p["sysfs_root"], self.p["kernel_module"]
        self.probe("pci_gpus", "Display and accelerator devices on the PCI bus (sysfs)", lambda: pci_listing(sysfs))
        self.command("lspci", "PCI GPUs (lspci)", ["lspci", "-nnk", "-d", "1002:"])
        self.probe("module_state", f"The {module} module in the running kernel", lambda: module_state(sysfs, module))
        self.command("modinfo", f"modinfo {module}", ["modinfo", module])
        self.command("dkms_status", "DKMS builds", ["dkms", "status"])
        self.probe("kernel_headers", "The running kernel's headers where DKMS looks", kernel_headers)
        self.command("device_nodes", "The GPU's device nodes", ["ls", "-l", "/dev/kfd", "/dev/dri"])
        self.probe("modprobe_rules", f"modprobe lines that keep {module} out", lambda: modprobe_lines(module))
        self.read("reboot_required", "Packages that asked for a reboot", "/var/run/reboot-required.pkgs")
        log = self.command("kernel_log", "Kernel log of this boot, GPU lines",
                           ["journalctl", "-k", "-b", "0", "-o", "short-monotonic", "--no-pager", "-q"], keep=KERNEL_LOG)
        if log["rc"] != 0 or not log["stdout"].strip():
            self.command("dmesg", "Kernel ring buffer, GPU lines", ["dmesg"], keep=KERNEL_LOG)
        self.command("secure_boot", "Secure Boot state (mokutil)", ["mokutil", "--sb-state"])
        self.probe("secure_boot_efivar", "Secure Boot state (EFI variable)", lambda: secure_boot(sysfs))

    def runtimes(self) -> None:
        self.read("rocm_version", "ROCm release", "/opt/rocm/.info/version")
        self.command("rocminfo", "rocminfo (ROCm tier probe)", ["rocminfo"])
        self.command("vulkaninfo", "vulkaninfo --summary (Vulkan tier probe)", ["vulkaninfo", "--summary"])
        self.command("clinfo_raw", "clinfo --raw (OpenCL tier probe)", ["/usr/bin/clinfo", "--raw"])
        amd = next((p for p in ("/opt/rocm/bin/clinfo", "/opt/rocm/opencl/bin/clinfo") if os.path.exists(p)),
                   "/opt/rocm/bin/clinfo")
        self.command("clinfo_amd", "AMD's clinfo", [amd])
        self.command("rocm_smi", "rocm-smi", ["rocm-smi", "--showallinfo"])
        self.command("amd_smi", "amd-smi", ["amd-smi", "static"])

    def records(self) -> dict:
        facts = {}
        for path in sorted(glob.glob(os.path.join(self.p["facts_dir"], "*.fact"))):
            name = os.path.basename(path)[:-5]
            item = self.read(f"fact:{name}", f"Local fact {name}", path)
            try:
                facts[name] = json.loads(item["stdout"])
            except ValueError:
                facts[name] = {}
        for path in self.p["records"]:
            self.read(f"record:{os.path.basename(path)}", f"Record {os.path.basename(path)}", path)
        for path in self.p["env_files"]:
            if os.path.exists(path):
                self.read(f"env:{path}", f"Environment file {path}", path, mask_env=True)
        return facts

    def services(self, facts: dict) -> None:
        engine = facts.get("inference") or {}
        router = facts.get("llm_router") or {}
        wanted = []
        for name, spec in sorted(self.p["services"].items()):
            recorded = engine.get("engine") == name
            url = re.sub(r"/v1/?$", "", engine.get("base_url", "")) if recorded and engine.get("base_url") else spec["url"]
            wanted.append((name, spec.get("service") or engine.get("service"), url, spec.get("paths") or [], recorded))
        wanted.append(("router", router.get("service", ROUTER["service"]), router.get("url", ""), ROUTER["paths"],
                       bool(router)))
        for name, service, url, paths, recorded in wanted:
            unit = self.command(f"unit:{service}", f"systemd's state of {service}",
                                ["systemctl", "show", service, "--property", UNIT_KEYS])
            props = dict(line.split("=", 1) for line in unit["stdout"].splitlines() if "=" in line)
            if props.get("LoadState") != "loaded" and not recorded:
                self.items.remove(unit)
                continue
            self.command(f"unit_file:{service}", f"The unit file of {service} and its drop-ins",
                         ["systemctl", "cat", "--no-pager", service])
            self.command(f"journal:{service}", f"The last lines of {service}'s journal",
                         ["journalctl", "-u", service, "-n", str(self.p["journal_lines"]), "--no-pager", "-o", "short-iso"])
            headers = {}
            if name == "vllm" and engine.get("auth") == "bearer":
                key = next((env_assignments(read_file(p)[0]).get("VLLM_API_KEY") for p in self.p["env_files"]
                            if p not in self.p["never_read"]), None)
                headers = {"Authorization": f"Bearer {key}"} if key else {}
            if recorded and name != "router":
                # What diagnose asks the recorded engine: its health URL and its model list.
                if engine.get("health_url"):
                    self.http(f"http:{name}:health", f"{name}: health", engine["health_url"], headers)
                if engine.get("base_url"):
                    self.http(f"http:{name}:models", f"{name}: models", engine["base_url"] + "/models", headers)
            for path in paths if url else []:
                self.http(f"http:{name}:{path}", f"{name}: GET {path}", url + path, headers)
            if name == "router" and router.get("config"):
                binary = re.search(r"\bpath=(\S+)", props.get("ExecStart", ""))
                if binary and os.path.exists(router["config"]):
                    self.command("router_check_config", "The router's verdict on its configuration",
                                 [binary.group(1), "check-config", router["config"]])

    def collect(self) -> tuple[list, list]:
        self.system()
        self.kernel()
        self.runtimes()
        facts = self.records()
        self.services(facts)
        return self.items, self.secrets


def pci_listing(sysfs: str) -> tuple[int, str, str]:
    """One line per display or accelerator device: address class vendor:device driver."""
    base = os.path.join(sysfs, "bus", "pci", "devices")
    lines = []
    for address in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        attr = {name: read_file(os.path.join(base, address, name))[0].strip().lower()
                for name in ("class", "vendor", "device")}
        if not attr["class"].startswith(("0x03", "0x12")):
            continue
        link = os.path.join(base, address, "driver")
        driver = os.path.basename(os.readlink(link)) if os.path.islink(link) else "-"
        lines.append(f"{address} class={attr['class']} vendor={attr['vendor']} device={attr['device']} driver={driver}\n")
    return (0 if os.path.isdir(base) else 2), "".join(lines), f"ls {base}/*/{{class,vendor,device,driver}}"


def module_state(sysfs: str, module: str) -> tuple[int, str, str]:
    path = os.path.join(sysfs, "module", module)
    if not os.path.isdir(path):
        return 2, f"{path}: absent\n", f"cat {path}/initstate"
    return 0, f"initstate={read_file(os.path.join(path, 'initstate'))[0].strip()}\n", f"cat {path}/initstate"


def kernel_headers() -> tuple[int, str, str]:
    path = f"/lib/modules/{os.uname().release}/build/include"
    return (0 if os.path.isdir(path) else 1), f"{path}: {'present' if os.path.isdir(path) else 'absent'}\n", f"test -d {path}"


def modprobe_lines(module: str) -> tuple[int, str, str]:
    dirs = ["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"]
    wanted = re.compile(r"^\s*(?:blacklist\s+" + re.escape(module) + r"|install\s+" + re.escape(module) + r"\s+.*)\s*$")
    found = [f"{path}: {line.strip()}\n" for d in dirs for path in sorted(glob.glob(os.path.join(d, "*.conf")))
             for line in read_file(path)[0].splitlines() if wanted.match(line)]
    return (0 if found else 1), "".join(found), f"grep -E '^(blacklist|install) {module}' {{{','.join(dirs)}}}/*.conf"


def secure_boot(sysfs: str) -> tuple[int, str, str]:
    path = os.path.join(sysfs, "firmware", "efi", "efivars", SECURE_BOOT_VAR)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return 1, "no EFI SecureBoot variable (legacy BIOS boot, or efivars not mounted)\n", f"od {path}"
    # Four bytes of attributes, then the value: 1 is on.
    state = "enabled" if data[4:5] == b"\x01" else "disabled"
    return 0, f"SecureBoot {state}\n", f"od {path}"


def build_report(params: dict, check_mode: bool, run=None, fetch=None, hostname: str | None = None,
                 names=None, users=None) -> dict:
    """The redacted report. Tests pass run/fetch with planted outputs, and the box's names and users."""
    started = time.monotonic()
    items, secrets = Collector(params, run=run, fetch=fetch).collect()
    hostname = hostname or socket.gethostname()
    redactor = Redactor(hostnames=(box_names() if names is None else set(names)) | {hostname} | set(params["hostnames"]),
                        users=(login_users() if users is None else set(users)) | set(params["users"]),
                        secrets=secrets)
    # The box itself is host-1 (the archive is named after it).
    host = redactor.placeholder("host", hostname, count=False)
    report = {
        "schema": 1,
        "kind": "mi50-field-report",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": host,
        "check_mode": check_mode,
        "context": redactor.apply(params["context"]),
        "items": redactor.apply(items),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    report["redaction"] = {
        "rules": ["values of variables named like keys, tokens, secrets or passwords, bearer tokens, credentials "
                  "in URLs and secrets read from the env files -> REDACTED",
                  "the box's host names -> host-N; IPv4/IPv6 addresses except loopback -> ip-N; MAC addresses -> "
                  "mac-N; login user names -> user-N (the same value has the same placeholder throughout)"],
        "counts": dict(redactor.counts),
        "never_read": list(params["never_read"]),
    }
    return report


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "sysfs_root": {"type": "path", "default": "/sys"},
            "kernel_module": {"type": "str", "default": "amdgpu"},
            "facts_dir": {"type": "path", "default": "/etc/ansible/facts.d"},
            "records": {"type": "list", "elements": "path",
                        "default": ["/var/lib/mi50-llm-stack/report.json", "/var/lib/mi50-llm-stack/repair.json"]},
            "env_files": {"type": "list", "elements": "path", "default": ["/etc/vllm/vllm.env"]},
            "never_read": {"type": "list", "elements": "path",
                           "default": ["/etc/llm-router/secrets.env", "/etc/llama.cpp/api-keys"]},
            "services": {"type": "dict", "default": {
                "ollama": {"service": "ollama.service", "url": "http://127.0.0.1:11434",
                           "paths": ["/api/version", "/api/ps", "/v1/models"]},
                "llamacpp": {"service": "llama-server.service", "url": "http://127.0.0.1:8080",
                             "paths": ["/health", "/props", "/v1/models"]},
                "vllm": {"service": "vllm.service", "url": "http://127.0.0.1:8000",
                         "paths": ["/health", "/version", "/v1/models"]}}},
            "journal_lines": {"type": "int", "default": 60},
            "timeout": {"type": "int", "default": 60},
            "probe_path": {"type": "list", "elements": "str",
                           "default": ["/opt/rocm/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                                       "/sbin", "/bin"]},
            "hostnames": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
            "context": {"type": "dict", "default": {}},
            "max_output_bytes": {"type": "int", "default": 262144},
        },
        supports_check_mode=True,
    )
    module.exit_json(changed=False, report=build_report(module.params, module.check_mode))


if __name__ == "__main__":
    main()
