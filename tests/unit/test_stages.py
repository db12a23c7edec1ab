"""The run report's stage durations (mi50.stack.stage_durations)."""

from __future__ import annotations

from ansible_collections.mi50.stack.plugins.filter.stages import stage_durations


def test_each_stage_lasts_until_the_next_starts():
    marks = [{"stage": "preflight", "at": 100.0}, {"stage": "gpu", "at": 112.5}, {"stage": "engine", "at": 200}]
    assert stage_durations(marks, 260.04) == {"preflight": 12.5, "gpu": 87.5, "engine": 60.0}


def test_order_is_the_order_the_stages_ran():
    marks = [{"stage": "gpu", "at": 1}, {"stage": "engine", "at": 2}, {"stage": "router", "at": 3}]
    assert list(stage_durations(marks, 4)) == ["gpu", "engine", "router"]


def test_a_stage_that_ran_twice_adds_up():
    marks = [{"stage": "gpu", "at": 0}, {"stage": "engine", "at": 10}, {"stage": "gpu", "at": 15}]
    assert stage_durations(marks, 20) == {"gpu": 15.0, "engine": 5.0}


def test_timestamps_as_strings_and_no_marks():
    assert stage_durations([{"stage": "smoke", "at": "5.0"}], "7.25") == {"smoke": 2.2}
    assert stage_durations([], 1.0) == {}


def test_a_clock_going_backwards_never_gives_negative_time():
    assert stage_durations([{"stage": "gpu", "at": 10}], 9) == {"gpu": 0.0}
