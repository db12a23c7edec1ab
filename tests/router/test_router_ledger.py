"""The SQLite cost ledger on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from llm_router.ledger import _SCHEMA, Ledger, LedgerError, RequestRecord, UsageRow

DAY1 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc).timestamp()
DAY2 = dt.datetime(2026, 3, 2, 23, 59, tzinfo=dt.timezone.utc).timestamp()


def row(backend: str, price: float, tokens: int, accepted: bool = True) -> UsageRow:
    role = {"local": "local", "cloud": "cloud"}.get(backend, "fallback")
    return UsageRow(backend, role, "compress", accepted, tokens // 2, tokens - tokens // 2, price)


def record(rid: str, ts: float, *rows: UsageRow) -> RequestRecord:
    backend = next((r.backend for r in rows if r.accepted), None)
    return RequestRecord(rid, ts, "compress", 200, backend, 1.0, rows)


@pytest.fixture
def ledger(tmp_path: Path):
    ledger = Ledger(str(tmp_path / "sub" / "ledger.sqlite3"), baseline_price=0.001)
    ledger.open()
    yield ledger
    ledger.close()


async def test_report_totals_per_backend_and_day(ledger: Ledger) -> None:
    await ledger.record(record("a", DAY1, row("local", 0.0001, 10_000)))
    await ledger.record(record("b", DAY1, row("local", 0.0001, 10_000)))
    # a rejected local attempt, then the cloud: the waste counts, the baseline only once
    await ledger.record(
        record("c", DAY2, row("local", 0.0001, 1_000, accepted=False), row("cloud", 0.001, 2_000))
    )
    await ledger.record(record("d", DAY2, row("zstd", 0.0, 0)))
    report = ledger.report()
    totals = report["totals"]
    assert totals["requests"] == 4
    assert totals["calls"] == 5
    assert totals["tokens"] == 23_000
    assert totals["cost_usd"] == pytest.approx(0.001 + 0.001 + 0.0001 + 0.002)
    assert totals["baseline_cost_usd"] == pytest.approx(0.01 + 0.01 + 0.002)
    assert totals["savings_usd"] == pytest.approx(0.022 - 0.0041)
    assert totals["savings_pct"] == pytest.approx(100 * (0.022 - 0.0041) / 0.022, abs=0.01)
    local = report["by_backend"]["local"]
    assert (local["role"], local["requests"], local["calls"]) == ("local", 2, 3)
    assert report["by_backend"]["zstd"]["savings_pct"] is None  # nothing to compare with
    assert [d["day"] for d in report["by_day"]] == ["2026-03-01", "2026-03-02"]
    assert report["by_day"][0]["by_backend"]["local"]["savings_pct"] == 90.0
    assert report["by_day"][1]["requests"] == 2

    only_day2 = ledger.report(since="2026-03-02")
    assert only_day2["totals"]["requests"] == 2
    only_day1 = ledger.report(until="2026-03-01")
    assert only_day1["totals"]["tokens"] == 20_000


async def test_concurrent_records_share_commits(ledger: Ledger) -> None:
    await asyncio.gather(
        *(ledger.record(record(f"r{i}", DAY1, row("local", 0.0001, 4))) for i in range(300))
    )
    assert ledger.report()["totals"]["requests"] == 300


async def test_wal_and_synchronous_settings(tmp_path: Path) -> None:
    for level, value in (("normal", 1), ("full", 2)):
        ledger = Ledger(str(tmp_path / f"{level}.db"), synchronous=level, baseline_price=0.001)
        ledger.open()
        conn = ledger._connect()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == value
        conn.close()
        await ledger.record(record("x", DAY1))
        ledger.close()


async def test_duplicate_request_id_fails_the_record(ledger: Ledger) -> None:
    await ledger.record(record("same", DAY1))
    with pytest.raises(LedgerError):
        await ledger.record(record("same", DAY1))
    await ledger.record(record("other", DAY1))  # the writer survives a failed batch
    assert ledger.report()["totals"]["requests"] == 2


def test_unwritable_location_fails_at_open(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = "/proc/llm-router/ledger.sqlite3"  # not creatable, even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "ledger.sqlite3")
    with pytest.raises(LedgerError, match="cannot open ledger"):
        Ledger(target, baseline_price=0.001).open()


async def test_records_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.sqlite3")
    first = Ledger(path, baseline_price=0.001)
    first.open()
    await first.record(record("kept", DAY1, row("local", 0.0001, 100)))
    first.close()
    second = Ledger(path, baseline_price=0.001)
    second.open()
    assert second.report()["totals"]["tokens"] == 100
    second.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


async def test_a_version_1_ledger_gains_the_estimated_column(tmp_path: Path) -> None:
    """A ledger written before token estimates were marked opens, and its rows read as exact."""
    path = str(tmp_path / "ledger.sqlite3")
    old_schema = _SCHEMA.replace(",\n    estimated INTEGER NOT NULL DEFAULT 0", "")
    assert "estimated" not in old_schema
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    ledger = Ledger(path, baseline_price=0.001)
    ledger.open()
    await ledger.record(record("est", DAY1, replace(row("local", 0.0001, 100), estimated=True)))
    await ledger.record(record("exact", DAY1, row("local", 0.0001, 40)))
    report = ledger.report()
    ledger.close()
    assert report["totals"]["tokens"] == 140
    assert report["totals"]["estimated_tokens"] == 100
    assert report["by_backend"]["local"]["estimated_tokens"] == 100
