#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: find installed Debian packages whose files are missing or
# changed (dpkg --verify), so a role can reinstall exactly those (read-only).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dpkg_verify
short_description: Find installed packages whose files are missing or changed
description:
  - Runs C(dpkg --verify) on each named package (and on the packages that own the
    given paths) and returns the ones a reinstall would repair, with the installed
    version to reinstall.
  - A package needs a reinstall when a file it shipped is missing or its checksum
    differs, or when one of its configuration files (conffiles) is missing.
    A conffile that was only edited is a local change; it is reported and left alone.
  - Packages that are not installed are reported, not checked (installing them is
    the role's own business).
  - Changes nothing; supports check mode.
options:
  packages:
    description: Package names to check.
    type: list
    elements: str
    default: []
  owning:
    description: Paths whose owning packages are checked too (C(dpkg-query -S)); a path no package owns is skipped.
    type: list
    elements: path
    default: []
author: mi50-llm-stack maintainers
"""

EXAMPLES = r"""
- name: Check the Vulkan packages' files
  mi50.stack.dpkg_verify:
    packages: [mesa-vulkan-drivers, libvulkan1, vulkan-tools]
  register: __vulkan_integrity

- name: Check every package with files under ROCm's prefix
  mi50.stack.dpkg_verify:
    owning: [/opt/rocm-6.4.2]
"""

RETURN = r"""
checked:
  description: The installed packages that were verified.
  returned: always
  type: list
  elements: str
not_installed:
  description: Named packages that are not installed (not checked).
  returned: always
  type: list
  elements: str
problems:
  description: Per package, every file dpkg found missing or changed.
  returned: always
  type: dict
  sample: {"mesa-vulkan-drivers:amd64": [{"path": /usr/share/vulkan/icd.d/lvp_icd.x86_64.json,
           "state": missing, "conffile": false}]}
broken:
  description: Packages a reinstall repairs (sorted).
  returned: always
  type: list
  elements: str
reinstall:
  description: The same packages as name=installed version, for apt-get install --reinstall.
  returned: always
  type: list
  elements: str
  sample: ["mesa-vulkan-drivers:amd64=22.3.6-1+deb12u2"]
missing_conffiles:
  description: Broken packages with a missing conffile (the reinstall needs dpkg's --force-confmiss).
  returned: always
  type: list
  elements: str
edited_conffiles:
  description: Conffiles that were edited (local changes, left alone), per package.
  returned: always
  type: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule

# dpkg --verify prints "%-9s %c %s": nine flag characters (or "missing"), a "c"
# for conffiles, and the path; the third flag is "5" when the MD5 sum differs.
_LINE = re.compile(r"^(?P<flags>.{9}) (?P<conf>[c ]) (?P<path>/.*)$")


def parse_verify(text: str) -> list[dict]:
    """dpkg --verify's report lines as {path, state (missing|changed|other), conffile}."""
    found = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        flags = match.group("flags")
        state = "missing" if flags.startswith("missing") else "changed" if flags[2] == "5" else "other"
        found.append({"path": match.group("path"), "state": state, "conffile": match.group("conf") == "c"})
    return found


def needs_reinstall(problems: list[dict]) -> bool:
    """A missing or changed file the package shipped, or a missing conffile; an edited conffile is the user's."""
    return any((p["state"] in ("missing", "changed") and not p["conffile"])
               or (p["state"] == "missing" and p["conffile"]) for p in problems)


def summarize(installed: dict, reports: dict) -> dict:
    """The module's result from {package: version} and {package: dpkg --verify output}."""
    problems = {name: parse_verify(text) for name, text in reports.items()}
    problems = {name: found for name, found in problems.items() if found}
    broken = sorted(name for name, found in problems.items() if needs_reinstall(found))
    return {
        "checked": sorted(installed),
        "problems": problems,
        "broken": broken,
        "reinstall": [f"{name}={installed[name]}" for name in broken],
        "missing_conffiles": [name for name in broken
                              if any(p["conffile"] and p["state"] == "missing" for p in problems[name])],
        "edited_conffiles": {name: [p["path"] for p in found if p["conffile"] and p["state"] == "changed"]
                             for name, found in problems.items()
                             if any(p["conffile"] and p["state"] == "changed" for p in found)},
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "owning": {"type": "list", "elements": "path", "default": []},
        },
        supports_check_mode=True,
    )
    env = {"LC_ALL": "C"}
    names = list(module.params["packages"])
    for path in module.params["owning"]:
        rc, out, _err = module.run_command(["dpkg-query", "--search", path], environ_update=env)
        if rc == 0:
            # "pkg1, pkg2: /path" (a diversion line starts with "diversion by").
            for line in out.splitlines():
                owners, _, owned = line.partition(": ")
                if owned.strip() == path and not line.startswith("diversion"):
                    names += [n.strip() for n in owners.split(",") if n.strip()]
    installed: dict[str, str] = {}
    not_installed = []
    for name in dict.fromkeys(names):
        rc, out, _err = module.run_command(
            ["dpkg-query", "--show", "--showformat", "${binary:Package}\\t${Version}\\t${db:Status-Abbrev}\\n", name],
            environ_update=env)
        rows = [r.split("\t") for r in out.splitlines() if r.count("\t") == 2]
        rows = [r for r in rows if r[2].startswith("ii")]
        if rc != 0 or not rows:
            not_installed.append(name)
            continue
        for package, version, _status in rows:
            installed[package] = version
    reports = {}
    for package in installed:
        rc, out, err = module.run_command(["dpkg", "--verify", package], environ_update=env)
        if rc != 0:
            module.fail_json(msg=f"dpkg --verify {package} failed: {err.strip() or out.strip()}")
        reports[package] = out
    module.exit_json(changed=False, not_installed=not_installed, **summarize(installed, reports))


if __name__ == "__main__":
    main()
