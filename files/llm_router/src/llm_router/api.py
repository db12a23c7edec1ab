"""The HTTP API's contract: the request models the handlers validate with, the shapes of the
responses, and the OpenAPI 3.1 document built from both (served at ``GET /openapi.json`` and
committed as ``openapi.json``; ``llm-router openapi`` prints it)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from llm_router import __version__
from llm_router.envelope import Envelope

# Chat messages: the roles OpenAI-compatible engines accept.
ChatRole = Literal["system", "developer", "user", "assistant", "tool", "function"]


# --- requests (these validate) ----------------------------------------------------------------


class CompressRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(min_length=1)
    quality: Literal["low", "normal", "high"] = "normal"
    verify: bool | None = None
    backend: str | None = None


class ReconstructRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # Validated by envelope.parse_envelope, which gives unknown versions their own error;
    # the document shows the Envelope model it validates with (see openapi()).
    envelope: Any


class ChatMessage(BaseModel):
    """One message; other keys (name, tool_calls, tool_call_id) pass through unchanged."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: ChatRole
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat request; keys not listed here are forwarded to the engine as they are."""

    model_config = ConfigDict(extra="allow", strict=True)

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


# --- responses (shapes only; the handlers build plain dicts) ------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class AttemptInfo(_Open):
    backend: str
    outcome: Literal["ok", "skipped", "failed", "rejected"]
    reason: str | None = None
    detail: str | None = None
    latency_ms: float | None = None


class ErrorDetail(_Open):
    message: str
    type: str
    code: str
    param: str | None
    attempts: list[AttemptInfo] | None = None


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


class Tokens(BaseModel):
    prompt: int
    completion: int
    total: int
    estimated: bool = Field(
        description="true when an engine reported no usage and the "
        "router estimated the counts (about 4 characters a token)"
    )


class CompressSizes(BaseModel):
    original_bytes: int
    compressed_bytes: int


class QualityInfo(_Open):
    verified: bool
    threshold: float
    lossless: bool
    score: float | None


class CompressResponse(BaseModel):
    request_id: str
    envelope: Envelope
    backend: str
    method: Literal["llm", "zstd"]
    model: str | None
    tokens: Tokens
    cost_usd: float
    sizes: CompressSizes
    ratio: float | None
    quality: QualityInfo
    latency_ms: float
    attempts: list[AttemptInfo]


class ReconstructSizes(BaseModel):
    compressed_bytes: int
    reconstructed_bytes: int
    original_bytes: int


class ReconstructResponse(BaseModel):
    request_id: str
    text: str
    backend: str
    method: Literal["llm", "zstd"]
    model: str | None
    exact: bool
    tokens: Tokens
    cost_usd: float
    sizes: ReconstructSizes
    latency_ms: float
    attempts: list[AttemptInfo]


class ChatCompletion(_Open):
    """The engine's ``chat.completion`` object, passed through byte for byte."""

    choices: list[dict[str, Any]]


class ModelEntry(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


class CostTotals(_Open):
    requests: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    estimated_tokens: int = Field(description="how many of ``tokens`` are estimates")
    cost_usd: float
    baseline_cost_usd: float
    savings_usd: float
    savings_pct: float | None


class CostDay(CostTotals):
    day: str
    by_backend: dict[str, CostTotals]


class CostBackend(CostTotals):
    role: str | None


class CostReport(BaseModel):
    currency: Literal["USD"]
    baseline_price_per_1k_tokens: float
    since: str | None
    until: str | None
    totals: CostTotals
    by_backend: dict[str, CostBackend]
    by_day: list[CostDay]


class Health(BaseModel):
    status: Literal["ok"]


class BackendReadiness(BaseModel):
    name: str
    kind: str
    role: str
    usable: bool
    probe: Literal["unknown", "healthy", "failed"]
    circuit: Literal["closed", "half-open", "open"]


class Readiness(BaseModel):
    ready: bool
    ledger: bool
    backends: list[BackendReadiness]


MODELS: tuple[type[BaseModel], ...] = (
    CompressRequest,
    ReconstructRequest,
    ChatRequest,
    Envelope,
    ErrorResponse,
    CompressResponse,
    ReconstructResponse,
    ChatCompletion,
    ModelList,
    CostReport,
    Health,
    Readiness,
)


# --- the document -------------------------------------------------------------------------

_REF = "#/components/schemas/{model}"
JSON = "application/json"
# Statuses each kind of endpoint can answer with an error body.
_COMMON_ERRORS = {
    "401": "missing or invalid bearer token (when auth is on)",
    "403": "Host header not in server.allowed_hosts",
}
_BODY_ERRORS = {
    "400": "invalid JSON, a failed validation, or every backend rejected the request",
    "413": "request body larger than server.max_body_bytes",
    "415": "Content-Type is not application/json",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(name)}}}


