"""The HTTP layer: Starlette routes around :class:`RouterService`, plus one ASGI wrapper that
does what every request needs before routing (size limit, authentication, metrics)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx
import pydantic_core
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_router.api import ChatRequest, CompressRequest, ReconstructRequest, openapi
from llm_router.config import Quality, RouterConfig, Secrets
from llm_router.envelope import parse_envelope
from llm_router.errors import ApiError, bad_request, invalid_request
from llm_router.metrics import CONTENT_TYPE
from llm_router.routing import Attempt
from llm_router.service import Relay, RouterService

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
ENDPOINTS = {
    "/v1/compress": "compress",
    "/v1/reconstruct": "reconstruct",
    "/v1/chat/completions": "chat",
    "/v1/models": "models",
    "/v1/cost": "cost",
    "/metrics": "metrics",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/openapi.json": "openapi",
}
JSON_ENDPOINTS = frozenset({"/v1/compress", "/v1/reconstruct", "/v1/chat/completions"})
# Host names that always reach the router: this machine by name (Ollama allows the same).
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
CLIENT_GONE = "llm_router.client_gone"  # set in the ASGI scope when the client left early
STATUS_CLIENT_GONE = "499"  # nginx's "client closed request", as a metric label
QUALITY_HEADER = "x-llm-router-quality"


# --- responses -------------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(pydantic_core.to_json(body), status, headers, media_type="application/json")


def error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(error.body(), error.status, headers)


def routing_headers(backend: str, attempts: list[Attempt], request_id: str) -> dict[str, str]:
    return {
        "x-llm-router-backend": backend,
        "x-llm-router-attempts": ", ".join(a.header_form() for a in attempts),
        "x-request-id": request_id,
    }


# --- request bodies --------------------------------------------------------------------------


async def read_json(request: Request, limit: int) -> Any:
    """Read at most ``limit`` bytes (whatever Content-Length claims) and parse them as JSON."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise bad_request("empty_body", "request body is empty; send a JSON object")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            "invalid_utf8", f"request body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as exc:
        raise bad_request("invalid_json", f"request body is not valid JSON: {exc}") from None


class ClientGone(Exception):
    """The client closed the connection (or broke its framing) before its body was complete."""


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, "body_too_large", f"request body is larger than max_body_bytes ({limit} bytes)"
    )


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise bad_request("invalid_request", "request body must be a JSON object")
    return data


def _quality(request: Request) -> Quality:
    value = request.headers.get(QUALITY_HEADER, "normal").strip().lower()
    if value not in ("low", "normal", "high"):
        raise bad_request(
            "invalid_request",
            "header X-LLM-Router-Quality: must be one of low, normal, high",
            param=QUALITY_HEADER,
        )
    return value  # type: ignore[return-value]


