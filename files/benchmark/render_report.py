#!/usr/bin/env python3
"""Render a box benchmark's JSON (box_benchmark.py) as a Markdown report and a PNG chart.

Runs on the controller: ``render_report.py RESULT.json --out-dir DIR`` writes
``DIR/report.md`` and ``DIR/benchmark.png`` and prints the plan's targets beside the
measured figures. The chart needs matplotlib (in the controller's requirements); without
it the report is still written and says that the chart is missing.

The verdicts compare figures with the plan's targets for the MI50. When the host's facts say
that the engine does not run on the GPU (tier ``cpu``, or ``accelerated: false``), the report
says in bold that its figures are not comparable with those targets.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCHEMA = "mi50-llm-stack/box-benchmark/1"

# The plan's targets on the MI50 (docs: brief.md) and the physical limit (facts.md).
TARGET_COMPRESS_S = 2.0
TARGET_RECONSTRUCT_S = 0.5
TARGET_PER_MINUTE = 100.0
TARGET_CONCURRENCY = 4
TARGET_RATIO = 30.0
TARGET_QUALITY = 0.85
TARGET_SAVINGS_PCT = 90.0
DECODE_LIMIT_TPS = 210.0  # 7B Q4_K_M is about 4.7 GB; HBM2 about 1 TB/s; one stream

NOT_COMPARABLE = "These figures are not comparable with the MI50 targets"
ALL_ZSTD = (
    "Every compression fell back to zstd: the ratio and reconstruction figures are zstd's; the "
    "model's own work shows only in its quality scores and tokens/s."
)
MET, MISSED, NA, INFO = "met", "missed", "n/a", "info"


# --- formatting ------------------------------------------------------------------------------


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def fmt_num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# --- what the figures mean -------------------------------------------------------------------


def comparability(context: dict[str, Any] | None) -> tuple[bool | None, str]:
    """(comparable, why): False when the facts say the engine does not use the GPU, None
    when there are no facts to tell."""
    facts = (context or {}).get("facts") or {}
    gpu = facts.get("gpu_backend") or {}
    engine = facts.get("inference") or {}
    if not gpu and not engine:
        return None, (
            "Comparability with the MI50 targets is unknown: the run carries no facts of the "
            "host (run it through playbooks/benchmark.yml)."
        )
    tier = gpu.get("tier") or engine.get("tier")
    accelerated = engine.get("accelerated")
    reasons = []
    if tier in (None, "", "cpu"):
        reasons.append(f"GPU tier {tier or 'unknown'}")
    if accelerated is not True:
        reasons.append(
            f"engine {engine.get('engine') or 'unknown'} accelerated: "
            f"{str(accelerated).lower() if accelerated is not None else 'unknown'}"
        )
    if reasons:
        return False, (
            f"{NOT_COMPARABLE}: the engine does not run on the GPU (" + ", ".join(reasons) + ")."
        )
    device = _get(gpu, "device", "name") or "unknown device"
    return True, f"The engine runs on the GPU (tier {tier}, {device})."


def _verdict(value: float | None, target: float, below: bool) -> str:
    if value is None:
        return NA
    return MET if (value < target if below else value > target) else MISSED


def local_backends(result: dict[str, Any]) -> list[str]:
    ready = _get(result, "router", "ready", "backends") or []
    names = [b.get("name") for b in ready if b.get("role") == "local"]
    return [n for n in names if n]


def decode_rate(result: dict[str, Any]) -> tuple[float | None, str]:
    """The median effective generation rate of the local engine: from reconstructions
    (one generation each) when there are any, else from compressions."""
    tps = _get(result, "summary", "tokens_per_s") or {}
    locals_ = local_backends(result)
    for op in ("reconstruct", "compress"):
        rates = tps.get(op) or {}
        for name in locals_ or sorted(rates):
            if name in rates and rates[name].get("p50") is not None:
                return rates[name]["p50"], f"{name}, {op}, n={rates[name]['n']}"
    return None, ""


def target_rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """The plan's targets beside the measured figures, with a verdict and a note each."""
    s = result.get("summary") or {}
    rows: list[dict[str, str]] = []

    def row(metric: str, target: str, measured: str, verdict: str, note: str = "") -> None:
        rows.append(
            {
                "metric": metric,
                "target": target,
                "measured": measured,
                "verdict": verdict,
                "note": note,
            }
        )

    comp = _get(s, "compress", "latency_s") or {}
    n_comp = comp.get("n") or 0
    for q in ("p50", "p95"):
        row(
            f"Compression latency {q}",
            "< 2 s",
            fmt_seconds(comp.get(q)),
            _verdict(comp.get(q), TARGET_COMPRESS_S, True),
            f"one client, n={n_comp}" if n_comp else "no successful compression",
        )

    llm_rec = _get(s, "reconstruct", "by_method", "llm") or {}
    zstd_rec = _get(s, "reconstruct", "by_method", "zstd") or {}
    for q in ("p50", "p95"):
        if llm_rec.get("n"):
            note = f"LLM envelopes, n={llm_rec['n']}"
        else:
            note = "no LLM envelope to reconstruct: every compression was served by zstd"
            if zstd_rec.get("n"):
                note += f" (zstd {q} {fmt_seconds(zstd_rec.get(q))})"
        row(
            f"Reconstruction latency {q}",
            "< 500 ms",
            fmt_seconds(llm_rec.get(q)),
            _verdict(llm_rec.get(q), TARGET_RECONSTRUCT_S, True),
            note,
        )

    thr = s.get("throughput") or {}
    per_minute = thr.get("per_minute")
    conc = thr.get("concurrency")
    note = ""
    if thr:
        note = f"{thr.get('ok', 0)} ok in {fmt_num(thr.get('wall_s'), 0)} s, {conc} clients"
        if conc != TARGET_CONCURRENCY:
            note += f" (the plan's concurrency is {TARGET_CONCURRENCY})"
    else:
        note = "throughput phase not run"
    row(
        "Throughput",
        f"> {TARGET_PER_MINUTE:.0f} compressions/min",
        fmt_num(per_minute, 1, "/min"),
        _verdict(per_minute, TARGET_PER_MINUTE, False),
        note,
    )

    served = _get(s, "ratio", "served") or {}
    llm_ratio = _get(s, "ratio", "by_method", "llm") or {}
    note = f"all served results, n={served.get('n') or 0}"
    if llm_ratio.get("n"):
        note += f"; LLM results alone {fmt_num(llm_ratio.get('p50'), 1, 'x')} (n={llm_ratio['n']})"
    elif served.get("n"):
        note += "; no LLM result (all zstd)"
    row(
        "Compression ratio (median)",
        f"> {TARGET_RATIO:.0f}x",
        fmt_num(served.get("p50"), 1, "x"),
        _verdict(served.get("p50"), TARGET_RATIO, False),
        note,
    )

    scores = _get(s, "quality", "llm_scores") or {}
    accepted = _get(s, "quality", "llm_accepted") or 0
    rejected = _get(s, "quality", "llm_rejected_for_quality") or 0
    if scores.get("n"):
        note = (
            f"router's verification of every LLM attempt, n={scores['n']}: "
            f"{accepted} accepted, {rejected} rejected for quality"
        )
    else:
        note = "no LLM attempt was scored (verification off, or no LLM answered)"
    row(
        "Quality score (median)",
        f"> {TARGET_QUALITY}",
        fmt_num(scores.get("p50"), 3),
        _verdict(scores.get("p50"), TARGET_QUALITY, False),
        note,
    )

    cost = _get(s, "cost", "totals") or {}
    pct = cost.get("savings_pct")
    if not s.get("cost"):
        note = "the ledger could not be read"
    elif pct is None:
        note = (
            f"no baseline: nothing was served by a priced LLM; the run spent "
            f"${fmt_num(cost.get('cost_usd'), 6)} on {cost.get('tokens', 0)} tokens"
        )
    else:
        note = (
            f"ledger delta: ${fmt_num(cost.get('cost_usd'), 6)} spent vs "
            f"${fmt_num(cost.get('baseline_cost_usd'), 6)} all-cloud"
        )
    row(
        "Cost savings",
        f"> {TARGET_SAVINGS_PCT:.0f}%",
        fmt_num(pct, 1, "%"),
        _verdict(pct, TARGET_SAVINGS_PCT, False),
        note,
    )

    rate, where = decode_rate(result)
    if rate is None:
        note = "no tokens/s available (no LLM generated text)"
    else:
        note = f"effective rate ({where}; includes prompt processing, so a lower bound)"
        if comparability(result.get("context"))[0] is True:
            note += f": {100 * rate / DECODE_LIMIT_TPS:.0f}% of the ceiling"
        else:
            note += "; the ceiling is for a 7B Q4_K_M on the MI50, not this engine"
    row(
        "Decode speed (physical limit)",
        f"<= ~{DECODE_LIMIT_TPS:.0f} tokens/s (7B Q4_K_M, ~4.7 GB at ~1 TB/s, one stream)",
        fmt_num(rate, 1, " tokens/s"),
        INFO if rate is not None else NA,
        note,
    )
    return rows


