"""OpenAI-compatible chat completions, routed over the LLM backends.

A request may fall back to the next backend until the first byte of its response has been
sent; for a stream that is the first upstream chunk, so a backend that accepts the request
and then stalls before answering is still passed over.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm_router.backends import BackendFailure, ChatResult, OpenAIBackend, UpstreamStream
from llm_router.config import Quality
from llm_router.errors import ApiError
from llm_router.routing import Attempt, Router, Slot

AUTO = "auto"


@dataclass
class ChatOutcome:
    result: ChatResult
    slot: Slot
    attempts: list[Attempt]


@dataclass
class StreamOutcome:
    stream: UpstreamStream
    slot: Slot
    attempts: list[Attempt]
    asked_for_usage: bool  # the client asked for the usage chunk itself


class ChatRouter:
    def __init__(self, router: Router, llms: Mapping[str, OpenAIBackend]) -> None:
        self.router = router
        self.llms = llms

    def model_ids(self) -> list[str]:
        return [AUTO, *self.llms]

    def resolve(self, model: str | None) -> str | None:
        """Map the request's ``model`` to a preferred backend: a backend name or its model."""
        if model is None or model in ("", AUTO):
            return None
        if model in self.llms:
            return model
        for name, backend in self.llms.items():
            if backend.model == model:
                return name
        raise ApiError(
            404,
            "model_not_found",
            f"model: unknown model {model!r}; use one of: " + ", ".join(self.model_ids()),
            param="model",
        )

    async def complete(
        self, body: dict[str, Any], quality: Quality, prefer: str | None
    ) -> ChatOutcome:
        chain = self.router.chain("chat", quality, prefer)
        for slot in chain:
            backend = self.llms[slot.name]
            started = time.perf_counter()
            try:
                result = await backend.chat({**body, "model": backend.model})
            except BackendFailure as failure:
                chain.failed(slot, failure, started)
                continue
            chain.succeeded(slot, started)
            return ChatOutcome(result, slot, chain.attempts)
        raise chain.exhausted("serve the chat request")

    async def open_stream(
        self, body: dict[str, Any], quality: Quality, prefer: str | None
    ) -> StreamOutcome:
        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        # Ask every engine for the usage chunk: the ledger needs real token counts.
        upstream_body = {
            **body,
            "stream_options": {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            },
        }
        chain = self.router.chain("chat", quality, prefer)
        for slot in chain:
            backend = self.llms[slot.name]
            started = time.perf_counter()
            try:
                stream = await backend.open_stream({**upstream_body, "model": backend.model})
            except BackendFailure as failure:
                chain.failed(slot, failure, started)
                continue
            chain.succeeded(slot, started)
            return StreamOutcome(stream, slot, chain.attempts, asked)
        raise chain.exhausted("serve the chat request")