def _check_chat(body: dict[str, Any]) -> ChatRequest:
    """Validate before anything is forwarded; the body itself goes upstream unchanged."""
    try:
        return ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _day(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise bad_request("invalid_request", f"{name}: must be a date YYYY-MM-DD", name) from None


# --- routes ----------------------------------------------------------------------------------


class Handlers:
    def __init__(self, service: RouterService) -> None:
        self.service = service
        self.limit = service.cfg.server.max_body_bytes
        self.openapi_body = pydantic_core.to_json(openapi())

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        ready, body = self.service.readiness()
        return json_response(body, 200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(self.service.metrics.render(), media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self.openapi_body, media_type="application/json")

    async def models(self, request: Request) -> Response:
        return json_response(self.service.models())

    async def cost(self, request: Request) -> Response:
        return json_response(
            await self.service.cost_report(_day(request, "since"), _day(request, "until"))
        )

    async def compress(self, request: Request) -> Response:
        try:
            req = CompressRequest.model_validate(_object(await read_json(request, self.limit)))
        except ValidationError as exc:
            raise invalid_request(exc) from None
        body = await self.service.compress(req.text, req.quality, req.verify, req.backend)
        return json_response(body, headers={"x-request-id": body["request_id"]})

    async def reconstruct(self, request: Request) -> Response:
        try:
            req = ReconstructRequest.model_validate(_object(await read_json(request, self.limit)))
        except ValidationError as exc:
            raise invalid_request(exc) from None
        body = await self.service.reconstruct(parse_envelope(req.envelope))
        return json_response(body, headers={"x-request-id": body["request_id"]})

    async def chat_completions(self, request: Request) -> Response:
        body = _object(await read_json(request, self.limit))
        req = _check_chat(body)
        quality = _quality(request)
        prefer = self.service.chat.resolve(req.model)
        if req.stream:
            return RelayResponse(await self.service.chat_stream(body, quality, prefer))
        reply = await self.service.chat_completion(body, quality, prefer)
        return Response(
            reply.body,
            media_type="application/json",
            headers=routing_headers(reply.backend, reply.attempts, reply.request_id),
        )


class RelayResponse(StreamingResponse):
    """Server-sent events from a :class:`Relay`, which is closed however the response ends."""

    def __init__(self, relay: Relay) -> None:
        headers = routing_headers(relay.backend, relay.attempts, relay.request_id)
        headers.update({"cache-control": "no-cache", "x-accel-buffering": "no"})
        super().__init__(relay.events(), media_type="text/event-stream", headers=headers)
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.relay.close()  # also when the client left before the first event


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(
        ApiError(exc.status_code, code, f"{request.method} {request.url.path}: {exc.detail}")
    )


class _NoResponse(Response):
    """For a client that has gone: nothing is sent, and the Gate counts it as 499."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[CLIENT_GONE] = True


async def _client_gone(request: Request, exc: Exception) -> Response:
    return _NoResponse()


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, and uvicorn logs its traceback.
    return error_response(ApiError(500, "internal_error", "internal error; see the router's log"))


# --- the wrapper -----------------------------------------------------------------------------


class Gate:
    """Outermost ASGI layer: Host allow-list, bearer tokens, body size by Content-Length,
    JSON content type, request metrics, and clients that leave before their body is complete.

    A body that claims to be too large is refused here without reading a byte of it; bodies
    without a Content-Length (chunked) are counted while read, in :func:`read_json`.
    """

    def __init__(
        self,
        app: ASGIApp,
        service: RouterService,
        tokens: tuple[str, ...],
        starlette: Starlette,
    ) -> None:
        self.app = app
        self.starlette = starlette  # for the lifespan, when middleware wraps the app
        self.service = service
        self.tokens = [t.encode() for t in tokens]
        self.limit = service.cfg.server.max_body_bytes
        self.public = set(PUBLIC_PATHS)
        if not service.cfg.server.metrics_require_auth:
            self.public.add("/metrics")
        self.hosts = HostAllowList(service.cfg.server.allowed_hosts, service.cfg.server.host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = ENDPOINTS.get(scope["path"], "other")
        started = time.perf_counter()
        status = ""

        async def send_and_measure(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
                self.service.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_and_measure)
            else:
                await self.app(scope, receive, send_and_measure)
        finally:
            if not status:
                if scope.get(CLIENT_GONE):
                    status = STATUS_CLIENT_GONE
                    client = scope.get("client") or ("?", 0)
                    log.info(
                        "%s %s from %s: the client went away before its request was complete",
                        scope["method"],
                        scope["path"],
                        client[0],
                    )
                else:
                    status = "500"
            self.service.metrics.requests.labels(endpoint, status).inc()

    def _refusal(self, scope: Scope) -> Response | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host")
        if host is not None and not self.hosts.allows(host):
            return error_response(
                ApiError(
                    403,
                    "host_not_allowed",
                    "Host header is not in server.allowed_hosts (a guard against DNS "
                    "rebinding); add the name the router is reached by there",
                    param="Host",
                )
            )
        if self.tokens and scope["path"] not in self.public and not self._authorised(headers):
            return error_response(
                ApiError(401, "unauthorized", "missing or invalid bearer token"),
                {"www-authenticate": "Bearer"},
            )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return error_response(bad_request("invalid_request", "invalid Content-Length"))
            if size > self.limit:
                return error_response(_too_large(self.limit), {"connection": "close"})
        if (
            scope["method"] == "POST"
            and scope["path"] in JSON_ENDPOINTS
            and not _is_json(headers.get(b"content-type", b""))
        ):
            return error_response(
                ApiError(
                    415,
                    "unsupported_media_type",
                    "Content-Type must be application/json",
                    param="Content-Type",
                )
            )
        return None

    def _authorised(self, headers: dict[bytes, bytes]) -> bool:
        value = headers.get(b"authorization", b"")
        scheme, _, token = value.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        token = token.strip()
        # Compare against every token so the time taken does not tell which one nearly matched.
        matched = False
        for known in self.tokens:
            matched |= hmac.compare_digest(token, known)
        return matched


def _is_json(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class HostAllowList:
    """Which ``Host`` headers reach the router, as Ollama decides for its own API.

    Always: loopback addresses, ``localhost`` and any ``*.localhost``; the address in
    ``server.host`` when it is a specific one; and the names in ``server.allowed_hosts``
    (``*`` there turns the check off). A request without a Host header (HTTP/1.0) passes:
    a browser always sends one.
    """

    def __init__(self, names: Iterable[str], bind_host: str) -> None:
        self.any = "*" in names
        self.names = {n.lower().strip("[]") for n in names} | LOOPBACK_NAMES
        if bind_host not in ("0.0.0.0", "::", ""):  # noqa: S104 - a comparison, not a bind
            self.names.add(bind_host.lower().strip("[]"))
        self._seen: dict[bytes, bool] = {}

    def allows(self, header: bytes) -> bool:
        known = self._seen.get(header)
        if known is None:
            known = self.any or self._check(header)
            if len(self._seen) < 1024:  # remember a few; an attacker cannot grow this
                self._seen[header] = known
        return known

    def _check(self, header: bytes) -> bool:
        try:
            value = header.decode("ascii").strip().lower()
        except UnicodeDecodeError:
            return False
        if value.startswith("["):
            name = value[1 : value.find("]")] if "]" in value else value
        else:
            head, sep, port = value.rpartition(":")
            name = head if sep and port.isdigit() else value
        name = name.rstrip(".")
        if name in self.names or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def create_app(
    cfg: RouterConfig,
    secrets: Secrets,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    probe: bool = True,
) -> Gate:
    """Build the ASGI application; the service starts and stops with the app's lifespan."""
    service = RouterService(cfg, secrets, transports=transports)
    h = Handlers(service)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start(probe=probe)
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=[
            Route("/healthz", h.healthz, methods=["GET"]),
            Route("/readyz", h.readyz, methods=["GET"]),
            Route("/openapi.json", h.openapi, methods=["GET"]),
            Route("/metrics", h.metrics, methods=["GET"]),
            Route("/v1/models", h.models, methods=["GET"]),
            Route("/v1/cost", h.cost, methods=["GET"]),
            Route("/v1/compress", h.compress, methods=["POST"]),
            Route("/v1/reconstruct", h.reconstruct, methods=["POST"]),
            Route("/v1/chat/completions", h.chat_completions, methods=["POST"]),
        ],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            ClientGone: _client_gone,
            ClientDisconnect: _client_gone,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    inner: ASGIApp = app
    if cfg.server.cors_origins:
        inner = CORSMiddleware(
            app,
            allow_origins=list(cfg.server.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", QUALITY_HEADER],
            expose_headers=["x-request-id", "x-llm-router-backend", "x-llm-router-attempts"],
        )
    return Gate(inner, service, secrets.auth_tokens, app)
