"""Pass an OpenAI server-sent event stream through while reading its token usage."""

from __future__ import annotations

import re
from typing import Any

import pydantic_core

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
DONE = b"data: [DONE]\n\n"


class StreamTap:
    """Split a byte stream into SSE events and note usage and generated characters.

    With ``drop_usage_only`` the usage-only chunk (empty ``choices``) that the router asked
    for on the client's behalf is removed, so the client sees the stream it asked for.
    """

    def __init__(self, *, drop_usage_only: bool) -> None:
        self._drop = drop_usage_only
        self._buffer = b""
        self.usage: dict[str, Any] | None = None
        self.content_chars = 0
        self.done = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete events to forward, each ending in a blank line; ``[DONE]`` is held back."""
        self._buffer += chunk
        out: list[bytes] = []
        start = 0
        for match in _EVENT_END.finditer(self._buffer):
            event = self._buffer[start : match.end()]
            start = match.end()
            if self._keep(event):
                out.append(event)
        self._buffer = self._buffer[start:]
        return out

    def rest(self) -> bytes:
        """An incomplete trailing event, forwarded as is when the upstream closes."""
        rest, self._buffer = self._buffer, b""
        return rest

    def _keep(self, event: bytes) -> bool:
        data = b"".join(
            line[5:].lstrip() for line in event.splitlines() if line.startswith(b"data:")
        )
        if not data:
            return True  # comments, keep-alives, event: lines
        if data.strip() == b"[DONE]":
            self.done = True
            return False
        try:
            obj = pydantic_core.from_json(data)
        except ValueError:
            return True  # not ours to judge; pass it on
        if not isinstance(obj, dict):
            return True
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        choices = obj.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                content = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(content, str):
                    self.content_chars += len(content)
        return not (self._drop and isinstance(usage, dict) and choices == [])
