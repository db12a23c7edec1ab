"""The router service: backends, routing, ledger and metrics wired together, without HTTP.

Each public coroutine serves one API call and returns the response body as a dict; the
ledger commit happens inside it, before the caller can send anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core

from llm_router.backends import BackendFailure, OpenAIBackend, ZstdCodec, parse_usage
from llm_router.chat import ChatOutcome, ChatRouter, StreamOutcome
from llm_router.compression import Compressor
from llm_router.config import Quality, RouterConfig, Secrets
from llm_router.envelope import Envelope, describe
from llm_router.errors import ApiError
from llm_router.ledger import Ledger, LedgerError, RequestRecord, UsageRow
from llm_router.metrics import Metrics
from llm_router.redact import Redactor
from llm_router.routing import Attempt, Router
from llm_router.sse import DONE, StreamTap

log = logging.getLogger(__name__)


@dataclass
class ChatReply:
    body: bytes
    backend: str
    attempts: list[Attempt]
    request_id: str


class Relay:
    """One streamed chat completion on its way to the client.

    The ledger row is committed before the final ``[DONE]`` goes out. :meth:`close` must run
    however the response ends (finished, failed, client gone, or never started): it releases
    the upstream connection and records the tokens that were spent anyway.
    """

    def __init__(
        self, service: RouterService, out: StreamOutcome, body: dict[str, Any], started: float
    ) -> None:
        self.service = service
        self.out = out
        self.body = body
        self.started = started
        self.request_id = _new_id()
        self.backend = out.slot.name
        self.attempts = out.attempts
        self.tap = StreamTap(drop_usage_only=not out.asked_for_usage)
        self._recorded = False
        self._closed = False

    async def events(self) -> AsyncIterator[bytes]:
        out, tap = self.out, self.tap
        try:
            for event in tap.feed(out.stream.first):
                yield event
            try:
                async for chunk in out.stream.rest():
                    for event in tap.feed(chunk):
                        yield event
            except BackendFailure as failure:
                # Too late to fall back: the client has bytes. End the stream with an error.
                log.warning("backend %s: stream broke off: %s", self.backend, failure.detail)
                out.slot.breaker.record_failure()
                yield _sse_error(failure)
                return
            rest = tap.rest()
            if rest:
                yield rest
            await self.service.record_chat(self)
            self._recorded = True
            if tap.done:
                yield DONE
        finally:
            await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.out.stream.aclose()
        if not self._recorded:
            # The client went away or the stream broke: the tokens were still spent.
            self._recorded = True
            self.service.in_background(self.service.record_chat(self, quietly=True))

    def usage_row(self) -> UsageRow:
        messages = self.body.get("messages", ())
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = parse_usage(self.tap.usage, prompt_chars, self.tap.content_chars)
        cfg = self.out.slot.cfg
        return _chat_row(
            cfg.name,
            cfg.role,
            cfg.price_per_1k_tokens,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.estimated,
        )


class RouterService:
    def __init__(
        self,
        cfg: RouterConfig,
        secrets: Secrets,
        *,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.cfg = cfg
        self.redactor = Redactor(secrets.all_values())
        self.router = Router(
            cfg.backends,
            failure_threshold=cfg.routing.failure_threshold,
            cooldown_s=cfg.routing.cooldown_s,
            high_quality_skips=cfg.routing.high_quality_skips,
        )
        self.metrics = Metrics(self.router)
        self.router.observer = self.metrics
        transports = transports or {}
        self.llms = {
            b.name: OpenAIBackend(
                b,
                secrets.api_keys.get(b.name),
                self.redactor,
                health_timeout_s=cfg.routing.health_timeout_s,
                transport=transports.get(b.name),
            )
            for b in cfg.backends
            if b.kind == "openai"
        }
        self.codecs = {b.name: ZstdCodec(b.level) for b in cfg.backends if b.kind == "zstd"}
        self.compressor = Compressor(
            self.router,
            self.llms,
            self.codecs,
            prompt_version=cfg.prompts.version,
            threshold=cfg.routing.quality_threshold,
            verify_default=cfg.routing.verify,
            min_llm_ratio=cfg.routing.min_llm_ratio,
            max_decompressed_bytes=cfg.server.max_decompressed_bytes,
        )
        self.chat = ChatRouter(self.router, self.llms)
        self.ledger = Ledger(
            cfg.ledger.path,
            synchronous=cfg.ledger.synchronous,
            baseline_price=cfg.baseline.price_per_1k_tokens,
        )
        self._prober: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.ledger_open = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, probe: bool = True) -> None:
        await asyncio.to_thread(self.ledger.open)
        self.ledger_open = True
        if probe and self.llms:
            self._prober = asyncio.create_task(self._probe_loop(), name="health-probes")

    async def stop(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        for backend in self.llms.values():
            await backend.aclose()
        await asyncio.to_thread(self.ledger.close)
        self.ledger_open = False

    async def probe_all(self) -> None:
        await asyncio.gather(*(self._probe(b) for b in self.llms.values()))

    async def _probe(self, backend: OpenAIBackend) -> None:
        slot = self.router.slot(backend.name)
        assert slot is not None
        was = slot.probe.healthy
        try:
            await backend.probe()
        except BackendFailure as failure:
            slot.probe.record(False, failure.detail)
            if was is not False:
                log.warning("backend %s: health probe failed: %s", backend.name, failure.detail)
            return
        slot.probe.record(True, "")
        if was is False:
            log.info("backend %s: health probe passes again", backend.name)

    async def _probe_loop(self) -> None:
        while True:
            try:
                await self.probe_all()
            except Exception:  # a probe bug must not end probing for good
                log.exception("health probes failed")
            await asyncio.sleep(self.cfg.routing.health_interval_s)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        backends = [
            {
                "name": s.name,
                "kind": s.cfg.kind,
                "role": s.cfg.role,
                "usable": s.usable(),
                "probe": {None: "unknown", True: "healthy", False: "failed"}[s.probe.healthy],
                "circuit": s.breaker.state.name.lower().replace("_", "-"),
            }
            for s in self.router.slots
        ]
        ready = self.ledger_open and any(b["usable"] for b in backends)
        return ready, {"ready": ready, "ledger": self.ledger_open, "backends": backends}

    # --- ledger ------------------------------------------------------------------------------

    async def _record(
        self,
        endpoint: str,
        backend: str,
        started: float,
        rows: Iterable[UsageRow],
        request_id: str | None = None,
    ) -> str:
        request_id = request_id or _new_id()
        rows = tuple(rows)
        record = RequestRecord(
            request_id=request_id,
            ts=time.time(),
            endpoint=endpoint,
            status=200,
            backend=backend,
            latency_ms=(time.perf_counter() - started) * 1000,
            usage=rows,
        )
        try:
            await self.ledger.record(record)
        except LedgerError as exc:
            log.error("%s", exc)
            raise ApiError(
                503,
                "ledger_unavailable",
                "the cost ledger could not record this request, so it is not acknowledged",
            ) from None
        self.metrics.usage(rows, self.cfg.baseline.price_per_1k_tokens)
        return request_id

    # --- API calls ---------------------------------------------------------------------------

    async def compress(
        self, text: str, quality: Quality, verify: bool | None, backend: str | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        if backend is not None and self.router.slot(backend) is None:
            raise ApiError(
                400,
                "unknown_backend",
                f"backend: unknown backend {backend!r}; configured: "
                + ", ".join(s.name for s in self.router.slots),
                param="backend",
            )
        out = await self.compressor.compress(text, quality, verify, backend)
        request_id = await self._record("compress", out.backend, started, out.usage)
        original = out.envelope.original
        ratio = original.bytes / out.compressed_bytes if out.compressed_bytes else None
        self.metrics.ratio.labels(out.envelope.method).observe(ratio or 0)
        if out.quality is not None and out.envelope.method == "llm":
            self.metrics.quality.labels(out.backend).observe(out.quality.score)
        return {
            "request_id": request_id,
            "envelope": out.envelope.model_dump(),
            "backend": out.backend,
            "method": out.envelope.method,
            "model": out.model,
            **_tokens(out.usage),
            "sizes": {"original_bytes": original.bytes, "compressed_bytes": out.compressed_bytes},
            "ratio": round(ratio, 3) if ratio is not None else None,
            "quality": {
                "verified": out.verified,
                "threshold": out.threshold,
                "lossless": out.envelope.method == "zstd",
                **(out.quality.as_dict() if out.quality is not None else {"score": None}),
            },
            "latency_ms": _ms(started),
            "attempts": [a.as_dict() for a in out.attempts],
        }

    async def reconstruct(self, envelope: Envelope) -> dict[str, Any]:
        started = time.perf_counter()
        out = await self.compressor.reconstruct(envelope)
        request_id = await self._record("reconstruct", out.backend, started, out.usage)
        produced = describe(out.text)
        return {
            "request_id": request_id,
            "text": out.text,
            "backend": out.backend,
            "method": envelope.method,
            "model": out.model,
            "exact": produced.sha256 == envelope.original.sha256,
            **_tokens(out.usage),
            "sizes": {
                "compressed_bytes": out.compressed_bytes,
                "reconstructed_bytes": produced.bytes,
                "original_bytes": envelope.original.bytes,
            },
            "latency_ms": _ms(started),
            "attempts": [a.as_dict() for a in out.attempts],
        }

    async def chat_completion(
        self, body: dict[str, Any], quality: Quality, prefer: str | None
    ) -> ChatReply:
        started = time.perf_counter()
        out: ChatOutcome = await self.chat.complete(body, quality, prefer)
        row = _chat_row(
            out.slot.name,
            out.slot.cfg.role,
            out.slot.cfg.price_per_1k_tokens,
            out.result.usage.prompt_tokens,
            out.result.usage.completion_tokens,
            out.result.usage.estimated,
        )
        request_id = await self._record("chat", out.slot.name, started, [row])
        return ChatReply(out.result.body, out.slot.name, out.attempts, request_id)

    async def chat_stream(
        self, body: dict[str, Any], quality: Quality, prefer: str | None
    ) -> Relay:
        started = time.perf_counter()
        out = await self.chat.open_stream(body, quality, prefer)
        return Relay(self, out, body, started)

    async def record_chat(self, relay: Relay, *, quietly: bool = False) -> None:
        row = relay.usage_row()
        try:
            await self._record("chat", relay.backend, relay.started, [row], relay.request_id)
        except ApiError:
            if not quietly:
                raise

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without waiting for it; :meth:`stop` waits for what is still running."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def cost_report(self, since: str | None, until: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.ledger.report, since, until)

    def models(self) -> dict[str, Any]:
        created = 0
        data = [{"id": "auto", "object": "model", "created": created, "owned_by": "llm-router"}]
        for name, backend in self.llms.items():
            slot = self.router.slot(name)
            assert slot is not None
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": "llm-router",
                    "root": backend.model,
                    "role": slot.cfg.role,
                    "usable": slot.usable(),
                }
            )
        return {"object": "list", "data": data}


def _new_id() -> str:
    return os.urandom(16).hex()  # as unique as a uuid4, at a fraction of the cost


def _chat_row(
    backend: str, role: str, price: float, prompt: int, completion: int, estimated: bool
) -> UsageRow:
    return UsageRow(backend, role, "chat", True, prompt, completion, price, estimated)


def _tokens(rows: Iterable[UsageRow]) -> dict[str, Any]:
    rows = list(rows)
    prompt = sum(r.prompt_tokens for r in rows)
    completion = sum(r.completion_tokens for r in rows)
    return {
        "tokens": {
            "prompt": prompt,
            "completion": completion,
            "total": prompt + completion,
            "estimated": any(r.estimated for r in rows),
        },
        "cost_usd": round(sum(r.cost_usd for r in rows), 10),
    }


def _sse_error(failure: BackendFailure) -> bytes:
    error = {
        "error": {
            "message": f"backend stream failed: {failure.detail}",
            "type": "server_error",
            "code": failure.reason,
        }
    }
    return b"data: " + pydantic_core.to_json(error) + b"\n\n"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
