"""Every apt run of the roles and playbooks waits for the package lock.

A fresh Ubuntu server runs unattended-upgrades at its first boot, which holds
dpkg's lock for minutes: a task that does not wait fails at once. So:
- every ansible.builtin.apt task sets lock_timeout to its role's
  <role>_apt_lock_timeout (the module retries on a lock until then, the package
  lists' lock included; its default is 60 seconds);
- every apt-get argv that installs or removes carries
  `-o DPkg::Lock::Timeout=<role>_apt_lock_timeout` (apt >= 1.9.11,
  apt-pkg/deb/debsystem.cc: dpkg's frontend and administration locks; apt-get's
  own default is 0, fail at once);
- `apt-get update` is not run on the system's lists: DPkg::Lock::Timeout does not
  cover the lists lock (apt-pkg/acquire.cc takes it without waiting), the apt
  module's update_cache with lock_timeout does;
- an apt-get in a shell script does the same, or runs on a private state
  (Dir::State::status and Dir::State::Lists), whose locks no other apt holds;
- dpkg itself is run only for what takes no lock (--verify reads the database
  read-only): dpkg has no option to wait for its lock;
- ansible.builtin.package is not used: it cannot pass lock_timeout to apt.
dpkg-query and apt-cache only read and take no lock.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

APT_MODULES = {"ansible.builtin.apt", "ansible.legacy.apt", "apt"}
PACKAGE_MODULES = {"ansible.builtin.package", "ansible.legacy.package", "package"}
COMMAND_MODULES = {f"{prefix}{name}" for prefix in ("", "ansible.builtin.", "ansible.legacy.")
                   for name in ("command", "shell", "raw")}
# apt-get/apt subcommands that take no lock another apt holds (apt-private: no system lock, no lists lock).
APT_READ_ONLY = {"indextargets", "changelog", "download", "show", "showsrc", "list", "search", "policy",
                 "depends", "rdepends"}
# dpkg actions that open the database read-only (no lock); anything else changes it.
DPKG_READ_ONLY = {"--verify", "-V", "--audit", "-C", "--print-architecture", "--print-foreign-architectures",
                  "--compare-versions", "--list", "-l", "--status", "-s", "--listfiles", "-L", "--search", "-S",
                  "--get-selections", "--version", "--help", "--validate-pkgname", "--validate-version"}
LOCK_OPTION = re.compile(r"^-o\s*DPkg::Lock::Timeout=(.+)$", re.IGNORECASE)
UPDATE = "apt-get update cannot wait for the lists lock: use ansible.builtin.apt update_cache with lock_timeout"
OPTIONS_WITH_VALUE = {"-o", "-c", "-t", "--option", "--config-file", "--target-release"}


def yaml_files() -> list[Path]:
    """What Ansible reads as tasks and variables: the roles' files and the playbooks."""
    files = [p for p in sorted((ROOT / "roles").glob("*/*/*.yml"))
             if p.parent.name in ("tasks", "handlers", "vars", "defaults")]
    files += sorted((ROOT / "playbooks").rglob("*.yml")) + [ROOT / "site.yml", ROOT / "repair.yml"]
    return [p for p in files if p.exists()]


def role_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "roles" else None


def walk(node, trail: tuple = (), task: bool = False):
    """Every dict and list in a YAML document, with the names of the tasks above it, and whether a
    dict is an item of a list (a task or a play, not an environment or a module's arguments)."""
    if isinstance(node, dict):
        here = trail + ((node["name"],) if task and isinstance(node.get("name"), str) else ())
        yield node, here, task
        for value in node.values():
            yield from walk(value, here)
    elif isinstance(node, list):
        yield node, trail, False
        for value in node:
            yield from walk(value, trail, task=True)


def apt_subcommand(argv: list) -> str:
    """The first word of an apt-get argv that is neither an option nor an option's value."""
    words = [str(w) for w in argv[1:]]
    i = 0
    while i < len(words):
        if words[i] in OPTIONS_WITH_VALUE:
            i += 2
        elif words[i].startswith("-"):
            i += 1
        else:
            return words[i]
    return ""


def argv_lock_timeout(argv: list) -> str | None:
    """The value of `-o DPkg::Lock::Timeout=...` (two words or one) in an apt-get argv."""
    words = [str(w) for w in argv]
    for i, word in enumerate(words):
        match = LOCK_OPTION.match(f"{word} {words[i + 1]}" if word == "-o" and i + 1 < len(words) else word)
        if match:
            return match.group(1)
    return None


