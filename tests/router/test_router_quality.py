"""The offline quality score."""

from __future__ import annotations

import time

import pytest
from llm_router.quality import chrf, facts, similarity, token_f1
from routerkit import LONG_TEXT

ORIGINAL = (
    "On 2024-03-15 the Berlin office of Acme GmbH shipped 1,250 units of the X200 router to "
    "Deutsche Bahn. Revenue rose 12.5% to EUR 3.4 million, said CFO Maria Schmidt."
)
PARAPHRASE = (
    "On 2024-03-15 Acme GmbH's Berlin office shipped 1,250 X200 routers to Deutsche Bahn. "
    "Revenue grew 12.5% to EUR 3.4 million, according to CFO Maria Schmidt."
)
NUMBERS_CHANGED = ORIGINAL.replace("2024-03-15", "2024-03-16").replace("1,250", "1,205")
VAGUE = "Acme shipped routers to a rail company in March. Revenue rose a bit, said the CFO."


def test_identical_texts_score_one() -> None:
    assert similarity(ORIGINAL, ORIGINAL).score == 1.0
    # whitespace and Unicode normal form do not count as differences
    assert similarity("Café  au\nlait", "Cafe\u0301 au lait").score == 1.0


def test_empty_and_unrelated() -> None:
    assert similarity(ORIGINAL, "").score == 0.0
    assert similarity("", "").score == 1.0
    assert similarity(ORIGINAL, "lorem ipsum dolor sit amet").score < 0.05


def test_scores_are_ordered_by_faithfulness() -> None:
    scores = [similarity(ORIGINAL, c).score for c in (ORIGINAL, PARAPHRASE, VAGUE, "")]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_changed_numbers_fail_the_plans_threshold() -> None:
    """A near copy with two altered numbers: chrF alone would pass 0.85, the score must not."""
    result = similarity(ORIGINAL, NUMBERS_CHANGED)
    assert result.chrf > 0.9
    assert result.score < 0.85
    assert set(result.missing_facts) == {"2024-03-15", "1,250"}


def test_the_docstring_figures() -> None:
    assert similarity(ORIGINAL, NUMBERS_CHANGED).score == pytest.approx(0.81, abs=0.01)
    assert similarity(ORIGINAL, NUMBERS_CHANGED).chrf == pytest.approx(0.94, abs=0.01)
    assert 0.5 <= similarity(ORIGINAL, PARAPHRASE).score <= 0.8


def test_facts_are_numbers_names_and_acronyms() -> None:
    found = facts(ORIGINAL)
    assert {"2024-03-15", "1,250", "12.5%", "3.4", "X200", "EUR", "CFO"} <= found
    assert {"Berlin", "Acme", "GmbH", "Deutsche", "Bahn", "Maria", "Schmidt"} <= found
    assert "On" not in found  # starts a sentence
    assert "Revenue" not in found
    assert "200" not in found  # part of X200


def test_parts_are_in_range() -> None:
    assert chrf("abc", "abc") == 1.0
    assert chrf("abc", "xyz") == 0.0
    assert token_f1("a b c d", "a b") == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_linear_enough_for_long_texts() -> None:
    text = LONG_TEXT * 200  # about 50 KB
    started = time.perf_counter()
    similarity(text, text[::-1])
    assert time.perf_counter() - started < 2.0
