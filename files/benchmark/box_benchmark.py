#!/usr/bin/env python3
"""Measure the LLM router on the box against the plan's targets, on a fixed corpus.

Runs ON the inference node with the system ``python3`` (3.10+), standard library only: it
must not depend on the router's virtualenv. It talks to the router over HTTP (``--url``,
the ``url`` of /etc/ansible/facts.d/llm_router.fact) with the bearer token from
``$LLM_ROUTER_TOKEN`` when the router wants one, and measures in four phases:

1. **warm-up**: one compression of a sentence outside the corpus (loads the model; not
   counted);
2. **latency**: one client, one request at a time, every corpus item compressed and its
   envelope reconstructed, ``--rounds`` times: compression and reconstruction latency,
   compression ratio, the router's verification score, who served each request and why
   others were passed over, effective tokens per second;
3. **throughput**: ``--concurrency`` clients compressing corpus items back to back for
   ``--duration`` seconds: compressions per minute;
4. **cost**: the router's cost ledger (``GET /v1/cost``) before and after, and the delta.

Every loop is bounded in count and in time: the latency phase stops starting requests after
``--latency-seconds`` or ``--max-requests``, the throughput phase after ``--duration`` or
``--max-requests``, and every request gives up after ``--timeout`` seconds. The worst case is
printed at the start. SIGINT/SIGTERM stop the run once the requests in flight are answered,
and it still writes what was measured.

Output: one JSON file (``--out``), ``"schema": "mi50-llm-stack/box-benchmark/1"``, with
``parameters``, ``corpus`` (ids, sizes, SHA-256), ``context`` (the host's facts, from
``--context``), ``host``, ``router`` (its /readyz and /v1/models answers), ``cost`` (the
ledger before and after), ``samples`` (one per request: phase, operation, item, latency,
backend, method, sizes, quality, tokens, every attempt; in the latency phase also what the
model wrote) and ``summary`` (what render_report.py shows). The exit code is 0 whenever the
run completed, targets met or not: a benchmark measures, it does not assert. It is 2 when the
benchmark cannot run at all (router unreachable, token refused, corpus broken).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import math
import os
import platform
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCHEMA = "mi50-llm-stack/box-benchmark/1"
HERE = Path(__file__).resolve().parent
LENGTH_ORDER = {"short": 0, "medium": 1, "long": 2}
# Loads the model before anything is measured; not a corpus text, so that no measured prompt
# is already in the engine's prompt cache.
_WARMUP_TEXT = "The benchmark sends this sentence first, so that the engine loads its model."
WARMUP_ITEM = {
    "id": "warmup",
    "kind": "warmup",
    "length": "short",
    "text": _WARMUP_TEXT,
    "bytes": len(_WARMUP_TEXT.encode("utf-8")),
}

# The router's own wording when verification rejects an LLM result (compression.py):
# "quality 0.612 is below the threshold 0.85". The score of a rejected attempt is only in
# that text; a unit test checks the router still words it this way.
REJECTED_SCORE = re.compile(r"quality (\d+(?:\.\d+)?) is below the threshold")


class Stop:
    """Set by SIGINT/SIGTERM: no new request starts; what was measured is still written."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