def _retried_dpkg(task: dict) -> list | None:
    """The dpkg argv of a command task that retries until dpkg's lock is free (until + retries), if any:
    the one way to wait for dpkg's lock when only dpkg can do the work (dpkg --configure -a)."""
    for key in sorted(COMMAND_MODULES & set(task)):
        args = task[key]
        argv = args.get("argv") if isinstance(args, dict) else None
        if isinstance(argv, list) and argv and Path(str(argv[0])).name == "dpkg" and "until" in task and "retries" in task:
            return argv
    return None


def _found_in(data, trail: tuple, role: str | None, rel: Path) -> list[tuple]:
    found = []
    retried: set[int] = set()
    for node, here, task in walk(data, trail):
        where = f"{rel}:{' / '.join(here) or '-'}"
        if isinstance(node, dict) and task and _retried_dpkg(node) is not None:
            retried.add(id(_retried_dpkg(node)))
        if isinstance(node, list) and id(node) in retried:
            continue
        if isinstance(node, dict) and task:
            found += [("apt", where, role, node[key]) for key in sorted(APT_MODULES & set(node))]
            found += [("package", where, role, node[key]) for key in sorted(PACKAGE_MODULES & set(node))]
            for key in sorted(COMMAND_MODULES & set(node)):
                args = node[key]
                script = (args.get("cmd") or args.get("_raw_params")) if isinstance(args, dict) else args
                if isinstance(script, str) and re.search(r"\b(apt-get|apt|dpkg)\s", script):
                    found.append(("script", where, role, script))
        elif isinstance(node, list) and node and isinstance(node[0], str):
            if Path(node[0]).name in ("apt-get", "apt") and apt_subcommand(node) not in APT_READ_ONLY:
                found.append(("apt-get", where, role, node))
            elif Path(node[0]).name == "dpkg":
                found.append(("dpkg", where, role, node))
    return found


def collect() -> list[tuple]:
    """(kind, where, role, payload) for every apt task, apt-get/dpkg argv and script running apt or dpkg."""
    found = []
    for path in yaml_files():
        data = yaml.safe_load(path.read_text())
        # A variables file: what is found there is named after its variable.
        tops = list(data.items()) if isinstance(data, dict) else [(None, data)]
        for top, value in tops:
            found += _found_in(value, (top,) if top else (), role_of(path), path.relative_to(ROOT))
    return found


FOUND = collect()


def of_kind(kind: str) -> list[tuple]:
    return [f for f in FOUND if f[0] == kind]


def wanted(role: str | None) -> str | None:
    """The variable a role's value must use: its own (a playbook may use any value)."""
    return f"{role}_apt_lock_timeout" if role else None


def problems(kind: str, where: str, role: str | None, payload) -> list[str]:
    """What keeps one apt task, apt-get/dpkg argv or script from waiting for the lock (nothing: [])."""
    out = []
    if kind == "apt":
        if not isinstance(payload, dict) or "lock_timeout" not in payload:
            out.append(f"{where}: ansible.builtin.apt without lock_timeout")
        elif role and wanted(role) not in str(payload["lock_timeout"]):
            out.append(f"{where}: lock_timeout should use {wanted(role)}")
    elif kind == "apt-get":
        if apt_subcommand(payload) == "update":
            out.append(f"{where}: {UPDATE}")
        value = argv_lock_timeout(payload)
        if value is None:
            out.append(f"{where}: {' '.join(map(str, payload[:3]))} ... lacks -o DPkg::Lock::Timeout=...")
        elif role and wanted(role) not in value:
            out.append(f"{where}: DPkg::Lock::Timeout should use {wanted(role)}")
    elif kind == "script":
        private = "Dir::State::status=" in payload and "Dir::State::Lists=" in payload
        if re.search(r"\bapt(-get)?\s", payload) and not private:
            if not re.search(r"DPkg::Lock::Timeout=", payload, re.IGNORECASE):
                out.append(f"{where}: apt-get on the system's state without -o DPkg::Lock::Timeout=...")
            if re.search(r"\bapt(-get)?\s(.*\s)?update\b", payload):
                out.append(f"{where}: {UPDATE}")
        for line in payload.splitlines():
            match = re.search(r"(?:^|[\s;&|(])dpkg\s+(-\S+)", line)
            if match and match.group(1) not in DPKG_READ_ONLY:
                out.append(f"{where}: dpkg cannot wait for its lock: {line.strip()}")
    elif kind == "dpkg":
        actions = [str(w) for w in payload[1:] if str(w).startswith("-")]
        if not actions or actions[0] not in DPKG_READ_ONLY:
            out.append(f"{where}: dpkg {' '.join(map(str, payload[1:]))} cannot wait for the lock: use "
                       "ansible.builtin.apt with lock_timeout or apt-get -o DPkg::Lock::Timeout=...")
    elif kind == "package":
        out.append(f"{where}: ansible.builtin.package cannot pass lock_timeout: use ansible.builtin.apt")
    return out


