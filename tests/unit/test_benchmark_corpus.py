"""The benchmark corpus: the files are what the manifest says, and it is what it promises."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "files" / "benchmark" / "corpus"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
ITEMS = MANIFEST["items"]


def test_manifest_and_directory_list_the_same_files():
    listed = {item["file"] for item in ITEMS}
    present = {p.name for p in CORPUS.glob("*.txt")}
    assert listed == present
    assert len({item["id"] for item in ITEMS}) == len(ITEMS)


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i["id"])
def test_file_matches_its_manifest_entry(item):
    data = (CORPUS / item["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == item["sha256"]
    assert len(data) == item["bytes"]
    text = data.decode("utf-8")
    assert len(text) == item["chars"]
    assert "\r" not in text
    assert text.endswith("\n")
    assert not text.endswith("\n\n")


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i["id"])
def test_item_is_within_its_length_class(item):
    low, high = MANIFEST["lengths"][item["length"]]
    assert low <= item["bytes"] <= high


@pytest.mark.parametrize("item", ITEMS, ids=lambda i: i["id"])
def test_item_names_its_source_and_public_domain_status(item):
    source = item["source"]
    assert source["package"]
    assert source["version"]
    assert source["path"].startswith(source["sdist"].removesuffix(".tar.gz"))
    assert len(source["sdist_sha256"]) == 64
    first, last = source["lines"]
    assert 1 <= first <= last
    assert "public domain" in item["licence"].lower()
    assert item["title"]
    assert item["kind"]
    assert item["language"] in ("en", "zh")


def test_every_kind_comes_in_every_length():
    kinds = {item["kind"] for item in ITEMS}
    assert len(kinds) >= 3
    pairs = {(item["kind"], item["length"]) for item in ITEMS}
    assert pairs == {(k, n) for k in kinds for n in ("short", "medium", "long")}


def test_no_project_gutenberg_text_is_shipped():
    for item in ITEMS:
        text = (CORPUS / item["file"]).read_text(encoding="utf-8")
        assert "gutenberg" not in text.lower(), item["id"]
        assert "_分节阅读_" not in text, item["id"]  # the Chinese web copy's page markers
