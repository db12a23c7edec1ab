"""The backends: OpenAI-compatible HTTP engines and zstd.

A backend call either returns a result or raises :class:`BackendFailure` with a short reason
category (for metrics and fallback decisions) and a detail for the caller. Details are run
through the redactor, because an upstream error body may echo a key back.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic_core
import zstandard

from llm_router.config import BackendConfig
from llm_router.transport import backend_transport

# Reason categories; each is a label value in metrics, so the set stays small.
CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"
PROTOCOL_ERROR = "protocol_error"
HTTP_5XX = "http_5xx"
HTTP_4XX = "http_4xx"
RATE_LIMITED = "rate_limited"
MALFORMED = "malformed"
TOO_LARGE = "response_too_large"

_ERROR_SNIPPET = 200
log = logging.getLogger(__name__)


class BackendFailure(Exception):
    def __init__(self, reason: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False  # the engine reported no usage: counted from characters


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


@dataclass(frozen=True)
class ChatResult:
    body: bytes  # the upstream JSON, passed through unchanged
    text: str | None  # the first choice's message content; None for a tool call
    usage: Usage


Redact = Callable[[str], str]


def estimate_tokens(chars: int) -> int:
    """About four characters per token: only used when an engine reports no usage."""
    return (chars + 3) // 4


def parse_usage(raw: Any, prompt_chars: int, completion_chars: int) -> Usage:
    if isinstance(raw, dict):
        p, c = raw.get("prompt_tokens"), raw.get("completion_tokens")
        if type(p) is int and type(c) is int and p >= 0 and c >= 0:
            return Usage(p, c)
    return Usage(estimate_tokens(prompt_chars), estimate_tokens(completion_chars), estimated=True)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)[:_ERROR_SNIPPET]


class OpenAIBackend:
    """An OpenAI-compatible engine (Ollama, llama.cpp, vLLM, a cloud gateway)."""

    def __init__(
        self,
        cfg: BackendConfig,
        api_key: str | None,
        redact: Redact,
        *,
        health_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        assert cfg.base_url is not None  # checked by config
        assert cfg.model is not None
        self.cfg = cfg
        self.name = cfg.name
        self.model: str = cfg.model
        self._redact = redact
        self._chat_url = httpx.URL(f"{cfg.base_url}/chat/completions")
        self._health_url = httpx.URL(cfg.health_url or f"{cfg.base_url}{cfg.health_path}")
        self._timeout = httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s).as_dict()
        self._health_timeout = httpx.Timeout(health_timeout_s).as_dict()
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        # One connection pool per backend for the life of the process. Requests go straight to
        # the transport: for the local engine, httpx.AsyncClient's layers (cookies, auth flows,
        # redirects, URL merging) do nothing for us and cost about 0.1 ms a request. Which
        # transport a backend gets (the lean loopback pool or httpx's, with proxies and TLS)
        # is decided in transport.backend_transport.
        self._transport = transport or backend_transport(
            (cfg.base_url, cfg.health_url), max_connections=cfg.max_connections
        )

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def _send(
        self, method: str, url: httpx.URL, content: bytes, timeout: Any
    ) -> httpx.Response:
        request = httpx.Request(
            method, url, headers=self._headers, content=content, extensions={"timeout": timeout}
        )
        try:
            return await self._transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc) from None

    async def _read(self, response: httpx.Response) -> bytes:
        """The whole body, at most ``max_response_bytes`` of it (else a TOO_LARGE failure)."""
        limit = self.cfg.max_response_bytes
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise self._too_large()
                chunks.append(chunk)
            return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise self._transport_failure(exc) from None
        finally:
            await response.aclose()

    def _too_large(self) -> BackendFailure:
        return BackendFailure(
            TOO_LARGE,
            f"response is larger than max_response_bytes ({self.cfg.max_response_bytes} bytes)",
        )

    # --- calls -----------------------------------------------------------------------------

    async def complete(self, messages: list[dict[str, str]], max_tokens: int) -> Completion:
        """A non-streaming chat completion for compression; returns the assistant text."""
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": False,
        }
        result = await self.chat(body)
        if result.text is None:
            raise BackendFailure(MALFORMED, "choices[0].message.content is not a string")
        return Completion(text=result.text, usage=result.usage)

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        """POST a chat completion and check its shape; the body is returned byte for byte."""
        response = await self._send(
            "POST", self._chat_url, pydantic_core.to_json(body), self._timeout
        )
        raw = await self._read(response)
        if response.status_code >= 300:
            raise self._status_failure(response.status_code, raw.decode("utf-8", "replace"))
        try:
            data = pydantic_core.from_json(raw)
        except ValueError:
            raise BackendFailure(MALFORMED, "response body is not JSON") from None
        text = _message_content(data)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", ()))
        usage = parse_usage(data.get("usage"), prompt_chars, len(text or ""))
        return ChatResult(raw, text, usage)

    async def open_stream(self, body: dict[str, Any]) -> UpstreamStream:
        """Start a streaming completion and wait for its first chunk.

        Until this returns the caller may still fall back to another backend; after it, bytes
        go to the client and a failure can only end the stream.
        """
        payload = pydantic_core.to_json(body)
        response = await self._send("POST", self._chat_url, payload, self._timeout)
        try:
            if response.status_code >= 300:
                text = (await self._read(response)).decode("utf-8", "replace")
                raise self._status_failure(response.status_code, text)
            chunks = response.aiter_bytes()
            first = b""
            while not first:  # skip empty reads; a stream that ends first is malformed
                try:
                    first = await chunks.__anext__()
                except StopAsyncIteration:
                    raise BackendFailure(MALFORMED, "stream ended before any data") from None
            if not first.lstrip().startswith((b"data:", b":", b"event:", b"id:", b"retry:")):
                raise BackendFailure(MALFORMED, "response is not a server-sent event stream")
        except httpx.HTTPError as exc:
            await response.aclose()
            raise self._transport_failure(exc) from None
        except BaseException:
            await response.aclose()
            raise
        if len(first) > self.cfg.max_response_bytes:
            await response.aclose()
            raise self._too_large()
        return UpstreamStream(
            first,
            chunks,
            response,
            self._transport_failure,
            self._too_large,
            self.cfg.max_response_bytes,
        )

    async def probe(self) -> None:
        """Health check: a GET on the health path must answer 2xx within the health timeout."""
        response = await self._send("GET", self._health_url, b"", self._health_timeout)
        await self._read(response)
        if not 200 <= response.status_code < 300:
            raise self._status_failure(response.status_code, "")

    # --- failure classification ---------------------------------------------------------------

    def _transport_failure(self, exc: httpx.HTTPError) -> BackendFailure:
        if isinstance(exc, httpx.TimeoutException):
            kind = {
                httpx.ConnectTimeout: "connect timeout",
                httpx.ReadTimeout: "read timeout",
                httpx.WriteTimeout: "write timeout",
                httpx.PoolTimeout: "connection pool exhausted",
            }.get(type(exc), "timeout")
            return BackendFailure(TIMEOUT, f"{kind} after {self.cfg.timeout_s:g}s")
        if isinstance(exc, httpx.ConnectError):
            return BackendFailure(CONNECT_ERROR, "cannot connect: " + _os_reason(exc))
        # The same words whichever transport failed and however it words the failure, so that
        # callers, logs and tests see one behaviour; the transport's own words go to the debug log.
        log.debug("backend %s: %s: %s", self.name, type(exc).__name__, self._redact(str(exc)))
        if isinstance(exc, httpx.UnsupportedProtocol):
            return BackendFailure(PROTOCOL_ERROR, "unsupported protocol")
        return BackendFailure(
            PROTOCOL_ERROR, "connection closed or response malformed before it was complete"
        )

    def _status_failure(self, status: int, text: str) -> BackendFailure:
        snippet = _printable(self._redact(text.strip()))
        detail = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status >= 500:
            reason = HTTP_5XX
        elif status == 429:
            reason = RATE_LIMITED
        elif status >= 400:
            reason = HTTP_4XX
        else:  # 1xx or 3xx where a chat completion belongs: redirects are not followed
            reason = PROTOCOL_ERROR
        return BackendFailure(reason, detail, status=status)


def _os_reason(exc: BaseException) -> str:
    """The operating system's words ("Connection refused") from deep in httpx's exception chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno:
            # os.strerror, not seen.strerror: asyncio words its own ("Connect call failed").
            return os.strerror(seen.errno).lower()
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    return _printable(str(exc)) or type(exc).__name__