def test_the_walk_finds_the_apt_runs_it_guards():
    """Not a vacuous guard: it sees the apt tasks and apt-get commands the roles have today."""
    roles = {role for _kind, _where, role, _payload in of_kind("apt")}
    assert {"rocm", "vulkan", "opencl", "llamacpp", "llm_router", "ollama", "vllm"} <= roles
    argvs = {where for _kind, where, _role, _payload in of_kind("apt-get")}
    assert {"roles/rocm/vars/main.yml:_rocm_reinstall_command", "roles/vulkan/vars/main.yml:_vulkan_reinstall_command",
            "roles/opencl/vars/main.yml:_opencl_reinstall_command"} <= argvs
    assert any("rocblas_gfx906.yml" in where for _kind, where, _role, _payload in of_kind("script"))


# What a future task could get wrong, in a role called "demo"; each must be caught.
FORGOTTEN = """
- name: Install without waiting
  ansible.builtin.apt: {name: curl, state: present}
- name: Install with a number of its own
  ansible.builtin.apt: {name: curl, state: present, lock_timeout: 60}
- name: Reinstall without waiting
  ansible.builtin.command:
    argv: [apt-get, install, --reinstall, --yes, curl]
- name: Refresh the lists with apt-get
  ansible.builtin.command:
    argv: [apt-get, -o, "DPkg::Lock::Timeout={{ demo_apt_lock_timeout }}", update]
- name: Install a file with dpkg
  ansible.builtin.command:
    argv: [dpkg, -i, /tmp/x.deb]
- name: Retry without a bound
  ansible.builtin.command:
    argv: [dpkg, --configure, -a]
  until: false
- name: Install from a script
  ansible.builtin.shell:
    cmd: apt-get install --yes curl && dpkg --configure -a
- name: Install through the package module
  ansible.builtin.package: {name: curl}
"""
FINE = """
- name: Install and wait
  ansible.builtin.apt: {name: curl, state: present, lock_timeout: "{{ demo_apt_lock_timeout }}"}
- name: Reinstall and wait
  ansible.builtin.command:
    argv: [apt-get, install, --reinstall, -o, "DPkg::Lock::Timeout={{ demo_apt_lock_timeout }}", curl]
- name: Read-only runs
  ansible.builtin.command:
    argv: [dpkg, --verify, curl]
- name: Ask apt
  ansible.builtin.command:
    argv: [apt-get, indextargets, --format, "$(URI)"]
- name: Finish an interrupted dpkg, retrying while another holds its lock
  ansible.builtin.command:
    argv: [dpkg, --configure, -a]
  register: __demo_configure
  until: __demo_configure.rc == 0
  retries: 20
"""


def test_the_guard_catches_a_task_that_forgets_to_wait():
    forgotten = _found_in(yaml.safe_load(FORGOTTEN), (), "demo", Path("roles/demo/tasks/main.yml"))
    assert [(f[0], f[1].split(":", 1)[1]) for f in forgotten if problems(*f)] == [
        ("apt", "Install without waiting"), ("apt", "Install with a number of its own"),
        ("apt-get", "Reinstall without waiting"), ("apt-get", "Refresh the lists with apt-get"),
        ("dpkg", "Install a file with dpkg"), ("dpkg", "Retry without a bound"), ("script", "Install from a script"),
        ("package", "Install through the package module")]
    script = next(f for f in forgotten if f[0] == "script")
    assert len(problems(*script)) == 2  # apt-get without the option, and dpkg --configure
    fine = _found_in(yaml.safe_load(FINE), (), "demo", Path("roles/demo/tasks/main.yml"))
    assert [f[0] for f in fine] == ["apt", "apt-get", "dpkg"]  # indextargets takes no lock: not even looked at
    assert [p for f in fine for p in problems(*f)] == []


@pytest.mark.parametrize("found", FOUND, ids=[f"{f[0]} {f[1]}" for f in FOUND])
def test_every_apt_run_waits_for_the_lock(found):
    assert problems(*found) == []


@pytest.mark.parametrize("role", sorted({f[2] for f in FOUND if f[2] and f[0] in ("apt", "apt-get")}))
def test_each_role_that_runs_apt_defines_its_lock_timeout(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    value = defaults.get(f"{role}_apt_lock_timeout")
    assert isinstance(value, int) and value >= 60, f"{role}_apt_lock_timeout: {value!r}"