def _errors(codes: dict[str, str]) -> dict[str, Any]:
    return {code: _json("ErrorResponse", text) for code, text in codes.items()}


def _post(summary: str, request: str, ok: dict[str, Any], errors: dict[str, str]) -> Any:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
            "responses": {"200": ok, **_errors({**_COMMON_ERRORS, **_BODY_ERRORS, **errors})},
        }
    }


def _get(summary: str, ok: dict[str, Any], errors: dict[str, str] | None = None) -> Any:
    return {
        "get": {
            "summary": summary,
            "responses": {"200": ok, **_errors({**_COMMON_ERRORS, **(errors or {})})},
        }
    }


_UNAVAILABLE = {
    "502": "every backend's answer was larger than its max_response_bytes",
    "503": "no backend could serve the request, or the ledger could not record it",
}


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document, from :data:`MODELS`."""
    _, schemas = models_json_schema([(m, "validation") for m in MODELS], ref_template=_REF)
    chat_ok = {
        "description": "a chat.completion object, or with stream=true a server-sent event "
        "stream of chat.completion.chunk objects ending in `data: [DONE]`; an upstream "
        'failure mid-stream ends it with a `data: {"error": ...}` event',
        "content": {
            JSON: {"schema": _ref("ChatCompletion")},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }
    day = {"type": "string", "format": "date"}
    paths = {
        "/v1/compress": _post(
            "compress text (LLM, falling back to zstd)",
            "CompressRequest",
            _json("CompressResponse", "the envelope and what it cost"),
            {**_UNAVAILABLE},
        ),
        "/v1/reconstruct": _post(
            "reconstruct the text of an envelope",
            "ReconstructRequest",
            _json("ReconstructResponse", "the reconstructed text"),
            {
                "413": "the envelope would expand beyond server.max_decompressed_bytes",
                "422": "a zstd envelope whose checksum or UTF-8 does not hold",
                **_UNAVAILABLE,
            },
        ),
        "/v1/chat/completions": _post(
            "OpenAI-compatible chat completion, routed",
            "ChatRequest",
            chat_ok,
            {"404": "unknown model", **_UNAVAILABLE},
        ),
        "/v1/models": _get("the models (backends) to chat with", _json("ModelList", "models")),
        "/v1/cost": _get(
            "tokens, cost and savings from the ledger",
            _json("CostReport", "the report"),
            {"400": "since/until is not a date"},
        ),
        "/healthz": _get("liveness", _json("Health", "the process is up")),
        "/readyz": {
            "get": {
                "summary": "readiness: the ledger is open and a backend is usable",
                "responses": {
                    "200": _json("Readiness", "ready"),
                    "503": _json("Readiness", "not ready"),
                    **_errors({"403": _COMMON_ERRORS["403"]}),
                },
            }
        },
        "/metrics": _get(
            "Prometheus metrics",
            {
                "description": "text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
        ),
        "/openapi.json": _get(
            "this document",
            {
                "description": "OpenAPI 3.1",
                "content": {JSON: {"schema": {"type": "object"}}},
            },
        ),
    }
    cost = paths["/v1/cost"]["get"]
    cost["parameters"] = [
        {"name": n, "in": "query", "required": False, "schema": day} for n in ("since", "until")
    ]
    chat = paths["/v1/chat/completions"]["post"]
    chat["parameters"] = [
        {
            "name": "X-LLM-Router-Quality",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["low", "normal", "high"]},
        }
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-router",
            "version": __version__,
            "description": "Routes LLM compression and chat requests across a local engine, "
            "a cloud API and zstd, with a cost ledger.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def openapi_text() -> str:
    """The document as committed: sorted keys, two-space indent, final newline."""
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"