# --- statistics (pure) -----------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (the
    usual definition, numpy's default); None for no values."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    pos = (len(data) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def describe(values: Iterable[float | None]) -> dict[str, Any]:
    """n, p50, p95, mean, min and max of the values that are not None."""
    data = [float(v) for v in values if v is not None]
    if not data:
        return {"n": 0, "p50": None, "p95": None, "mean": None, "min": None, "max": None}
    return {
        "n": len(data),
        "p50": _round(percentile(data, 50)),
        "p95": _round(percentile(data, 95)),
        "mean": _round(sum(data) / len(data)),
        "min": _round(min(data)),
        "max": _round(max(data)),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def llm_scores(sample: dict[str, Any]) -> list[float]:
    """Every verification score of an LLM attempt in one compression: the accepted result's
    score and the scores of attempts rejected for quality (read from the attempt's detail)."""
    scores = []
    for attempt in sample.get("attempts") or []:
        if attempt.get("outcome") == "rejected" and attempt.get("reason") == "quality":
            found = REJECTED_SCORE.search(attempt.get("detail", ""))
            if found:
                scores.append(float(found.group(1)))
    quality = sample.get("quality") or {}
    if (
        sample.get("method") == "llm"
        and quality.get("verified")
        and quality.get("score") is not None
    ):
        scores.append(float(quality["score"]))
    return scores


def passed_over(sample: dict[str, Any]) -> list[str]:
    """'backend:outcome:reason' for every attempt that did not serve the request."""
    return [
        f"{a.get('backend')}:{a.get('outcome')}:{a.get('reason', '')}"
        for a in sample.get("attempts") or []
        if a.get("outcome") != "ok"
    ]


def tokens_per_second(sample: dict[str, Any]) -> tuple[str, float] | None:
    """(backend, rate): the completion tokens of a request over the time its LLM calls took,
    accepted or rejected alike (a rejected compression still shows how fast the model
    generates). It includes prompt processing, so it is a lower bound of decode speed. None
    when no LLM produced tokens, or when several did (the tokens are not split per backend)."""
    if not sample.get("ok"):
        return None
    completion = (sample.get("tokens") or {}).get("completion") or 0
    llm = [
        a
        for a in sample.get("attempts") or []
        if a.get("outcome") in ("ok", "rejected")
        and a.get("latency_ms")
        and not (a.get("outcome") == "ok" and sample.get("method") == "zstd")
    ]
    backends = {a.get("backend") for a in llm}
    seconds = sum(a["latency_ms"] for a in llm) / 1000
    if completion <= 0 or seconds <= 0 or len(backends) != 1:
        return None
    return str(backends.pop()), completion / seconds


def _tps_by_backend(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rates: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        found = tokens_per_second(s)
        if found:
            rates[found[0]].append(found[1])
    return {backend: describe(values) for backend, values in sorted(rates.items())}


def _ok(samples: Iterable[dict[str, Any]], phase: str, op: str) -> list[dict[str, Any]]:
    return [s for s in samples if s["phase"] == phase and s["op"] == op and s["ok"]]


def _group(samples: Iterable[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        groups[str(s.get(key))].append(s)
    return dict(sorted(groups.items()))


def ratio_stats(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-request ratios (original bytes / compressed payload bytes) and the aggregate ratio
    of all bytes in over all bytes out."""
    ratios = [
        s["original_bytes"] / s["compressed_bytes"]
        for s in samples
        if s.get("original_bytes") and s.get("compressed_bytes")
    ]
    total_in = sum(s.get("original_bytes") or 0 for s in samples if s.get("compressed_bytes"))
    total_out = sum(s.get("compressed_bytes") or 0 for s in samples)
    return {**describe(ratios), "aggregate": _round(total_in / total_out) if total_out else None}


def cost_delta(
    before: dict[str, Any] | None, after: dict[str, Any] | None
) -> dict[str, Any] | None:
    """What the run added to the ledger: totals and per backend, and the savings of that delta
    against the all-cloud baseline (None when the delta has no baseline cost: zstd only)."""
    if not before or not after:
        return None
    fields = (
        "requests",
        "calls",
        "prompt_tokens",
        "completion_tokens",
        "tokens",
        "cost_usd",
        "baseline_cost_usd",
    )

    def minus(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = {f: (a.get(f) or 0) - (b.get(f) or 0) for f in fields}
        out["cost_usd"] = round(out["cost_usd"], 8)
        out["baseline_cost_usd"] = round(out["baseline_cost_usd"], 8)
        out["savings_usd"] = round(out["baseline_cost_usd"] - out["cost_usd"], 8)
        base = out["baseline_cost_usd"]
        out["savings_pct"] = round(100 * out["savings_usd"] / base, 2) if base > 0 else None
        return out

    totals = minus(after.get("totals", {}), before.get("totals", {}))
    by_backend = {}
    names = set(after.get("by_backend", {})) | set(before.get("by_backend", {}))
    for name in sorted(names):
        a = after.get("by_backend", {}).get(name, {})
        b = before.get("by_backend", {}).get(name, {})
        delta = minus(a, b)
        if any(delta[f] for f in ("requests", "calls", "tokens")):
            by_backend[name] = {"role": a.get("role") or b.get("role"), **delta}
    return {
        "baseline_price_per_1k_tokens": after.get("baseline_price_per_1k_tokens"),
        "totals": totals,
        "by_backend": by_backend,
    }


def summarize(
    samples: Sequence[dict[str, Any]],
    throughput_window: dict[str, Any] | None,
    cost_before: dict[str, Any] | None,
    cost_after: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything the report needs, from the raw samples alone (pure)."""
    counted = [s for s in samples if s["phase"] != "warmup"]
    failed = [s for s in counted if not s["ok"]]
    lat_c = _ok(samples, "latency", "compress")
    lat_r = _ok(samples, "latency", "reconstruct")
    thr_c = _ok(samples, "throughput", "compress")
    all_c = lat_c + thr_c

    # Who served: a run where everything fell back to zstd must show as such.
    served = Counter(s.get("backend") for s in all_c)
    methods = Counter(s.get("method") for s in all_c)
    reasons = Counter(r for s in all_c for r in passed_over(s))
    with_fallback = sum(1 for s in all_c if passed_over(s))

    scores = [score for s in all_c for score in llm_scores(s)]
    accepted = [s for s in all_c if s.get("method") == "llm"]
    rejected_quality = sum(
        1 for s in all_c for r in passed_over(s) if r.endswith(":rejected:quality")
    )

    throughput = None
    if throughput_window is not None:
        wall = throughput_window.get("wall_s") or 0
        tokens = sum((s.get("tokens") or {}).get("completion") or 0 for s in thr_c)
        throughput = {
            **throughput_window,
            "ok": len(thr_c),
            "failed": sum(1 for s in counted if s["phase"] == "throughput" and not s["ok"]),
            "per_minute": _round(len(thr_c) * 60 / wall, 2) if wall > 0 else None,
            "completion_tokens_per_s": _round(tokens / wall, 2) if wall > 0 else None,
            "latency_s": describe(s["latency_s"] for s in thr_c),
            "by_backend": dict(Counter(s.get("backend") for s in thr_c)),
        }

    per_item = {}
    latency = [s for s in counted if s["phase"] == "latency"]
    order = list(dict.fromkeys(s["item"] for s in latency))  # the corpus order: short first
    groups = _group(latency, "item")
    for item in order:
        group = groups[item]
        comp = [s for s in group if s["op"] == "compress" and s["ok"]]
        rec = [s for s in group if s["op"] == "reconstruct" and s["ok"]]
        first = group[0]
        per_item[item] = {
            "kind": first.get("kind"),
            "length": first.get("length"),
            "bytes": first.get("original_bytes_sent"),
            "compress_latency_s": describe(s["latency_s"] for s in comp),
            "reconstruct_latency_s": describe(s["latency_s"] for s in rec),
            "served_by": dict(Counter(s.get("backend") for s in comp)),
            "ratio": ratio_stats(comp),
            "scores": [sc for s in comp for sc in llm_scores(s)],
            "exact": [bool(s.get("exact")) for s in rec],
            "failed": sum(1 for s in group if not s["ok"]),
        }

    return {
        "requests": {
            "total": len(counted),
            "ok": len(counted) - len(failed),
            "failed": len(failed),
            "errors": dict(Counter(s.get("error_kind") or "error" for s in failed)),
        },
        "compress": {
            "latency_s": describe(s["latency_s"] for s in lat_c),
            "by_backend": {
                b: describe(s["latency_s"] for s in g) for b, g in _group(lat_c, "backend").items()
            },
            "by_length": {
                k: describe(s["latency_s"] for s in g) for k, g in _group(lat_c, "length").items()
            },
        },
        "reconstruct": {
            "latency_s": describe(s["latency_s"] for s in lat_r),
            "by_method": {
                m: describe(s["latency_s"] for s in g) for m, g in _group(lat_r, "method").items()
            },
            "by_backend": {
                b: describe(s["latency_s"] for s in g) for b, g in _group(lat_r, "backend").items()
            },
            "exact": sum(1 for s in lat_r if s.get("exact")),
        },
        "throughput": throughput,
        "ratio": {
            "served": ratio_stats(all_c),
            "by_method": {m: ratio_stats(g) for m, g in _group(all_c, "method").items()},
        },
        "quality": {
            "llm_scores": describe(scores),
            "llm_accepted": len(accepted),
            "llm_rejected_for_quality": rejected_quality,
            "served": describe((s.get("quality") or {}).get("score") for s in all_c),
            "threshold": next(((s.get("quality") or {}).get("threshold") for s in all_c), None),
        },
        "backends": {
            "compress": dict(served),
            "compress_methods": dict(methods),
            "reconstruct": dict(Counter(s.get("backend") for s in lat_r)),
            "llm_share": _round(methods.get("llm", 0) / len(all_c)) if all_c else None,
            "all_zstd": bool(all_c) and set(methods) == {"zstd"},
            "with_fallback": with_fallback,
            "passed_over": dict(reasons.most_common()),
        },
        "tokens_per_s": {
            "compress": _tps_by_backend(lat_c),
            "reconstruct": _tps_by_backend(lat_r),
        },
        "cost": cost_delta(cost_before, cost_after),
        "items": per_item,
    }


# --- corpus ----------------------------------------------------------------------------------


def load_corpus(directory: Path, only: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The manifest's items with their text, checked against the recorded SHA-256, ordered so
    that a time-bounded run covers every kind at the short length first."""
    manifest = json.loads((directory / "MANIFEST.json").read_text(encoding="utf-8"))
    items = []
    for entry in manifest["items"]:
        if only and entry["id"] not in only:
            continue
        data = (directory / entry["file"]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise ValueError(f"{entry['file']}: sha256 {digest} does not match the manifest")
        items.append({**entry, "text": data.decode("utf-8")})
    unknown = set(only) - {i["id"] for i in items}
    if unknown:
        raise ValueError("unknown corpus items: " + ", ".join(sorted(unknown)))
    kinds = sorted({i["kind"] for i in items})
    items.sort(key=lambda i: (LENGTH_ORDER.get(i["length"], 9), kinds.index(i["kind"]), i["id"]))
    return items


# --- HTTP ------------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


class Client:
    """One keep-alive HTTP/1.1 connection per client (per thread)."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url must be http(s)://host[:port], not {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.scheme == "https":
                self.conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        for retry in (True, False):
            conn = self._connect()
            try:
                conn.request(method, self.base + path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except TimeoutError:
                self.close()
                raise HttpError("timeout", f"no answer within {self.timeout:g} s") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A keep-alive connection the server closed while idle: retry once, fresh.
                self.close()
                if not retry:
                    raise HttpError("connection", f"{type(exc).__name__}: {exc}") from None
            except OSError as exc:
                self.close()
                raise HttpError("connection", f"{type(exc).__name__}: {exc}") from None
        if response.getheader("connection", "").lower() == "close":
            self.close()
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = {"raw": raw[:200].decode("utf-8", "replace")}
        if response.status != 200:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            code = error.get("code") if isinstance(error, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            raise HttpError(
                f"http_{response.status}" + (f"_{code}" if code else ""),
                f"HTTP {response.status}: {message or payload}",
                response.status,
            )
        return payload


# --- one request -----------------------------------------------------------------------------


def compress_sample(
    client: Client,
    item: dict[str, Any],
    opts: argparse.Namespace,
    phase: str,
    t0: float,
    marker: str = "",
    **extra: Any,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Compress one corpus item; returns the sample and the envelope (None on failure).

    ``marker`` becomes the text's first line when the same item is sent again: engines keep
    the prompts they processed (llama.cpp picks the slot with the longest common prefix), so
    an identical repeat would skip prompt processing, which real traffic of distinct texts
    never does. With the marker only the system prompt is shared, as in real use."""
    text = f"{marker}\n{item['text']}" if marker else item["text"]
    body: dict[str, Any] = {"text": text, "quality": opts.quality}
    if opts.verify != "auto":
        body["verify"] = opts.verify == "true"
    if opts.backend:
        body["backend"] = opts.backend
    sample = _base_sample(item, "compress", phase, t0, **extra)
    if marker:
        sample["marker"] = marker
    started = time.monotonic()
    try:
        reply = client.request("POST", "/v1/compress", body)
    except HttpError as exc:
        return _failed(sample, exc, started), None
    sample["latency_s"] = round(time.monotonic() - started, 4)
    sizes = reply.get("sizes") or {}
    envelope = reply.get("envelope")
    sample.update(
        ok=True,
        status=200,
        request_id=reply.get("request_id"),
        backend=reply.get("backend"),
        method=reply.get("method"),
        model=reply.get("model"),
        original_bytes=sizes.get("original_bytes"),
        compressed_bytes=sizes.get("compressed_bytes"),
        ratio=reply.get("ratio"),
        quality=reply.get("quality"),
        tokens=reply.get("tokens"),
        cost_usd=reply.get("cost_usd"),
        server_latency_ms=reply.get("latency_ms"),
        attempts=reply.get("attempts"),
    )
    sample["llm_scores"] = llm_scores(sample)
    if phase == "latency" and reply.get("method") == "llm" and envelope:
        sample["payload"] = envelope.get("payload")  # what the model wrote, for the reader
    return sample, envelope


def reconstruct_sample(
    client: Client,
    item: dict[str, Any],
    envelope: dict[str, Any],
    phase: str,
    t0: float,
    **extra: Any,
) -> dict[str, Any]:
    sample = _base_sample(item, "reconstruct", phase, t0, **extra)
    sample["method"] = envelope.get("method")
    started = time.monotonic()
    try:
        reply = client.request("POST", "/v1/reconstruct", {"envelope": envelope})
    except HttpError as exc:
        return _failed(sample, exc, started)
    sample["latency_s"] = round(time.monotonic() - started, 4)
    sizes = reply.get("sizes") or {}
    sample.update(
        ok=True,
        status=200,
        request_id=reply.get("request_id"),
        backend=reply.get("backend"),
        method=reply.get("method"),
        model=reply.get("model"),
        exact=reply.get("exact"),
        original_bytes=sizes.get("original_bytes"),
        compressed_bytes=sizes.get("compressed_bytes"),
        reconstructed_bytes=sizes.get("reconstructed_bytes"),
        tokens=reply.get("tokens"),
        cost_usd=reply.get("cost_usd"),
        server_latency_ms=reply.get("latency_ms"),
        attempts=reply.get("attempts"),
    )
    if reply.get("method") == "llm":
        sample["text"] = reply.get("text")  # the reconstruction, for the reader
    return sample


def _base_sample(
    item: dict[str, Any], op: str, phase: str, t0: float, **extra: Any
) -> dict[str, Any]:
    return {
        "phase": phase,
        "op": op,
        "item": item["id"],
        "kind": item["kind"],
        "length": item["length"],
        "original_bytes_sent": item["bytes"],
        "t_start_s": round(time.monotonic() - t0, 4),
        "ok": False,
        **extra,
    }


def _failed(sample: dict[str, Any], exc: HttpError, started: float) -> dict[str, Any]:
    sample.update(
        latency_s=round(time.monotonic() - started, 4),
        status=exc.status,
        error_kind=exc.kind,
        error=exc.detail[:500],
    )
    return sample


# --- phases ----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _line(s: dict[str, Any]) -> str:
    if not s["ok"]:
        return (
            f"{s['op']:11} {s['item']:20} FAILED {s.get('error_kind')} after {s['latency_s']:.2f} s"
        )
    extra = ""
    if s["op"] == "compress":
        score = (s.get("quality") or {}).get("score")
        extra = f" ratio {s.get('ratio')} score {score}"
        if passed_over(s):
            extra += " passed over " + ",".join(passed_over(s))
    else:
        extra = f" exact {s.get('exact')}"
    served = f"{s.get('backend')}/{s.get('method')}"
    return f"{s['op']:11} {s['item']:20} {served} {s['latency_s']:.2f} s{extra}"


def latency_phase(
    client: Client, items: list[dict[str, Any]], opts: argparse.Namespace, t0: float, stop: Stop
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + opts.latency_seconds
    for rnd in range(1, opts.rounds + 1):
        for item in items:
            if stop or time.monotonic() >= deadline or len(samples) + 2 > opts.max_requests:
                if not stop:
                    log(f"[latency] budget reached after {len(samples)} requests")
                return samples
            marker = f"({rnd})" if rnd > 1 else ""
            sample, envelope = compress_sample(client, item, opts, "latency", t0, marker, round=rnd)
            samples.append(sample)
            log(f"[latency] {_line(sample)}")
            if envelope is not None and not stop:
                rec = reconstruct_sample(client, item, envelope, "latency", t0, round=rnd)
                samples.append(rec)
                log(f"[latency] {_line(rec)}")
    return samples


def throughput_phase(
    items: list[dict[str, Any]], opts: argparse.Namespace, token: str, t0: float, stop: Stop
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``concurrency`` clients compress items back to back; none starts a request after the
    window closes or the request budget is spent, and each request is bounded by the timeout."""
    lock = threading.Lock()
    samples: list[dict[str, Any]] = []
    state = {"next": 0, "started": 0}
    started_at = time.monotonic()
    window_end = started_at + opts.duration

    def take() -> tuple[dict[str, Any], int] | None:
        with lock:
            if stop or time.monotonic() >= window_end or state["started"] >= opts.max_requests:
                return None
            item = items[state["next"] % len(items)]
            state["next"] += 1
            state["started"] += 1
            return item, state["started"]

    def worker(number: int) -> None:
        client = Client(opts.url, token, opts.timeout)
        try:
            while (taken := take()) is not None:
                item, count = taken
                sample, _ = compress_sample(
                    client, item, opts, "throughput", t0, f"#{count}", worker=number
                )
                with lock:
                    samples.append(sample)
                log(f"[throughput w{number}] {_line(sample)}")
        finally:
            client.close()

    threads = [
        threading.Thread(target=worker, args=(n,), daemon=True) for n in range(opts.concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ended = time.monotonic()
    window = {
        "concurrency": opts.concurrency,
        "duration_s": opts.duration,
        "wall_s": round(ended - started_at, 3),
        "started": state["started"],
        "t_start_s": round(started_at - t0, 4),
    }
    samples.sort(key=lambda s: s["t_start_s"])
    return samples, window


# --- the run ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the router, e.g. http://127.0.0.1:8090")
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    p.add_argument(
        "--corpus", type=Path, default=HERE / "corpus", help="directory with MANIFEST.json"
    )
    p.add_argument("--items", default="", help="comma-separated corpus item ids (default: all)")
    p.add_argument(
        "--context", type=Path, help="JSON with the host's facts, embedded in the output"
    )
    p.add_argument(
        "--token-env", default="LLM_ROUTER_TOKEN", help="variable holding the bearer token"
    )
    p.add_argument("--quality", choices=("low", "normal", "high"), default="normal")
    p.add_argument(
        "--verify",
        choices=("true", "false", "auto"),
        default="true",
        help="ask the router to verify each LLM compression (default true: every "
        "LLM result gets a quality score); auto leaves it to the router's policy",
    )
    p.add_argument("--backend", default="", help="backend to try first (default: routing order)")
    p.add_argument("--rounds", type=int, default=1, help="latency phase: passes over the corpus")
    p.add_argument(
        "--latency-seconds",
        type=float,
        default=600,
        help="latency phase: no request starts after this many seconds",
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="throughput phase: concurrent clients"
    )
    p.add_argument(
        "--duration",
        type=float,
        default=60,
        help="throughput phase: no request starts after this many seconds (0 skips it)",
    )
    p.add_argument(
        "--max-requests", type=int, default=400, help="per phase, at most this many requests"
    )
    p.add_argument(
        "--timeout", type=float, default=600, help="seconds before one request is given up"
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the uncounted first compression")
    opts = p.parse_args(argv)
    for name in ("rounds", "concurrency", "max_requests"):
        if getattr(opts, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("latency_seconds", "timeout"):
        if getattr(opts, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if opts.duration < 0:
        p.error("--duration must be >= 0")
    return opts


def worst_case_seconds(opts: argparse.Namespace) -> float:
    """The longest the run can take: each phase's window plus one request timeout for what is
    still in flight when it closes, plus the warm-up and the four small ledger/status calls."""
    total = opts.latency_seconds + 2 * opts.timeout  # the last compression and its reconstruction
    if opts.duration > 0:
        total += opts.duration + opts.timeout
    if not opts.no_warmup:
        total += opts.timeout
    return total + 4 * min(opts.timeout, 30)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return info


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run(opts: argparse.Namespace) -> int:
    token = os.environ.get(opts.token_env, "")
    try:
        items = load_corpus(opts.corpus, [i for i in opts.items.split(",") if i])
    except (OSError, ValueError, KeyError) as exc:
        log(f"box_benchmark: the corpus at {opts.corpus} is unusable: {exc}")
        return 2
    if not items:
        log("box_benchmark: no corpus items selected")
        return 2
    context = json.loads(opts.context.read_text(encoding="utf-8")) if opts.context else {}

    stop = Stop()
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: stop.set(signal.Signals(signum).name))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return measure(opts, token, items, context, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def measure(
    opts: argparse.Namespace,
    token: str,
    items: list[dict[str, Any]],
    context: dict[str, Any],
    stop: Stop,
) -> int:
    client = Client(opts.url, token, min(opts.timeout, 30))
    try:
        ready = client.request("GET", "/readyz")
    except HttpError as exc:
        if exc.status == 503:
            ready = {"ready": False, "detail": exc.detail}
        else:
            log(f"box_benchmark: the router at {opts.url} does not answer: {exc.detail}")
            return 2
    try:
        models = client.request("GET", "/v1/models")
        cost_before = client.request("GET", "/v1/cost")
    except HttpError as exc:
        hint = (
            f" (set ${opts.token_env} to a token the router accepts)" if exc.status == 401 else ""
        )
        log(f"box_benchmark: the router at {opts.url} refused the benchmark: {exc.detail}{hint}")
        return 2
    client.close()
    client.timeout = opts.timeout

    bound = worst_case_seconds(opts)
    log(
        f"box_benchmark: {len(items)} items, latency phase <= {opts.latency_seconds:g} s x "
        f"{opts.rounds} round(s), throughput {opts.concurrency} clients for {opts.duration:g} s; "
        f"worst case {bound:.0f} s"
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started_utc": utc_now(),
        "router": {"url": opts.url, "auth": bool(token), "ready": ready, "models": models},
        "parameters": {
            "quality": opts.quality,
            "verify": opts.verify,
            "backend": opts.backend or None,
            "rounds": opts.rounds,
            "latency_seconds": opts.latency_seconds,
            "concurrency": opts.concurrency,
            "duration_s": opts.duration,
            "max_requests": opts.max_requests,
            "timeout_s": opts.timeout,
            "warmup": not opts.no_warmup,
            "worst_case_s": bound,
        },
        "corpus": [
            {
                k: i[k]
                for k in ("id", "kind", "length", "language", "title", "chars", "bytes", "sha256")
            }
            for i in items
        ],
        "context": context,
        "host": host_info(),
    }
    t0 = time.monotonic()
    samples: list[dict[str, Any]] = []
    window = None
    try:
        if not opts.no_warmup:
            sample, _ = compress_sample(client, WARMUP_ITEM, opts, "warmup", t0)
            samples.append(sample)
            log(f"[warmup] {_line(sample)}")
        if not stop:
            samples += latency_phase(client, items, opts, t0, stop)
        client.close()
        if opts.duration > 0 and not stop:
            thr, window = throughput_phase(items, opts, token, t0, stop)
            samples += thr
    finally:
        client.close()
    cost_after = None
    try:
        cost_after = Client(opts.url, token, min(opts.timeout, 30)).request("GET", "/v1/cost")
    except HttpError as exc:
        log(f"box_benchmark: could not read the ledger after the run: {exc.detail}")
    result.update(
        finished_utc=utc_now(),
        elapsed_s=round(time.monotonic() - t0, 3),
        interrupted=stop.reason or None,
        host_after={"loadavg": host_info().get("loadavg")},
        cost={"before": cost_before, "after": cost_after},
        samples=samples,
        summary=summarize(samples, window, cost_before, cost_after),
    )
    write_json(opts.out, result)
    s = result["summary"]
    log(
        f"box_benchmark: {s['requests']['ok']}/{s['requests']['total']} requests ok in "
        f"{result['elapsed_s']:.0f} s; compress p50 {s['compress']['latency_s']['p50']} s, "
        f"served by {s['backends']['compress']}; wrote {opts.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
