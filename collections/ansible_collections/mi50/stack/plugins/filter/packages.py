# -*- coding: utf-8 -*-
# mi50-llm-stack: read what apt says an install needs.

from __future__ import annotations

DOCUMENTATION = r"""
---
name: apt_install_size
short_description: The download and disk space apt announces for an install
description:
  - Reads the summary C(apt-get install --print-uris PACKAGES) prints (it installs nothing; run with
    C(LC_ALL=C)) - C(Need to get 1234 MB of archives.) and C(After this operation, 25.3 GB of
    additional disk space will be used.) - and returns both in GB (decimal units, as apt prints them).
  - Nothing to install gives zeros; a text without the summary gives C(known) false.
positional: _input
options:
  _input:
    description: What apt-get printed.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read apt's figures
  ansible.builtin.set_fact:
    _size: "{{ __apt_answer.stdout | mi50.stack.apt_install_size }}"
"""

RETURN = r"""
_value:
  description: known (bool), download_gb, install_gb (freed space counts as negative).
  type: dict
"""

import re

# apt prints sizes with SI prefixes (apt-pkg/contrib/strutl.cc SizeToStr): B, kB, MB, GB, TB.
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
_SIZE = r"([0-9][0-9.,]*)\s*(B|kB|MB|GB|TB)"


def _gb(number: str, unit: str) -> float:
    return round(float(number.replace(",", "")) * _UNITS[unit] / 1e9, 6)


def apt_install_size(text: str) -> dict:
    text = text or ""
    download = re.search(r"Need to get (?:[0-9.,]+\s*\w+/)?" + _SIZE + r" of archives", text)
    used = re.search(r"After this operation, " + _SIZE + r" (?:of additional disk space will be used|disk space will be freed)", text)
    nothing = re.search(r"^0 upgraded, 0 newly installed", text, re.M)
    result = {"known": bool(download or used or nothing), "download_gb": 0.0, "install_gb": 0.0}
    if download:
        result["download_gb"] = _gb(*download.groups())
    if used:
        size = _gb(*used.groups())
        result["install_gb"] = -size if "freed" in used.group(0) else size
    return result


class FilterModule:
    def filters(self) -> dict:
        return {"apt_install_size": apt_install_size}
