"""render_report.py: the plan's targets beside the figures, verdicts, the not-comparable warning."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "files" / "benchmark"))

import render_report as rr  # noqa: E402

GPU_CONTEXT = {
    "host": "mi50-box",
    "facts": {
        "gpu_backend": {
            "tier": "rocm",
            "device": {"name": "AMD Instinct MI50/MI60", "software": False},
        },
        "inference": {
            "engine": "ollama",
            "version": "0.12.3",
            "accelerated": True,
            "default_model": "qwen2.5:7b-instruct-q4_K_M",
        },
        "llm_router": {"url": "http://127.0.0.1:8090", "version": "1.0.0"},
    },
}
CPU_CONTEXT = {
    "host": "mi50-lab",
    "facts": {
        "gpu_backend": {
            "tier": "cpu",
            "device": None,
            "rejected": {"rocm": "ROCk module is NOT loaded"},
        },
        "inference": {"engine": "llamacpp", "accelerated": False, "default_model": "gemma-3-270m"},
        "llm_router": {"url": "http://127.0.0.1:8090"},
    },
}


def _stats(p50, p95=None, n=10):
    return {
        "n": n,
        "p50": p50,
        "p95": p95 if p95 is not None else p50,
        "mean": p50,
        "min": p50,
        "max": p95 or p50,
    }


def result(context=None, **overrides):
    summary = {
        "requests": {"total": 40, "ok": 40, "failed": 0, "errors": {}},
        "compress": {"latency_s": _stats(1.5, 2.5), "by_backend": {}, "by_length": {}},
        "reconstruct": {
            "latency_s": _stats(0.3),
            "by_method": {"llm": _stats(0.3, 0.45, 12)},
            "by_backend": {},
            "exact": 0,
        },
        "throughput": {
            "concurrency": 4,
            "duration_s": 60,
            "wall_s": 61.0,
            "started": 130,
            "ok": 130,
            "failed": 0,
            "per_minute": 127.9,
            "completion_tokens_per_s": 300.0,
            "latency_s": _stats(1.8),
            "by_backend": {"local": 130},
            "t_start_s": 100.0,
        },
        "ratio": {"served": _stats(12.0), "by_method": {"llm": _stats(12.0)}},
        "quality": {
            "llm_scores": _stats(0.88),
            "llm_accepted": 10,
            "llm_rejected_for_quality": 2,
            "served": _stats(0.88),
            "threshold": 0.85,
        },
        "backends": {
            "compress": {"local": 140},
            "compress_methods": {"llm": 140},
            "reconstruct": {"local": 12},
            "llm_share": 1.0,
            "all_zstd": False,
            "with_fallback": 2,
            "passed_over": {"local:rejected:quality": 2},
        },
        "tokens_per_s": {
            "compress": {"local": _stats(60.0)},
            "reconstruct": {"local": _stats(105.0)},
        },
        "cost": {
            "baseline_price_per_1k_tokens": 0.001,
            "totals": {
                "requests": 150,
                "calls": 300,
                "tokens": 100000,
                "cost_usd": 0.01,
                "baseline_cost_usd": 0.1,
                "savings_usd": 0.09,
                "savings_pct": 90.0,
            },
            "by_backend": {},
        },
        "items": {},
    }
    for path, value in overrides.items():
        node = summary
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return {
        "schema": rr.SCHEMA,
        "started_utc": "2026-11-29T07:00:00Z",
        "finished_utc": "2026-11-29T07:10:00Z",
        "elapsed_s": 600,
        "router": {
            "url": "http://127.0.0.1:8090",
            "ready": {"backends": [{"name": "local", "role": "local"}]},
        },
        "parameters": {
            "quality": "normal",
            "verify": "true",
            "rounds": 1,
            "latency_seconds": 600,
            "concurrency": 4,
            "duration_s": 60,
            "timeout_s": 600,
        },
        "context": copy.deepcopy(context if context is not None else GPU_CONTEXT),
        "host": {"hostname": "box", "cpus": 32, "loadavg": [0.1, 0.1, 0.1]},
        "samples": [],
        "summary": summary,
    }


def rows_by_metric(res):
    return {r["metric"]: r for r in rr.target_rows(res)}


# --- comparability ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (GPU_CONTEXT, True),
        (CPU_CONTEXT, False),
        (
            {
                "host": "h",
                "facts": {"gpu_backend": {"tier": "vulkan"}, "inference": {"accelerated": False}},
            },
            False,
        ),
        (
            {"host": "h", "facts": {"gpu_backend": {"tier": "rocm"}, "inference": {}}},
            False,
        ),  # unknown: not claimed
        ({}, None),
    ],
)
def test_comparability(context, expected):
    comparable, why = rr.comparability(context)
    assert comparable is expected
    if expected is False:
        assert why.startswith(rr.NOT_COMPARABLE)


def test_cpu_run_says_in_bold_that_it_is_not_comparable():
    md = rr.render_markdown(result(CPU_CONTEXT), None)
    assert f"**{rr.NOT_COMPARABLE}: the engine does not run on the GPU (GPU tier cpu" in md
    assert "mi50-lab" in md
    assert "llamacpp" in md
    assert "gemma-3-270m" in md
    assert "ROCk module is NOT loaded" in md


def test_gpu_run_carries_no_warning_and_names_the_device():
    md = rr.render_markdown(result(GPU_CONTEXT), None)
    assert rr.NOT_COMPARABLE not in md
    assert "AMD Instinct MI50/MI60" in md
    assert "qwen2.5:7b-instruct-q4_K_M" in md
    assert "ollama 0.12.3" in md


def test_run_without_facts_says_comparability_is_unknown():
    md = rr.render_markdown(result({}), None)
    assert "**Comparability with the MI50 targets is unknown" in md


# --- targets and verdicts -----------------------------------------------------------------


def test_every_target_of_the_plan_is_printed_beside_its_figure():
    rows = rows_by_metric(result())
    expected = {
        "Compression latency p50": ("< 2 s", "1.50 s", "met"),
        "Compression latency p95": ("< 2 s", "2.50 s", "missed"),
        "Reconstruction latency p50": ("< 500 ms", "300 ms", "met"),
        "Reconstruction latency p95": ("< 500 ms", "450 ms", "met"),
        "Throughput": ("> 100 compressions/min", "127.9/min", "met"),
        "Compression ratio (median)": ("> 30x", "12.0x", "missed"),
        "Quality score (median)": ("> 0.85", "0.880", "met"),
        "Cost savings": ("> 90%", "90.0%", "missed"),  # "> 90%" is strict
        "Decode speed (physical limit)": (None, "105.0 tokens/s", "info"),
    }
    assert set(rows) == set(expected)
    for metric, (target, measured, verdict) in expected.items():
        row = rows[metric]
        if target:
            assert row["target"] == target, metric
        assert row["measured"] == measured, metric
        assert row["verdict"] == verdict, metric
    assert "210 tokens/s" in rows["Decode speed (physical limit)"]["target"]
    assert "50% of the ceiling" in rows["Decode speed (physical limit)"]["note"]


def test_verdicts_follow_the_figures():
    rows = rows_by_metric(
        result(
            throughput__per_minute=99.9,
            quality__llm_scores=_stats(0.86),
            cost__totals__savings_pct=93.5,
            compress__latency_s=_stats(2.0, 1.9),
        )
    )
    assert rows["Throughput"]["verdict"] == "missed"
    assert rows["Quality score (median)"]["verdict"] == "met"
    assert rows["Cost savings"]["verdict"] == "met"
    assert rows["Compression latency p50"]["verdict"] == "missed"  # "< 2 s" is strict


def test_the_markdown_table_holds_targets_figures_and_verdicts():
    md = rr.render_markdown(result(), "benchmark.png")
    assert "| metric | plan target | measured | verdict | note |" in md
    assert "| Compression latency p95 | < 2 s | 2.50 s | **missed** |" in md
    assert "| Throughput | > 100 compressions/min | 127.9/min | met |" in md
    assert "![latency, throughput, ratio and quality](benchmark.png)" in md


def test_an_all_zstd_run_is_visible_as_such():
    res = result(
        CPU_CONTEXT,
        reconstruct__by_method={"zstd": _stats(0.002)},
        ratio__by_method={"zstd": _stats(1.6)},
        ratio__served=_stats(1.6),
        quality__llm_accepted=0,
        backends__all_zstd=True,
        backends__compress={"zstd": 12},
        cost__totals__savings_pct=None,
    )
    md = rr.render_markdown(res, None)
    assert f"**{rr.ALL_ZSTD}**" in md
    rows = rows_by_metric(res)
    assert rows["Reconstruction latency p50"]["verdict"] == "n/a"
    assert "every compression was served by zstd" in rows["Reconstruction latency p50"]["note"]
    assert rows["Cost savings"]["verdict"] == "n/a"
    assert "no baseline" in rows["Cost savings"]["note"]
    assert "not this engine" in rows["Decode speed (physical limit)"]["note"]


def test_concurrency_other_than_the_plans_is_pointed_out():
    rows = rows_by_metric(result(throughput__concurrency=2))
    assert "the plan's concurrency is 4" in rows["Throughput"]["note"]


def test_text_table_for_the_terminal():
    table = rr.text_table(rr.target_rows(result()))
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "plan", "target", "measured", "verdict"]
    assert any(
        line.startswith("Throughput") and "127.9/min" in line and line.endswith("met")
        for line in lines
    )


# --- files --------------------------------------------------------------------------------


def test_render_writes_the_report_and_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    res = result(CPU_CONTEXT)
    res["samples"] = [
        {
            "phase": "latency",
            "op": "compress",
            "item": "a",
            "ok": True,
            "latency_s": 1.2,
            "t_start_s": 1,
            "backend": "zstd",
            "method": "zstd",
            "original_bytes": 400,
            "compressed_bytes": 200,
            "llm_scores": [0.3],
        },
        {
            "phase": "throughput",
            "op": "compress",
            "item": "a",
            "ok": True,
            "latency_s": 2.0,
            "t_start_s": 101,
            "backend": "local",
            "method": "llm",
            "original_bytes": 400,
            "compressed_bytes": 40,
            "llm_scores": [0.9],
        },
    ]
    res["summary"]["items"] = {"a": {}}
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    report, png, _ = rr.render(path, tmp_path / "out")
    assert png is not None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![latency, throughput, ratio and quality](benchmark.png)" in report.read_text(
        encoding="utf-8"
    )


def test_render_refuses_another_schema(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": "something/else"}), encoding="utf-8")
    with pytest.raises(ValueError, match="schema"):
        rr.render(path, tmp_path)


def test_main_prints_the_warning_and_the_table(tmp_path, capsys):
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps(result(CPU_CONTEXT)), encoding="utf-8")
    assert rr.main([str(path), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert rr.NOT_COMPARABLE.upper() in out
    assert "Compression latency p50" in out
    assert (tmp_path / "report.md").exists()