def _message_content(data: Any) -> str | None:
    """The first choice's content; a body without a first message is malformed."""
    try:
        message = data["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        raise BackendFailure(MALFORMED, "response has no choices[0].message") from None
    if not isinstance(message, dict):
        raise BackendFailure(MALFORMED, "choices[0].message is not an object")
    content = message.get("content")
    return content if isinstance(content, str) else None


class UpstreamStream:
    """An upstream SSE response whose first chunk has been read."""

    def __init__(
        self,
        first: bytes,
        chunks: AsyncIterator[bytes],
        response: httpx.Response,
        classify: Callable[[httpx.HTTPError], BackendFailure],
        too_large: Callable[[], BackendFailure],
        limit: int,
    ) -> None:
        self.first = first
        self._chunks = chunks
        self._response = response
        self._classify = classify
        self._too_large = too_large
        self._limit = limit

    async def rest(self) -> AsyncIterator[bytes]:
        """The chunks after the first; a stream past max_response_bytes fails with TOO_LARGE."""
        size = len(self.first)
        limit = self._limit
        try:
            async for chunk in self._chunks:
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large()
                    yield chunk
        except httpx.HTTPError as exc:
            raise self._classify(exc) from None

    async def aclose(self) -> None:
        await self._response.aclose()


# --- zstd ----------------------------------------------------------------------------------


class DecompressedTooLarge(Exception):
    pass


class InvalidFrame(Exception):
    pass


class ZstdCodec:
    """Lossless compression. Decompression is bounded so a small bomb cannot fill memory."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._local = threading.local()  # compressor contexts are not thread-safe; reuse per thread

    def compress(self, data: bytes) -> bytes:
        cctx = getattr(self._local, "cctx", None)
        if cctx is None:
            cctx = self._local.cctx = zstandard.ZstdCompressor(level=self.level)
        result: bytes = cctx.compress(data)
        return result

    @staticmethod
    def decompress(data: bytes, limit: int) -> bytes:
        declared = _frame_size(data)
        if declared is not None and declared > limit:
            raise DecompressedTooLarge(f"frame declares {declared} bytes, limit is {limit}")
        try:
            # Never allocates more than the limit; fails on truncated or corrupt frames.
            out: bytes = zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
        except zstandard.ZstdError as exc:
            # The same error means "truncated" and "would not fit": tell them apart.
            if _expands_beyond(data, limit):
                raise DecompressedTooLarge(f"output exceeds the limit of {limit} bytes") from None
            raise InvalidFrame(str(exc)) from None
        return out


def _expands_beyond(data: bytes, limit: int) -> bool:
    """Stream at most ``limit + 1`` bytes out of the frame, holding at most 1 MiB at a time."""
    produced = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            while produced <= limit:
                chunk = reader.read(min(1 << 20, limit + 1 - produced))
                if not chunk:
                    return False
                produced += len(chunk)
    except zstandard.ZstdError:
        return False
    return True


def _frame_size(data: bytes) -> int | None:
    try:
        size: int = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise InvalidFrame(str(exc)) from None
    return None if size < 0 else size