# --- text and Markdown -----------------------------------------------------------------------


def text_table(rows: Sequence[dict[str, str]]) -> str:
    """The target rows as a fixed-width table for a terminal (the playbook prints it)."""
    cols = ("metric", "target", "measured", "verdict")
    heads = {
        "metric": "metric",
        "target": "plan target",
        "measured": "measured",
        "verdict": "verdict",
    }
    short = [{**r, "target": r["target"].split(" (")[0]} for r in rows]
    widths = {c: max(len(heads[c]), *(len(r[c]) for r in short)) for c in cols}
    lines = ["  ".join(heads[c].ljust(widths[c]) for c in cols)]
    lines.append("  ".join("-" * widths[c] for c in cols))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in cols).rstrip() for r in short]
    return "\n".join(lines)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _verdict_md(verdict: str) -> str:
    return {MISSED: "**missed**", MET: "met"}.get(verdict, verdict)


def context_lines(result: dict[str, Any]) -> list[str]:
    context = result.get("context") or {}
    facts = context.get("facts") or {}
    gpu = facts.get("gpu_backend") or {}
    engine = facts.get("inference") or {}
    router = facts.get("llm_router") or {}
    device = gpu.get("device") or {}
    models = [m for m in _get(result, "router", "models", "data") or [] if m.get("id") != "auto"]
    host = context.get("host") or _get(result, "host", "hostname") or "unknown"
    lines = [
        f"- **Host**: {host} ({_get(result, 'host', 'platform') or '?'}, "
        f"{_get(result, 'host', 'cpus') or '?'} CPUs)",
        f"- **GPU tier**: {gpu.get('tier') or 'unknown'}"
        + (
            f", device {device.get('name')}" + (" (software)" if device.get("software") else "")
            if device.get("name")
            else ""
        )
        + (" (forced)" if gpu.get("forced") else ""),
        f"- **Engine**: {engine.get('engine') or 'unknown'} {engine.get('version') or ''}".rstrip()
        + (
            f", accelerated: {str(engine.get('accelerated')).lower()}"
            if "accelerated" in engine
            else ""
        )
        + (f", {engine.get('base_url')}" if engine.get("base_url") else ""),
        f"- **Model**: {engine.get('default_model') or 'unknown'}"
        + (
            ""
            if not models
            else "; router backends: "
            + ", ".join(f"{m.get('id')} = {m.get('root')}" for m in models)
        ),
        f"- **Router**: {router.get('url') or _get(result, 'router', 'url')}"
        + (f", version {router.get('version')}" if router.get("version") else "")
        + (", bearer token" if _get(result, "router", "auth") else ""),
    ]
    rejected = gpu.get("rejected") or {}
    if rejected:
        lines.append(
            "- **Tiers rejected**: " + "; ".join(f"{t}: {why}" for t, why in rejected.items())
        )
    p = result.get("parameters") or {}
    lines.append(
        f"- **Run**: {result.get('started_utc')} to {result.get('finished_utc')} "
        f"({fmt_num(result.get('elapsed_s'), 0)} s); quality `{p.get('quality')}`, verify "
        f"`{p.get('verify')}`, {p.get('rounds')} round(s) in at most {p.get('latency_seconds')} s, "
        f"{p.get('concurrency')} clients for {p.get('duration_s')} s, request timeout "
        f"{p.get('timeout_s')} s"
    )
    before = _get(result, "host", "loadavg")
    after = _get(result, "host_after", "loadavg")
    if before or after:
        lines.append(f"- **Load average** (1, 5, 15 min): {before} before, {after} after")
    if result.get("interrupted"):
        lines.append(
            f"- **Interrupted** by {result['interrupted']}: the figures cover part of the run"
        )
    return lines


