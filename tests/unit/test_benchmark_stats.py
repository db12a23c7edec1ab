"""The box benchmark's pure parts: percentiles, the summary, and the router's wording it reads."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "files" / "benchmark"))

import box_benchmark as bb  # noqa: E402

# --- percentiles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([4, 1, 3, 2], 50, 2.5),  # order does not matter
        ([1, 2, 3, 4], 95, 3.85),  # linear between the closest ranks
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([7], 95, 7),
        (list(range(1, 101)), 95, 95.05),
        ([1, None, 3], 50, 2),  # None is not a sample
    ],
)
def test_percentile(values, q, expected):
    assert bb.percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert bb.percentile([], 50) is None
    with pytest.raises(ValueError, match="outside"):
        bb.percentile([1], 101)


def test_describe():
    d = bb.describe([3.0, 1.0, 2.0, None])
    assert d == {"n": 3, "p50": 2.0, "p95": 2.9, "mean": 2.0, "min": 1.0, "max": 3.0}
    assert bb.describe([])["p50"] is None


# --- what the router's answers say --------------------------------------------------------


def test_rejected_score_is_read_in_the_routers_own_wording():
    """The score of a rejected LLM attempt exists only in the attempt's detail text; if the
    router words it differently, the benchmark would silently lose those scores."""
    source = (ROOT / "files/llm_router/src/llm_router/compression.py").read_text(encoding="utf-8")
    assert 'f"quality {score.score:.3f} is below the threshold {self.threshold:g}"' in source
    detail = f"quality {0.6123:.3f} is below the threshold {0.85:g}"
    assert float(bb.REJECTED_SCORE.search(detail).group(1)) == pytest.approx(0.612)


def _attempt(backend, outcome, reason="", detail="", ms=100.0):
    a = {"backend": backend, "outcome": outcome, "latency_ms": ms}
    if outcome != "ok":
        a.update(reason=reason, detail=detail)
    return a


def test_llm_scores_counts_accepted_and_rejected_attempts():
    rejected = _attempt("local", "rejected", "quality", "quality 0.400 is below the threshold 0.85")
    accepted = {
        "method": "llm",
        "quality": {"verified": True, "score": 0.9},
        "attempts": [rejected, _attempt("cloud", "ok")],
    }
    assert bb.llm_scores(accepted) == [0.4, 0.9]
    to_zstd = {
        "method": "zstd",
        "quality": {"verified": False, "score": 1.0},
        "attempts": [rejected, _attempt("zstd", "ok")],
    }
    assert bb.llm_scores(to_zstd) == [0.4]  # zstd's lossless 1.0 is not the model's score
    unverified = {
        "method": "llm",
        "quality": {"verified": False, "score": None},
        "attempts": [_attempt("local", "ok")],
    }
    assert bb.llm_scores(unverified) == []
    low_ratio = {
        "method": "zstd",
        "attempts": [_attempt("local", "rejected", "low_ratio", "ratio 0.90 is below")],
    }
    assert bb.llm_scores(low_ratio) == []


def test_tokens_per_second_uses_the_llm_calls_time():
    served = {
        "ok": True,
        "method": "llm",
        "tokens": {"completion": 200},
        "attempts": [_attempt("local", "ok", ms=2000)],
    }
    assert bb.tokens_per_second(served) == ("local", pytest.approx(100.0))
    rejected = {
        "ok": True,
        "method": "zstd",
        "tokens": {"completion": 50},
        "attempts": [
            _attempt("local", "rejected", "quality", "x", ms=500),
            _attempt("zstd", "ok", ms=1),
        ],
    }
    assert bb.tokens_per_second(rejected) == ("local", pytest.approx(100.0))
    two_llms = {
        "ok": True,
        "method": "llm",
        "tokens": {"completion": 50},
        "attempts": [_attempt("local", "rejected", "quality", "x"), _attempt("cloud", "ok")],
    }
    assert bb.tokens_per_second(two_llms) is None  # tokens are not split per backend
    assert (
        bb.tokens_per_second(
            {"ok": True, "method": "zstd", "tokens": {"completion": 0}, "attempts": []}
        )
        is None
    )


# --- ratio and cost -----------------------------------------------------------------------


def test_ratio_stats_median_and_aggregate():
    samples = [
        {"original_bytes": 1000, "compressed_bytes": 100},  # 10x
        {"original_bytes": 100, "compressed_bytes": 50},  # 2x
        {"original_bytes": 300, "compressed_bytes": 100},  # 3x
    ]
    r = bb.ratio_stats(samples)
    assert r["p50"] == 3.0
    assert r["aggregate"] == pytest.approx(1400 / 250, abs=1e-4)


def _report(requests, tokens, cost, base, by_backend=None):
    totals = {
        "requests": requests,
        "calls": requests,
        "prompt_tokens": tokens,
        "completion_tokens": 0,
        "tokens": tokens,
        "cost_usd": cost,
        "baseline_cost_usd": base,
    }
    return {"baseline_price_per_1k_tokens": 0.001, "totals": totals, "by_backend": by_backend or {}}


def test_cost_delta_measures_the_run_not_the_ledgers_history():
    before = _report(100, 10_000, 0.5, 1.0)  # an old period that saved only 50%
    after = _report(110, 20_000, 0.501, 1.01)
    d = bb.cost_delta(before, after)["totals"]
    assert d["requests"] == 10
    assert d["tokens"] == 10_000
    assert d["savings_pct"] == pytest.approx(90.0)


def test_cost_delta_without_priced_llm_work_has_no_savings_figure():
    before = _report(5, 0, 0.0, 0.0)
    after = _report(9, 300, 0.00003, 0.0)  # rejected local attempts cost; zstd served
    d = bb.cost_delta(before, after)
    assert d["totals"]["savings_pct"] is None
    assert bb.cost_delta(None, after) is None


def test_cost_delta_lists_only_backends_the_run_used():
    idle = {
        "role": "cloud",
        "requests": 3,
        "calls": 3,
        "tokens": 30,
        "cost_usd": 0.03,
        "baseline_cost_usd": 0.03,
    }
    used_before = {
        "role": "local",
        "requests": 1,
        "calls": 1,
        "tokens": 10,
        "cost_usd": 0.001,
        "baseline_cost_usd": 0.01,
    }
    used_after = {
        **used_before,
        "requests": 2,
        "calls": 2,
        "tokens": 20,
        "cost_usd": 0.002,
        "baseline_cost_usd": 0.02,
    }
    d = bb.cost_delta(
        _report(4, 40, 0.031, 0.04, {"cloud": idle, "local": used_before}),
        _report(5, 50, 0.032, 0.05, {"cloud": idle, "local": used_after}),
    )
    assert set(d["by_backend"]) == {"local"}
    assert d["by_backend"]["local"]["role"] == "local"


# --- the summary --------------------------------------------------------------------------


def _sample(phase, op, item="a", ok=True, **kw):
    s = {
        "phase": phase,
        "op": op,
        "item": item,
        "kind": "legal",
        "length": "short",
        "original_bytes_sent": 400,
        "t_start_s": 0.0,
        "latency_s": 1.0,
        "ok": ok,
    }
    s.update(kw)
    if op == "compress" and ok:
        s.setdefault("original_bytes", 400)
        s["llm_scores"] = bb.llm_scores(s)
    return s


LLM_OK = {
    "backend": "local",
    "method": "llm",
    "compressed_bytes": 40,
    "quality": {"verified": True, "score": 0.9, "threshold": 0.85},
    "tokens": {"completion": 100},
    "attempts": [_attempt("local", "ok", ms=1000)],
}
TO_ZSTD = {
    "backend": "zstd",
    "method": "zstd",
    "compressed_bytes": 200,
    "quality": {"verified": False, "score": 1.0, "threshold": 0.85},
    "tokens": {"completion": 30},
    "attempts": [
        _attempt("local", "rejected", "quality", "quality 0.300 is below the threshold 0.85", 600),
        _attempt("zstd", "ok", ms=1),
    ],
}


def test_summary_of_a_mixed_run():
    samples = [
        _sample("warmup", "compress", latency_s=99.0, **LLM_OK),  # not counted
        _sample("latency", "compress", latency_s=1.0, **LLM_OK),
        _sample(
            "latency",
            "reconstruct",
            latency_s=0.4,
            backend="local",
            method="llm",
            exact=False,
            tokens={"completion": 40},
            attempts=[_attempt("local", "ok", ms=400)],
        ),
        _sample("latency", "compress", item="b", latency_s=3.0, **TO_ZSTD),
        _sample(
            "latency",
            "reconstruct",
            item="b",
            latency_s=0.001,
            backend="zstd",
            method="zstd",
            exact=True,
            attempts=[_attempt("zstd", "ok", ms=0.5)],
        ),
        _sample("latency", "compress", item="c", ok=False, error_kind="timeout", latency_s=600.0),
        _sample("throughput", "compress", latency_s=2.0, **LLM_OK),
        _sample("throughput", "compress", latency_s=2.0, **LLM_OK),
        _sample("throughput", "compress", item="b", latency_s=4.0, **TO_ZSTD),
    ]
    window = {"concurrency": 4, "duration_s": 60, "wall_s": 30.0, "started": 3, "t_start_s": 10.0}
    s = bb.summarize(samples, window, None, None)

    assert s["requests"] == {"total": 8, "ok": 7, "failed": 1, "errors": {"timeout": 1}}
    assert (
        s["compress"]["latency_s"]["n"] == 2
    )  # one client only; the failure has no latency figure
    assert s["compress"]["latency_s"]["p50"] == 2.0
    assert s["reconstruct"]["by_method"]["llm"]["p50"] == 0.4
    assert s["reconstruct"]["exact"] == 1
    assert s["throughput"]["ok"] == 3
    assert s["throughput"]["per_minute"] == 6.0
    assert s["backends"]["compress"] == {"local": 3, "zstd": 2}
    assert s["backends"]["all_zstd"] is False
    assert s["backends"]["llm_share"] == 0.6
    assert s["backends"]["passed_over"] == {"local:rejected:quality": 2}
    assert s["backends"]["with_fallback"] == 2
    assert s["quality"]["llm_scores"]["n"] == 5  # three accepted 0.9, two rejected 0.3
    assert s["quality"]["llm_scores"]["p50"] == 0.9
    assert s["quality"]["llm_accepted"] == 3
    assert s["quality"]["llm_rejected_for_quality"] == 2
    assert s["ratio"]["by_method"]["llm"]["p50"] == 10.0
    assert s["ratio"]["by_method"]["zstd"]["p50"] == 2.0
    assert s["tokens_per_s"]["reconstruct"]["local"]["p50"] == 100.0
    assert s["items"]["a"]["served_by"] == {"local": 1}
    assert s["items"]["c"]["failed"] == 1
    assert s["cost"] is None


def test_summary_says_when_everything_fell_back_to_zstd():
    samples = [
        _sample("latency", "compress", **TO_ZSTD),
        _sample("throughput", "compress", **TO_ZSTD),
    ]
    s = bb.summarize(
        samples, {"concurrency": 4, "duration_s": 10, "wall_s": 10, "started": 1}, None, None
    )
    assert s["backends"]["all_zstd"] is True
    assert s["backends"]["llm_share"] == 0.0
    assert s["quality"]["llm_accepted"] == 0
    assert s["reconstruct"]["by_method"] == {}


def test_summary_without_a_throughput_phase():
    s = bb.summarize([_sample("latency", "compress", **LLM_OK)], None, None, None)
    assert s["throughput"] is None


# --- corpus loading and bounds ------------------------------------------------------------


CORPUS = ROOT / "files" / "benchmark" / "corpus"


def test_corpus_is_ordered_short_first_across_kinds():
    items = bb.load_corpus(CORPUS)
    lengths = [i["length"] for i in items]
    assert lengths == sorted(lengths, key=bb.LENGTH_ORDER.__getitem__)
    kinds = {i["kind"] for i in items}
    assert {i["kind"] for i in items[: len(kinds)]} == kinds


def test_corpus_refuses_a_changed_file_and_an_unknown_id(tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    with pytest.raises(ValueError, match="unknown corpus items"):
        bb.load_corpus(copy, ["no-such-item"])
    assert [i["id"] for i in bb.load_corpus(copy, ["legal-short"])] == ["legal-short"]
    (copy / "legal-short.txt").write_text("We the People, edited\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sha256"):
        bb.load_corpus(copy)


def test_worst_case_covers_every_phase():
    opts = bb.parse_args(
        [
            "--url",
            "http://127.0.0.1:1",
            "--out",
            "x.json",
            "--latency-seconds",
            "100",
            "--duration",
            "50",
            "--timeout",
            "10",
        ]
    )
    assert bb.worst_case_seconds(opts) == 100 + 2 * 10 + 50 + 10 + 10 + 4 * 10
    opts.duration, opts.no_warmup = 0, True
    assert bb.worst_case_seconds(opts) == 100 + 2 * 10 + 4 * 10


@pytest.mark.parametrize(
    "bad", [["--concurrency", "0"], ["--timeout", "0"], ["--duration", "-1"], ["--rounds", "0"]]
)
def test_arguments_are_bounded(bad):
    with pytest.raises(SystemExit):
        bb.parse_args(["--url", "http://x", "--out", "x.json", *bad])


def test_output_is_json_serialisable_for_the_report(tmp_path):
    path = tmp_path / "out" / "r.json"
    bb.write_json(path, {"schema": bb.SCHEMA, "text": "鲁迅"})
    assert json.loads(path.read_text(encoding="utf-8"))["text"] == "鲁迅"
    assert not list(path.parent.glob("*.tmp"))
