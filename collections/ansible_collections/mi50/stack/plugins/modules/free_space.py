#!/usr/bin/python
# -*- coding: utf-8 -*-
# mi50-llm-stack: free space under a path that may not exist yet (read-only).

from __future__ import annotations

DOCUMENTATION = r"""
---
module: free_space
short_description: Report the free space under a path, before the path exists
description:
  - Walks up from O(path) to its nearest existing parent and reports the space
    available there to unprivileged users (what C(df) shows as Avail).
  - Preflight uses it for the model store, which usually does not exist yet.
  - Changes nothing; supports check mode.
options:
  path:
    description: The path that will hold the data.
    type: path
    required: true
author: mi50-llm-stack maintainers
"""

EXAMPLES = r"""
- name: Measure the space for the model store
  mi50.stack.free_space:
    path: /usr/share/ollama/.ollama/models
  register: __preflight_space
"""

RETURN = r"""
checked_path:
  description: The existing path that was measured.
  returned: always
  type: str
free_bytes:
  description: Bytes available to unprivileged users on that filesystem.
  returned: always
  type: int
free_gb:
  description: The same in GB (10^9 bytes), rounded to one decimal.
  returned: always
  type: float
"""

import os

from ansible.module_utils.basic import AnsibleModule


def nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def main() -> None:
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}},
                           supports_check_mode=True)
    checked = nearest_existing(module.params["path"])
    stats = os.statvfs(checked)
    free = stats.f_bavail * stats.f_frsize
    module.exit_json(changed=False, checked_path=checked, free_bytes=free,
                     free_gb=round(free / 1e9, 1))


if __name__ == "__main__":
    main()
