# -*- coding: utf-8 -*-
# mi50-llm-stack: how long each stage of a run took, for the run report.

from __future__ import annotations

DOCUMENTATION = r"""
---
name: stage_durations
short_description: Seconds each stage took, from the marks the stage playbooks leave
description:
  - Each stage playbook appends C({stage, at}) (a UTC timestamp) to C(mi50_stage_marks) when it starts.
    A stage lasted until the next one started; the last one until O(now).
  - A stage that ran twice in one run (a repair re-running a stage) adds up.
positional: _input, now
options:
  _input:
    description: The marks, in the order they were made.
    type: list
    elements: dict
    required: true
  now:
    description: UTC timestamp that ends the last stage.
    type: float
    required: true
"""

RETURN = r"""
_value:
  description: Stage name to seconds (rounded to 0.1), in the order the stages first ran.
  type: dict
"""


def stage_durations(marks: list, now: float) -> dict:
    durations: dict = {}
    for i, mark in enumerate(marks):
        end = float(marks[i + 1]["at"]) if i + 1 < len(marks) else float(now)
        seconds = max(0.0, end - float(mark["at"]))
        durations[mark["stage"]] = round(durations.get(mark["stage"], 0.0) + seconds, 1)
    return durations


class FilterModule:
    def filters(self) -> dict:
        return {"stage_durations": stage_durations}
