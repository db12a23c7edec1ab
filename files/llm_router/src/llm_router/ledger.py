"""The cost ledger: tokens and cost per backend, durable in SQLite.

Durability: a request is written and committed before its response is sent, so an
acknowledged request is in the ledger even if the process is killed right after.

The database runs in WAL mode. With ``synchronous=NORMAL`` (the default) a commit appends the
transaction to the WAL file with write(2) and returns without fsync: the data is then in the
kernel's page cache, which outlives the process (SIGKILL, OOM kill, a crash) but not a power
cut or kernel panic, where the last commits before the previous checkpoint may be lost (the
database stays consistent). ``synchronous=FULL`` adds an fsync of the WAL on every commit and
survives power loss too.

All writes go through one thread that commits whatever has queued up in one transaction
("group commit"), so under load many requests share one commit (and, with FULL, one fsync),
and the event loop never blocks on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import queue
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: usage.estimated
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    backend TEXT,
    latency_ms REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL REFERENCES requests(request_id),
    day TEXT NOT NULL,
    backend TEXT NOT NULL,
    role TEXT NOT NULL,
    call TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    baseline_cost_usd REAL NOT NULL,
    estimated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_day ON requests(day);
CREATE INDEX IF NOT EXISTS usage_day ON usage(day);
"""
_BATCH = 256
_USAGE_SQL = (
    "SELECT day, backend, role, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),"
    " SUM(cost_usd), SUM(baseline_cost_usd),"
    " SUM(CASE WHEN estimated THEN prompt_tokens + completion_tokens ELSE 0 END)"
    " FROM usage {where}"
    " GROUP BY day, backend, role ORDER BY day, backend"
)


class LedgerError(Exception):
    pass


@dataclass(frozen=True)
class UsageRow:
    """One backend call that consumed tokens (or one zstd run, with zero tokens)."""

    backend: str
    role: str
    call: str  # compress | reconstruct | verify | chat
    accepted: bool  # this call's result was delivered; only these count in the baseline
    prompt_tokens: int
    completion_tokens: int
    price_per_1k_tokens: float
    estimated: bool = False  # the engine reported no usage; the counts are estimates

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_usd(self) -> float:
        return self.tokens * self.price_per_1k_tokens / 1000


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    ts: float  # unix seconds
    endpoint: str
    status: int
    backend: str | None
    latency_ms: float
    usage: tuple[UsageRow, ...] = field(default=())

    @property
    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.ts, dt.timezone.utc).strftime("%Y-%m-%d")


_Job = tuple[RequestRecord, asyncio.Future[None], asyncio.AbstractEventLoop]


