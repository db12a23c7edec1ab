"""Where a loaded model runs, read from Ollama's /api/ps (mi50.stack filter/offload.py).
The shapes are Ollama's: api/types.go ProcessModelResponse, filled by server/routes.go
PsHandler; the PROCESSOR wording is cmd/cmd.go's (`ollama ps`)."""

from __future__ import annotations

import pytest
from ansible_collections.mi50.stack.plugins.filter import offload

GIB = 1 << 30


def ps(*entries: tuple[str, int, int]) -> dict:
    return {"models": [{"name": n, "model": n, "size": s, "size_vram": v, "digest": "ab" * 32,
                        "expires_at": "2026-12-08T04:00:00Z", "context_length": 4096} for n, s, v in entries]}


@pytest.mark.parametrize(("size", "vram", "accelerated", "fraction", "processor"), [
    (5 * GIB, 5 * GIB, True, 1.0, "100% GPU"),
    (5 * GIB, 0, False, 0.0, "100% CPU"),
    (4 * GIB, 3 * GIB, True, 0.75, "25%/75% CPU/GPU"),
    (4 * GIB, 5 * GIB, True, 1.0, "Unknown"),
])
def test_size_vram_against_size_says_where_the_model_is(size, vram, accelerated, fraction, processor):
    found = offload.ollama_placement(ps(("qwen2.5:7b", size, vram)), "qwen2.5:7b")
    assert (found["accelerated"], found["vram_fraction"], found["processor"]) == (accelerated, fraction, processor)
    assert (found["size"], found["size_vram"]) == (size, vram)


def test_the_model_asked_for_is_the_one_read():
    answer = ps(("a:1b", GIB, GIB), ("b:1b", GIB, 0))
    assert offload.ollama_placement(answer, "b:1b")["accelerated"] is False
    assert offload.ollama_placement(answer, "a:1b")["accelerated"] is True


def test_a_model_not_listed_is_not_measured_rather_than_on_the_cpu():
    found = offload.ollama_placement({"models": []}, "a:1b")
    assert found["accelerated"] is None
    assert offload.offload_on_cpu({"a:1b": found}) == []


def test_on_cpu_lists_only_models_measured_with_nothing_in_vram():
    measured = {"b:1b": {"accelerated": False}, "a:1b": {"accelerated": True}, "c:1b": {"accelerated": None},
                "d:1b": {"accelerated": False}}
    assert offload.offload_on_cpu(measured) == ["b:1b", "d:1b"]
    assert offload.offload_on_cpu({}) == []