def render_markdown(result: dict[str, Any], chart: str | None) -> str:
    s = result.get("summary") or {}
    context = result.get("context") or {}
    host = context.get("host") or _get(result, "host", "hostname") or "unknown host"
    comparable, why = comparability(context)
    out = [f"# Box benchmark: {host}, {result.get('started_utc')}", ""]
    if comparable is False or comparable is None:
        out += [f"**{why}**", ""]
    else:
        out += [why, ""]
    out += [*context_lines(result), ""]

    backends = s.get("backends") or {}
    if backends.get("all_zstd"):
        out += [f"**{ALL_ZSTD}** Why the others were passed over is listed under *Who served*.", ""]

    out += [
        "## The plan's targets",
        "",
        "| metric | plan target | measured | verdict | note |",
        "|---|---|---|---|---|",
    ]
    for r in target_rows(result):
        out.append(
            f"| {_md(r['metric'])} | {_md(r['target'])} | {_md(r['measured'])} | "
            f"{_verdict_md(r['verdict'])} | {_md(r['note'])} |"
        )
    out += [
        "",
        "Latency figures come from the one-client phase (no queueing); the throughput "
        "phase's own latencies are under *Throughput*. The quality score is the router's "
        "similarity score (chrF, word F1 and kept facts), not a semantic measure; see "
        "files/llm_router/README.md.",
        "",
    ]
    if chart:
        out += [f"![latency, throughput, ratio and quality]({chart})", ""]

    out += ["## Who served", "", "| | served by | requests |", "|---|---|---|"]
    for backend, n in sorted((backends.get("compress") or {}).items()):
        out.append(f"| compress | {_md(backend)} | {n} |")
    for backend, n in sorted((backends.get("reconstruct") or {}).items()):
        out.append(f"| reconstruct | {_md(backend)} | {n} |")
    passed = backends.get("passed_over") or {}
    out.append("")
    if passed:
        out += [
            f"{backends.get('with_fallback', 0)} compressions were passed over by at least one "
            "backend (backend: outcome: reason):",
            "",
        ]
        out += [f"- `{_md(k)}`: {v}" for k, v in passed.items()]
    else:
        out.append("No compression needed a fallback.")
    out.append("")

    items = s.get("items") or {}
    if items:
        out += [
            "## Per corpus item (one client)",
            "",
            "| item | bytes | served by | compress p50 | ratio | LLM scores | reconstruct p50 "
            "| exact | failed |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for item, d in items.items():
            served = ", ".join(f"{b} x{n}" for b, n in (d.get("served_by") or {}).items())
            scores = ", ".join(f"{x:.3f}" for x in d.get("scores") or []) or "-"
            exact = d.get("exact") or []
            out.append(
                f"| {_md(item)} | {d.get('bytes')} | "
                f"{_md(served) or '-'} | "
                f"{fmt_seconds(_get(d, 'compress_latency_s', 'p50'))} | "
                f"{fmt_num(_get(d, 'ratio', 'p50'), 2, 'x')} | {scores} | "
                f"{fmt_seconds(_get(d, 'reconstruct_latency_s', 'p50'))} | "
                f"{sum(exact)}/{len(exact)} | {d.get('failed', 0)} |"
            )
        out.append("")

    thr = s.get("throughput")
    if thr:
        lat = thr.get("latency_s") or {}
        out += [
            "## Throughput",
            "",
            f"{thr.get('concurrency')} clients compressed corpus items back to back; no request "
            f"started after {thr.get('duration_s')} s, and the phase ended when the last one "
            f"finished ({fmt_num(thr.get('wall_s'), 1)} s). Compressions per minute = ok "
            "compressions / that wall time.",
            "",
            f"- started {thr.get('started')}, ok {thr.get('ok')}, failed {thr.get('failed')}",
            f"- {fmt_num(thr.get('per_minute'), 2)} compressions/min, "
            f"{fmt_num(thr.get('completion_tokens_per_s'), 1)} completion tokens/s",
            f"- latency p50 {fmt_seconds(lat.get('p50'))}, p95 {fmt_seconds(lat.get('p95'))}",
            f"- served by: {thr.get('by_backend')}",
            "",
        ]

    cost = s.get("cost")
    if cost:
        out += [
            "## Cost (ledger delta over the run)",
            "",
            f"Baseline: all-cloud at ${cost.get('baseline_price_per_1k_tokens')} per 1K tokens. "
            "Other traffic to the router during the run is included.",
            "",
            "| backend | role | requests | calls | tokens | cost USD | baseline USD | savings |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rows = [*(cost.get("by_backend") or {}).items(), ("**total**", cost.get("totals") or {})]
        for name, d in rows:
            out.append(
                f"| {name} | {d.get('role', '')} | {d.get('requests')} | {d.get('calls')} | "
                f"{d.get('tokens')} | {fmt_num(d.get('cost_usd'), 6)} | "
                f"{fmt_num(d.get('baseline_cost_usd'), 6)} | "
                f"{fmt_num(d.get('savings_pct'), 1, '%')} |"
            )
        out.append("")

    req = s.get("requests") or {}
    if req.get("failed"):
        out += [
            "## Failed requests",
            "",
            f"{req['failed']} of {req['total']} requests failed: {req.get('errors')}",
            "",
        ]
        for sample in [x for x in result.get("samples") or [] if not x.get("ok")][:10]:
            out.append(
                f"- {sample.get('phase')} {sample.get('op')} {sample.get('item')}: "
                f"{_md(sample.get('error'))}"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --- chart -----------------------------------------------------------------------------------


def render_chart(result: dict[str, Any], path: Path) -> None:
    """Four panels: latency per operation and backend against the targets; compressions
    completed over time in the throughput phase against the target rate; the served
    compression ratio per corpus item against 30x; the LLM's verification scores per item
    against 0.85."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    samples = [x for x in result.get("samples") or [] if x.get("ok") and x.get("phase") != "warmup"]
    comparable, _ = comparability(result.get("context"))
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    (ax1, ax2), (ax3, ax4) = axes
    host = (result.get("context") or {}).get("host") or _get(result, "host", "hostname")
    title = f"Box benchmark: {host}, {result.get('started_utc')}"
    if comparable is False:
        title += "\nNOT comparable with the MI50 targets: the engine does not run on the GPU"
    fig.suptitle(title, fontsize=12, color="darkred" if comparable is False else "black")

    # 1. latency, one client
    groups: dict[str, list[float]] = {}
    for x in samples:
        if x.get("phase") == "latency":
            groups.setdefault(f"{x['op']}\n{x.get('backend')}/{x.get('method')}", []).append(
                x["latency_s"]
            )
    labels = sorted(groups)
    if labels:
        ax1.boxplot([groups[k] for k in labels], showfliers=False)
        ax1.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        for i, k in enumerate(labels, start=1):
            ax1.scatter(
                [i] * len(groups[k]), groups[k], s=12, alpha=0.6, color="tab:blue", zorder=3
            )
        ax1.set_yscale("log")
    ax1.axhline(TARGET_COMPRESS_S, color="tab:red", linestyle="--", label="compression target 2 s")
    ax1.axhline(
        TARGET_RECONSTRUCT_S,
        color="tab:orange",
        linestyle=":",
        label="reconstruction target 500 ms",
    )
    ax1.set_ylabel("seconds (log)")
    ax1.set_title("Latency, one client (operation, backend/method)")
    ax1.legend(fontsize=8, loc="best")

    # 2. throughput
    thr = [x for x in samples if x.get("phase") == "throughput" and x.get("op") == "compress"]
    window = _get(result, "summary", "throughput") or {}
    if thr:
        start = window.get("t_start_s") or 0
        ends = sorted(x["t_start_s"] + x["latency_s"] - start for x in thr)
        ax2.step([0, *ends], range(0, len(ends) + 1), where="post", label="compressions completed")
        span = max(ends[-1], window.get("duration_s") or 0)
        ax2.plot(
            [0, span],
            [0, TARGET_PER_MINUTE * span / 60],
            color="tab:red",
            linestyle="--",
            label=f"target {TARGET_PER_MINUTE:.0f}/min",
        )
        ax2.set_ylim(0, max(len(ends) * 1.3, 5))
        if window.get("duration_s"):
            ax2.axvline(
                window["duration_s"], color="grey", linestyle=":", label="no request starts after"
            )
        ax2.legend(fontsize=8, loc="upper left")
    else:
        ax2.text(0.5, 0.5, "throughput phase not run", ha="center", transform=ax2.transAxes)
    ax2.set_xlabel("seconds since the phase started")
    ax2.set_ylabel("compressions")
    ax2.set_title(
        f"Throughput, {window.get('concurrency', '?')} clients: "
        f"{fmt_num(window.get('per_minute'), 1)} compressions/min"
    )

    # 3. ratio per item, coloured by what served it
    items = list((_get(result, "summary", "items") or {}).keys())
    colours = {"llm": "tab:green", "zstd": "tab:grey"}
    comp = [x for x in samples if x.get("op") == "compress" and x.get("compressed_bytes")]
    for method in sorted({x.get("method") for x in comp}):
        xs, ys = [], []
        for x in comp:
            if x.get("method") == method and x.get("item") in items:
                xs.append(items.index(x["item"]))
                ys.append(x["original_bytes"] / x["compressed_bytes"])
        ax3.scatter(
            xs,
            ys,
            s=24,
            alpha=0.7,
            color=colours.get(method, "tab:purple"),
            label=f"served by {method}",
        )
    ax3.axhline(TARGET_RATIO, color="tab:red", linestyle="--", label=f"target {TARGET_RATIO:.0f}x")
    ax3.set_yscale("log")
    top = max(
        [TARGET_RATIO * 3] + [x["original_bytes"] / x["compressed_bytes"] * 1.5 for x in comp]
    )
    ax3.set_ylim(0.8, top)
    ax3.set_yticks([t for t in (1, 2, 5, 10, 30, 100, 300, 1000) if t <= top])
    ax3.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax3.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax3.set_xticks(range(len(items)), items, rotation=40, ha="right", fontsize=8)
    ax3.set_ylabel("original / compressed bytes (log)")
    ax3.set_title("Compression ratio per corpus item")
    ax3.legend(fontsize=8, loc="best")

    # 4. the LLM's verification scores per item, accepted or rejected
    for accepted, marker, label in (
        (True, "o", "LLM result accepted"),
        (False, "x", "LLM result rejected"),
    ):
        xs, ys = [], []
        for x in comp:
            if x.get("item") not in items:
                continue
            scores = x.get("llm_scores") or []
            for i, sc in enumerate(scores):
                kept = x.get("method") == "llm" and i == len(scores) - 1
                if kept == accepted:
                    xs.append(items.index(x["item"]))
                    ys.append(sc)
        if xs:
            ax4.scatter(xs, ys, s=30, marker=marker, alpha=0.8, label=label)
    ax4.axhline(
        TARGET_QUALITY, color="tab:orange", linestyle="--", label=f"target {TARGET_QUALITY}"
    )
    ax4.set_ylim(-0.05, 1.05)
    ax4.set_xticks(range(len(items)), items, rotation=40, ha="right", fontsize=8)
    ax4.set_ylabel("router's quality score")
    ax4.set_title("Quality of every verified LLM attempt")
    ax4.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- main ------------------------------------------------------------------------------------


def render(result_path: Path, out_dir: Path, chart: bool = True) -> tuple[Path, Path | None, str]:
    result = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("schema") != SCHEMA:
        raise ValueError(f"{result_path}: schema {result.get('schema')!r}, expected {SCHEMA!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    png: Path | None = out_dir / "benchmark.png"
    note = ""
    if chart:
        try:
            render_chart(result, png)  # type: ignore[arg-type]
        except ImportError:
            png, note = (
                None,
                "matplotlib is not installed: no chart (pip install -r requirements.txt)",
            )
    else:
        png = None
    report = out_dir / "report.md"
    report.write_text(render_markdown(result, png.name if png else None), encoding="utf-8")
    return report, png, note


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", type=Path, help="the JSON written by box_benchmark.py")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where report.md and benchmark.png go (default: beside the JSON)",
    )
    p.add_argument("--no-chart", action="store_true")
    args = p.parse_args(argv)
    out_dir = args.out_dir or args.result.parent
    try:
        report, png, note = render(args.result, out_dir, chart=not args.no_chart)
    except (OSError, ValueError) as exc:
        print(f"render_report: {exc}", file=sys.stderr)
        return 2
    result = json.loads(args.result.read_text(encoding="utf-8"))
    comparable, why = comparability(result.get("context"))
    if comparable is False:
        print(why.replace(NOT_COMPARABLE, NOT_COMPARABLE.upper()))
    elif comparable is None:
        print(why)
    if _get(result, "summary", "backends", "all_zstd"):
        head, _, rest = ALL_ZSTD.partition(":")
        print(f"{head.upper()}:{rest}")
    print(text_table(target_rows(result)))
    print(f"report: {report}")
    print(f"chart: {png}" if png else f"chart: none ({note or 'disabled'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