class Ledger:
    def __init__(self, path: str, *, synchronous: str = "normal", baseline_price: float) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.baseline_price = baseline_price
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the database if needed and start the writer; raises LedgerError on failure."""
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
            if "estimated" not in columns:  # a version 1 ledger
                conn.execute("ALTER TABLE usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"cannot open ledger {self.path}: {exc}") from None
        self._thread = threading.Thread(target=self._writer, name="ledger-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            raise LedgerError(f"cannot open ledger {self.path}: {self._open_error}")

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    # --- writing -----------------------------------------------------------------------------

    async def record(self, rec: RequestRecord) -> None:
        """Return once ``rec`` is committed; raises LedgerError if it could not be."""
        if self._thread is None or not self._thread.is_alive():
            raise LedgerError("ledger is not open")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._jobs.put((rec, done, loop))
        await done

    def _writer(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    batch.append(job)
                self._commit(conn, batch)
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        error: BaseException | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for rec, _, _ in batch:
                _insert(conn, rec, self.baseline_price)
            conn.execute("COMMIT")
        except Exception as exc:  # any failure fails this batch, never the writer thread
            log.error("ledger commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = LedgerError(f"ledger write failed: {exc}")
        for _, done, loop in batch:
            loop.call_soon_threadsafe(_settle, done, error)

    # --- reading -----------------------------------------------------------------------------

    def report(self, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        """Totals, per backend and per day (UTC) between ``since`` and ``until`` inclusive."""
        where, args = _day_filter(since, until)  # fixed clauses; the dates are bound parameters
        conn = sqlite3.connect(Path(self.path).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            usage = conn.execute(_USAGE_SQL.format(where=where), args).fetchall()
            requests = conn.execute(
                f"SELECT day, backend, COUNT(*) FROM requests {where} GROUP BY day, backend",  # noqa: S608
                args,
            ).fetchall()
        finally:
            conn.close()
        return _build_report(usage, requests, self.baseline_price, since, until)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _insert(conn: sqlite3.Connection, rec: RequestRecord, baseline_price: float) -> None:
    day = rec.day
    conn.execute(
        "INSERT INTO requests (request_id, ts, day, endpoint, status, backend, latency_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (rec.request_id, rec.ts, day, rec.endpoint, rec.status, rec.backend, rec.latency_ms),
    )
    if rec.usage:
        conn.executemany(
            "INSERT INTO usage (request_id, day, backend, role, call, accepted, prompt_tokens,"
            " completion_tokens, cost_usd, baseline_cost_usd, estimated)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    rec.request_id,
                    day,
                    u.backend,
                    u.role,
                    u.call,
                    int(u.accepted),
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cost_usd,
                    baseline_cost(u, baseline_price),
                    int(u.estimated),
                )
                for u in rec.usage
            ],
        )


def baseline_cost(row: UsageRow, baseline_price: float) -> float:
    """What the delivered work would have cost all-cloud; rejected attempts have no baseline."""
    return row.tokens * baseline_price / 1000 if row.accepted else 0.0


def _day_filter(since: str | None, until: str | None) -> tuple[str, list[str]]:
    clauses, args = [], []
    if since:
        clauses.append("day >= ?")
        args.append(since)
    if until:
        clauses.append("day <= ?")
        args.append(until)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _empty() -> dict[str, Any]:
    return {
        "requests": 0,
        "calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "tokens": 0,
        "estimated_tokens": 0,
        "cost_usd": 0.0,
        "baseline_cost_usd": 0.0,
    }


def _add(
    acc: dict[str, Any], calls: int, p: int, c: int, cost: float, base: float, est: int
) -> None:
    acc["calls"] += calls
    acc["estimated_tokens"] += est
    acc["prompt_tokens"] += p
    acc["completion_tokens"] += c
    acc["tokens"] += p + c
    acc["cost_usd"] += cost
    acc["baseline_cost_usd"] += base


def _finish(acc: dict[str, Any]) -> dict[str, Any]:
    saved = acc["baseline_cost_usd"] - acc["cost_usd"]
    acc["cost_usd"] = round(acc["cost_usd"], 8)
    acc["baseline_cost_usd"] = round(acc["baseline_cost_usd"], 8)
    acc["savings_usd"] = round(saved, 8)
    base = acc["baseline_cost_usd"]
    acc["savings_pct"] = round(100 * saved / base, 2) if base > 0 else None
    return acc


def _build_report(
    usage: list[tuple[Any, ...]],
    requests: list[tuple[Any, ...]],
    baseline_price: float,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    totals = _empty()
    by_backend: dict[str, dict[str, Any]] = defaultdict(_empty)
    by_day: dict[str, dict[str, Any]] = defaultdict(lambda: {**_empty(), "by_backend": {}})
    roles: dict[str, str] = {}
    for day, backend, role, calls, p, c, cost, base, est in usage:
        roles[backend] = role
        for acc in (totals, by_backend[backend], by_day[day]):
            _add(acc, calls, p, c, cost, base, est)
        day_backends = by_day[day]["by_backend"]
        _add(day_backends.setdefault(backend, _empty()), calls, p, c, cost, base, est)
    for day, backend, count in requests:
        totals["requests"] += count
        by_day[day]["requests"] += count
        if backend is not None:
            by_backend[backend]["requests"] += count
            by_day[day]["by_backend"].setdefault(backend, _empty())["requests"] += count
    days = []
    for day in sorted(by_day):
        entry = _finish(by_day[day])
        entry["by_backend"] = {b: _finish(v) for b, v in sorted(entry["by_backend"].items())}
        days.append({"day": day, **entry})
    return {
        "currency": "USD",
        "baseline_price_per_1k_tokens": baseline_price,
        "since": since,
        "until": until,
        "totals": _finish(totals),
        "by_backend": {
            b: {"role": roles.get(b), **_finish(v)} for b, v in sorted(by_backend.items())
        },
        "by_day": days,
    }
