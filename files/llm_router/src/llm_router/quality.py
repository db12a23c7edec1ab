"""How close a reconstruction is to its original, as a number in [0, 1], offline.

The score needs no network and no model. It combines three surface measures:

``chrf``
    Character n-gram F1 for n = 1..6 over the text with whitespace removed, averaged over n
    (after Popović's chrF, with beta = 1: a reconstruction that invents text is as wrong as
    one that drops text). It tolerates inflection and small spelling changes.
``token_f1``
    F1 of the multisets of lower-cased words. It rewards keeping the vocabulary and ignores
    word order, which chrF partly captures.
``fact_recall``
    The share of the original's facts found again: numbers (with their separators, so
    ``2024-03-15``, ``3.5`` and ``10:30`` are single facts), capitalised words that do not
    start a sentence (names, places, products) and all-caps acronyms. A dropped or changed
    number is what hurts a compressed record most, so it is weighed separately.

``score = (chrf + token_f1) / 2 * fact_recall``; with no facts in the original the factor is 1.
Identical texts score 1.0. The factor is plain multiplication on purpose: a near copy with two of
fifteen numbers altered must fall below 0.85, and it does (about 0.81), while its chrF alone
would pass (0.94).

Limits, stated plainly: this is a lexical measure, not a semantic one. A faithful paraphrase
with other words scores lower (typically 0.5-0.8) than a near copy; a reconstruction that
keeps the words but flips a negation ("not") scores high. It is not comparable with embedding
cosine similarity, where paraphrases reach 0.9, so calibrate the threshold on your own texts
(``llm-router score`` prints the parts). Tokenisation is by Unicode word characters, so
languages written without spaces are measured mostly by chrF. Cost is linear in the text
length, about 1.5 ms per KB of text on one core.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

_MAX_N = 6
_WORD = re.compile(r"\w+")
_NUMBER = re.compile(r"(?<!\w)\d+(?:[.,:/-]\d+)*%?")  # not the 200 of X200
_CAPITALISED = re.compile(r"[^\W\d_][\w'-]*")
_SENTENCE_END = frozenset(".!?:;\n\r")
_OPENERS = frozenset(" \t\"'([{\u201c\u2018\u00ab")


@dataclass(frozen=True)
class QualityScore:
    score: float
    chrf: float
    token_f1: float
    fact_recall: float
    missing_facts: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "score": round(self.score, 4),
            "chrf": round(self.chrf, 4),
            "token_f1": round(self.token_f1, 4),
            "fact_recall": round(self.fact_recall, 4),
            "missing_facts": list(self.missing_facts[:20]),
        }


def _normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _f1(overlap: int, produced: int, expected: int) -> float:
    if produced == 0 or expected == 0:
        return 0.0
    precision = overlap / produced
    recall = overlap / expected
    return 0.0 if overlap == 0 else 2 * precision * recall / (precision + recall)


def _ngrams(chars: str, n: int) -> Counter[str]:
    return Counter(chars[i : i + n] for i in range(len(chars) - n + 1))


def chrf(original: str, candidate: str) -> float:
    ref = "".join(original.split())
    hyp = "".join(candidate.split())
    if not ref and not hyp:
        return 1.0
    scores: list[float] = []
    for n in range(1, _MAX_N + 1):
        ref_grams = _ngrams(ref, n)
        hyp_grams = _ngrams(hyp, n)
        expected = sum(ref_grams.values())
        produced = sum(hyp_grams.values())
        if expected == 0 and produced == 0:
            continue  # both texts shorter than n: nothing to compare at this order
        overlap = sum((ref_grams & hyp_grams).values())
        scores.append(_f1(overlap, produced, expected))
    return sum(scores) / len(scores) if scores else 0.0


def token_f1(original: str, candidate: str) -> float:
    ref = Counter(_WORD.findall(original.lower()))
    hyp = Counter(_WORD.findall(candidate.lower()))
    if not ref and not hyp:
        return 1.0
    return _f1(sum((ref & hyp).values()), sum(hyp.values()), sum(ref.values()))


def facts(text: str) -> set[str]:
    """Numbers, mid-sentence capitalised words and acronyms: what a summary must not lose."""
    found = set(_NUMBER.findall(text))
    for match in _CAPITALISED.finditer(text):
        word = match.group().rstrip("'-")
        if not word[0].isupper():
            continue
        acronym = len(word) >= 2 and word.isupper()
        if acronym or not _starts_sentence(text, match.start()):
            found.add(word)
    return found


def _starts_sentence(text: str, start: int) -> bool:
    i = start - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def _present(fact: str, numbers: set[str], words: set[str]) -> bool:
    return fact in numbers if fact[0].isdigit() else fact in words


def similarity(original: str, candidate: str) -> QualityScore:
    """Score ``candidate`` (a reconstruction) against ``original``; see the module docstring."""
    ref = _normalise(original)
    hyp = _normalise(candidate)
    if ref == hyp:
        return QualityScore(1.0, 1.0, 1.0, 1.0)
    c = chrf(ref, hyp)
    t = token_f1(ref, hyp)
    wanted = facts(unicodedata.normalize("NFC", original))  # raw: line breaks end sentences
    if wanted:
        numbers = set(_NUMBER.findall(hyp))
        words = {w.rstrip("'-") for w in _CAPITALISED.findall(hyp)}
        missing = tuple(sorted(f for f in wanted if not _present(f, numbers, words)))
        recall = 1 - len(missing) / len(wanted)
    else:
        missing, recall = (), 1.0
    score = (c + t) / 2 * recall
    return QualityScore(min(1.0, max(0.0, score)), c, t, recall, missing)
