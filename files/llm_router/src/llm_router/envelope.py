"""The compressed envelope: everything needed to reconstruct, with no server state.

Version 1::

    {"version": 1, "method": "llm" | "zstd", "backend": "local", "model": "qwen2.5:...",
     "prompt_version": "v1", "encoding": "text" | "base64", "payload": "...",
     "original": {"bytes": 1234, "chars": 1200, "sha256": "..."}}

``llm`` envelopes carry the model's compressed text and are lossy; ``zstd`` envelopes carry a
base64 zstd frame and reconstruct to exactly the original, checked against ``original.sha256``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llm_router.errors import ApiError, invalid_request

ENVELOPE_VERSION = 1
SUPPORTED_VERSIONS = (ENVELOPE_VERSION,)
MAX_SAFE_INT = 2**53 - 1  # the largest integer every JSON reader holds exactly


class OriginalInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    bytes: int = Field(ge=0, le=MAX_SAFE_INT)
    chars: int = Field(ge=0, le=MAX_SAFE_INT)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: int = Field(ge=1, le=MAX_SAFE_INT)
    method: Literal["llm", "zstd"]
    backend: str
    model: str | None = None
    prompt_version: str | None = None
    encoding: Literal["text", "base64"]
    payload: str
    original: OriginalInfo

    @model_validator(mode="after")
    def _consistent(self) -> Envelope:
        wanted = "text" if self.method == "llm" else "base64"
        if self.encoding != wanted:
            raise ValueError(f"method {self.method} needs encoding {wanted}")
        if self.method == "llm" and not self.prompt_version:
            raise ValueError("an llm envelope needs prompt_version")
        if not self.payload.strip():
            raise ValueError("payload must not be empty")
        return self


def describe(text: str) -> OriginalInfo:
    data = text.encode("utf-8")
    return OriginalInfo(bytes=len(data), chars=len(text), sha256=hashlib.sha256(data).hexdigest())


def parse_envelope(raw: Any) -> Envelope:
    """Validate an envelope from a request; unknown versions get their own clear error."""
    if not isinstance(raw, dict):
        raise ApiError(400, "invalid_envelope", "envelope: must be an object", param="envelope")
    version = raw.get("version")
    if type(version) is not int:
        raise ApiError(
            400,
            "invalid_envelope",
            "envelope.version: must be an integer",
            param="envelope.version",
        )
    if version not in SUPPORTED_VERSIONS:
        raise ApiError(
            400,
            "unsupported_envelope_version",
            f"envelope.version: unsupported version {version}; this router reads "
            + ", ".join(str(v) for v in SUPPORTED_VERSIONS),
            param="envelope.version",
        )
    try:
        return Envelope.model_validate(raw)
    except ValidationError as exc:
        error = invalid_request(exc, prefix="envelope")
        error.code = "invalid_envelope"
        raise error from None
