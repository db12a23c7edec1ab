#!/usr/bin/env python3
"""Rebuild the benchmark corpus (corpus/*.txt and corpus/MANIFEST.json) from its sources.

The corpus ships in the repository; this script only documents, and can repeat, how it was
made. Every item is a line range of a public-domain text inside a PyPI source distribution
(checked by SHA-256), with the small mechanical clean-ups named in its manifest entry. Put the
two sdists from PyPI (the files wordcloud-1.9.6.tar.gz and docutils-0.9.tar.gz of those
releases) in one directory, then run:

    python3 files/benchmark/make_corpus.py /path/to/sdists

Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"

SDISTS = {
    "wordcloud-1.9.6.tar.gz": {
        "package": "wordcloud",
        "version": "1.9.6",
        "sha256": "df17c468ff903bd0aba4f87c6540745d13a4931220dd4937cb363ad85a4771b9",
    },
    "docutils-0.9.tar.gz": {
        "package": "docutils",
        "version": "0.9",
        "sha256": "ff49bf77e9135490a73740d884b418ab8b982ad16ee52cfe796d059c592ea245",
    },
}

ALICE = "wordcloud-1.9.6/examples/alice.txt"
CONSTITUTION = "wordcloud-1.9.6/examples/constitution.txt"
LU_XUN = "wordcloud-1.9.6/examples/wc_cn/CalltoArms.txt"
SECURITY = "docutils-0.9/docs/howto/security.txt"
PRIMER = "docutils-0.9/docs/user/rst/quickstart.txt"

ALICE_PD = (
    "Public domain: Lewis Carroll (1832-1898), first published 1865. The sdist ships the "
    "Project Gutenberg eBook #11; only the book's own text is taken, without any Project "
    "Gutenberg header, footer, licence or trademark text."
)
CONSTITUTION_PD = (
    "Public domain: the Constitution of the United States (1787), a founding legal document "
    "of the United States; never under copyright."
)
DOCUTILS_PD = (
    "Public domain: the file itself states ':Copyright: This document has been placed in the "
    "public domain.' (line 6 of quickstart.txt, line 9 of security.txt); see also COPYING.txt "
    "in the sdist."
)
LU_XUN_PD = (
    "Public domain: Lu Xun (1881-1936), 《呐喊》 (Call to Arms), published 1923; out of "
    "copyright in China since 1987 (50 years after the author's death, as the sdist's "
    "wc_cn_license.txt also says) and in the United States as a work published in 1923. Only "
    "Lu Xun's text is taken: the numbered editorial notes of the web copy are left out and "
    "their markers removed."
)

ZH_CLEANUP = [
    "leading ASCII and full-width indentation removed",
    "paragraphs separated by one blank line",
    "the web copy's page markers (_分节阅读_N) removed and the paragraph they split rejoined",
    "editorial note markers (①, ⑴, (1), ...) removed",
]
EN_CLEANUP = ["CRLF to LF, trailing spaces removed, one final newline"]

ITEMS = [
    # id, kind, language, title, sdist, path, first line, last line, licence
    (
        "literary-short",
        "literary",
        "en",
        "Alice's Adventures in Wonderland, ch. I (Down the Rabbit-Hole), opening",
        "wordcloud-1.9.6.tar.gz",
        ALICE,
        42,
        52,
        ALICE_PD,
    ),
    (
        "literary-medium",
        "literary",
        "en",
        "Alice's Adventures in Wonderland, ch. V (Advice from a Caterpillar), opening",
        "wordcloud-1.9.6.tar.gz",
        ALICE,
        960,
        1006,
        ALICE_PD,
    ),
    (
        "literary-long",
        "literary",
        "en",
        "Alice's Adventures in Wonderland, ch. VII (A Mad Tea-Party), first part",
        "wordcloud-1.9.6.tar.gz",
        ALICE,
        1573,
        1780,
        ALICE_PD,
    ),
    (
        "legal-short",
        "legal",
        "en",
        "Constitution of the United States, Preamble",
        "wordcloud-1.9.6.tar.gz",
        CONSTITUTION,
        1,
        1,
        CONSTITUTION_PD,
    ),
    (
        "legal-medium",
        "legal",
        "en",
        "Constitution of the United States, Article I, Section 8",
        "wordcloud-1.9.6.tar.gz",
        CONSTITUTION,
        67,
        103,
        CONSTITUTION_PD,
    ),
    (
        "legal-long",
        "legal",
        "en",
        "Constitution of the United States, Articles II and III",
        "wordcloud-1.9.6.tar.gz",
        CONSTITUTION,
        131,
        185,
        CONSTITUTION_PD,
    ),
    (
        "technical-short",
        "technical",
        "en",
        "Docutils: Deploying Docutils Securely, Introduction",
        "docutils-0.9.tar.gz",
        SECURITY,
        16,
        23,
        DOCUTILS_PD,
    ),
    (
        "technical-medium",
        "technical",
        "en",
        "Docutils: Deploying Docutils Securely, Securing Docutils",
        "docutils-0.9.tar.gz",
        SECURITY,
        69,
        140,
        DOCUTILS_PD,
    ),
    (
        "technical-long",
        "technical",
        "en",
        "Docutils: A ReStructuredText Primer, Structure to Sections",
        "docutils-0.9.tar.gz",
        PRIMER,
        26,
        351,
        DOCUTILS_PD,
    ),
    (
        "literary_zh-short",
        "literary_zh",
        "zh",
        "鲁迅《呐喊》自序 (Lu Xun, Call to Arms, preface), first paragraph",
        "wordcloud-1.9.6.tar.gz",
        LU_XUN,
        8,
        8,
        LU_XUN_PD,
    ),
    (
        "literary_zh-medium",
        "literary_zh",
        "zh",
        "鲁迅《呐喊》自序 (Lu Xun, Call to Arms, preface), the iron house",
        "wordcloud-1.9.6.tar.gz",
        LU_XUN,
        28,
        48,
        LU_XUN_PD,
    ),
    (
        "literary_zh-long",
        "literary_zh",
        "zh",
        "鲁迅《故乡》(Lu Xun, My Old Home), to the meeting with Runtu",
        "wordcloud-1.9.6.tar.gz",
        LU_XUN,
        74,
        196,
        LU_XUN_PD,
    ),
]

# Slips of the web copy, corrected against the printed text; each must occur exactly once.
FIXES = {
    "literary_zh-long": [
        (
            "父亲还还在世",
            "父亲还在世",
            "the web copy repeats 还 across its page split (line 96/100)",
        ),
    ],
}

# Lengths the corpus promises, in UTF-8 bytes (a test checks every item against its class).
# Bytes, not characters: a Chinese character is three bytes and about one token, so sizing by
# bytes gives the Chinese items about as many tokens as the English ones of the same class.
LENGTHS = {"short": (300, 600), "medium": (1500, 3000), "long": (6000, 12000)}

_PAGE_MARK = re.compile(r"^_分节阅读_\d+$")
# Chinese punctuation on purpose (the Chinese items' own marks).
_NOTE_MARK = re.compile(r"[①-⑳⑴-⒇⒈-⒛㈠-㈩]|\(\d{1,2}\)|（[⒈-⒛\d]{1,2}）")  # noqa: RUF001
_SENTENCE_END = tuple("。！？”」…—）)")  # noqa: RUF001


def clean_en(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines)
    return text.strip("\n") + "\n"


def clean_zh(lines: list[str]) -> str:
    paragraphs: list[str] = []
    joined_after_mark = False
    for raw in lines:
        line = raw.strip(" \t\u3000")
        if not line:
            continue
        if _PAGE_MARK.match(line):
            joined_after_mark = bool(paragraphs) and not paragraphs[-1].endswith(_SENTENCE_END)
            continue
        line = _NOTE_MARK.sub("", line)
        if joined_after_mark:
            paragraphs[-1] += line
        else:
            paragraphs.append(line)
        joined_after_mark = False
    return "\n\n".join(paragraphs) + "\n"


def length_class(item_id: str) -> str:
    return item_id.rsplit("-", 1)[1]


def build(sdist_dir: Path) -> dict:
    members: dict[tuple[str, str], str] = {}
    for name, meta in SDISTS.items():
        path = sdist_dir / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != meta["sha256"]:
            sys.exit(f"{path}: sha256 {digest}, expected {meta['sha256']}")
        with tarfile.open(path) as tar:
            for _, _, _, _, sdist, member, *_ in ITEMS:
                if sdist == name and (name, member) not in members:
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    members[(name, member)] = data.decode("utf-8-sig").replace("\r\n", "\n")
    entries = []
    CORPUS.mkdir(exist_ok=True)
    for item_id, kind, lang, title, sdist, member, first, last, licence in ITEMS:
        lines = members[(sdist, member)].split("\n")[first - 1 : last]
        text = clean_zh(lines) if lang == "zh" else clean_en(lines)
        cleanup = list(ZH_CLEANUP if lang == "zh" else EN_CLEANUP)
        for old, new, why in FIXES.get(item_id, []):
            if text.count(old) != 1:
                sys.exit(f"{item_id}: fix {old!r} does not match exactly once")
            text = text.replace(old, new)
            cleanup.append(f"{old} -> {new}: {why}")
        data = text.encode("utf-8")
        low, high = LENGTHS[length_class(item_id)]
        if not low <= len(data) <= high:
            sys.exit(f"{item_id}: {len(data)} bytes, outside {low}..{high}")
        (CORPUS / f"{item_id}.txt").write_bytes(data)
        entries.append(
            {
                "id": item_id,
                "file": f"{item_id}.txt",
                "kind": kind,
                "length": length_class(item_id),
                "language": lang,
                "title": title,
                "chars": len(text),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "source": {
                    "package": SDISTS[sdist]["package"],
                    "version": SDISTS[sdist]["version"],
                    "sdist": sdist,
                    "sdist_sha256": SDISTS[sdist]["sha256"],
                    "path": member,
                    "lines": [first, last],
                },
                "cleanup": cleanup,
                "licence": licence,
            }
        )
    manifest = {
        "schema": 1,
        "description": (
            "Fixed corpus of real public-domain text for the box benchmark: four kinds "
            "(literary, legal, technical, literary_zh) at three lengths (short 300-600, "
            "medium 1500-3000, long 6000-12000 UTF-8 bytes). Rebuilt by make_corpus.py."
        ),
        "lengths": {k: list(v) for k, v in LENGTHS.items()},
        "items": entries,
    }
    (CORPUS / "MANIFEST.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist_dir", type=Path, help="directory holding the sdists")
    args = parser.parse_args()
    manifest = build(args.sdist_dir)
    for item in manifest["items"]:
        print(f"{item['id']:20} {item['chars']:6} chars {item['bytes']:6} bytes  {item['title']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
