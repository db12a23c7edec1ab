"""Compress and reconstruct through the routing chain.

LLM compression asks a model for a dense rewrite; with verification on, the same backend
expands it back and :func:`llm_router.quality.similarity` scores the round trip. A failed
call, an empty or non-shrinking output, or a score under the threshold moves on to the next
backend; zstd ends every compression chain, so compression itself cannot fail.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_router.backends import (
    BackendFailure,
    DecompressedTooLarge,
    InvalidFrame,
    OpenAIBackend,
    Usage,
    ZstdCodec,
)
from llm_router.config import Quality
from llm_router.envelope import ENVELOPE_VERSION, Envelope, OriginalInfo, describe
from llm_router.errors import ApiError
from llm_router.ledger import UsageRow
from llm_router.prompts import (
    PROMPT_VERSIONS,
    compress_budget,
    compress_messages,
    reconstruct_budget,
    reconstruct_messages,
)
from llm_router.quality import QualityScore, similarity
from llm_router.routing import LOW_RATIO, QUALITY, Attempt, Chain, Router, Slot

# Above this size CPU-heavy work (zstd, scoring) runs in a thread to keep the event loop free.
_OFFLOAD_BYTES = 64 * 1024
EMPTY = "empty_output"


@dataclass
class CompressOutcome:
    envelope: Envelope
    backend: str
    model: str | None
    compressed_bytes: int
    quality: QualityScore | None
    verified: bool
    threshold: float
    attempts: list[Attempt]
    usage: list[UsageRow] = field(default_factory=list)


@dataclass
class ReconstructOutcome:
    text: str
    backend: str
    model: str | None
    compressed_bytes: int
    attempts: list[Attempt]
    usage: list[UsageRow] = field(default_factory=list)


class Compressor:
    def __init__(
        self,
        router: Router,
        llms: Mapping[str, OpenAIBackend],
        codecs: Mapping[str, ZstdCodec],
        *,
        prompt_version: str,
        threshold: float,
        verify_default: bool,
        min_llm_ratio: float,
        max_decompressed_bytes: int,
    ) -> None:
        self.router = router
        self.llms = llms
        self.codecs = codecs
        self.prompt_version = prompt_version
        self.threshold = threshold
        self.verify_default = verify_default
        self.min_llm_ratio = min_llm_ratio
        self.max_decompressed_bytes = max_decompressed_bytes

    def should_verify(self, quality: Quality, verify: bool | None) -> bool:
        """An explicit choice wins; otherwise low never verifies, high always does."""
        if verify is not None:
            return verify
        return {"low": False, "normal": self.verify_default, "high": True}[quality]

    # --- compress ----------------------------------------------------------------------------

    async def compress(
        self, text: str, quality: Quality, verify: bool | None, prefer: str | None
    ) -> CompressOutcome:
        verifying = self.should_verify(quality, verify)
        original = describe(text)
        chain = self.router.chain("compress", quality, prefer)
        usage: list[UsageRow] = []
        for slot in chain:
            started = time.perf_counter()
            if slot.name in self.codecs:
                outcome = await self._zstd(slot, text, original, chain)
                outcome.usage = [*usage, *outcome.usage]
                return outcome
            accepted = await self._try_llm(slot, text, original, verifying, chain, usage, started)
            if accepted is not None:
                accepted.usage = usage
                return accepted
        raise chain.exhausted("compress the text")

    async def _try_llm(
        self,
        slot: Slot,
        text: str,
        original: OriginalInfo,
        verifying: bool,
        chain: Chain,
        usage: list[UsageRow],
        started: float,
    ) -> CompressOutcome | None:
        backend = self.llms[slot.name]
        try:
            done = await backend.complete(
                compress_messages(self.prompt_version, text), compress_budget(len(text))
            )
        except BackendFailure as failure:
            chain.failed(slot, failure, started)
            return None
        first_row = len(usage)  # this backend's rows, marked accepted if its result is used
        usage.append(_row(slot, "compress", done.usage))
        payload = done.text.strip()
        size = len(payload.encode("utf-8"))
        if not payload:
            chain.rejected(slot, EMPTY, "the model returned no text", started)
            return None
        ratio = original.bytes / size
        if ratio < self.min_llm_ratio:
            detail = f"ratio {ratio:.2f} is below min_llm_ratio {self.min_llm_ratio:g}"
            chain.rejected(slot, LOW_RATIO, detail, started)
            return None
        score: QualityScore | None = None
        if verifying:
            messages = reconstruct_messages(self.prompt_version, payload)
            try:
                back = await backend.complete(messages, reconstruct_budget(len(text)))
            except BackendFailure as failure:
                chain.failed(slot, failure, started)
                return None
            usage.append(_row(slot, "verify", back.usage))
            score = await _score(text, back.text)
            if score.score < self.threshold:
                detail = f"quality {score.score:.3f} is below the threshold {self.threshold:g}"
                chain.rejected(slot, QUALITY, detail, started)
                return None
        usage[first_row:] = [dataclasses.replace(row, accepted=True) for row in usage[first_row:]]
        chain.succeeded(slot, started)
        envelope = Envelope(
            version=ENVELOPE_VERSION,
            method="llm",
            backend=slot.name,
            model=backend.model,
            prompt_version=self.prompt_version,
            encoding="text",
            payload=payload,
            original=original,
        )
        return CompressOutcome(
            envelope,
            slot.name,
            backend.model,
            size,
            score,
            verifying,
            self.threshold,
            chain.attempts,
        )

    async def _zstd(
        self, slot: Slot, text: str, original: OriginalInfo, chain: Chain
    ) -> CompressOutcome:
        started = time.perf_counter()
        codec = self.codecs[slot.name]
        data = text.encode("utf-8")
        if len(data) > _OFFLOAD_BYTES:
            frame = await asyncio.to_thread(codec.compress, data)
        else:
            frame = codec.compress(data)
        chain.succeeded(slot, started)
        envelope = Envelope(
            version=ENVELOPE_VERSION,
            method="zstd",
            backend=slot.name,
            model=None,
            prompt_version=None,
            encoding="base64",
            payload=base64.b64encode(frame).decode("ascii"),
            original=original,
        )
        lossless = QualityScore(1.0, 1.0, 1.0, 1.0)
        return CompressOutcome(
            envelope,
            slot.name,
            None,
            len(frame),
            lossless,
            False,
            self.threshold,
            chain.attempts,
            [_row(slot, "compress", Usage(), accepted=True)],
        )

    # --- reconstruct -------------------------------------------------------------------------

    async def reconstruct(self, envelope: Envelope) -> ReconstructOutcome:
        if envelope.method == "zstd":
            return await self._unzstd(envelope)
        return await self._expand(envelope)

    async def _unzstd(self, envelope: Envelope) -> ReconstructOutcome:
        started = time.perf_counter()
        limit = self.max_decompressed_bytes
        if envelope.original.bytes > limit:
            raise _too_large(f"envelope.original.bytes is {envelope.original.bytes}", limit)
        try:
            frame = base64.b64decode(envelope.payload, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400,
                "invalid_envelope",
                "envelope.payload: not valid base64",
                param="envelope.payload",
            ) from None
        try:
            if len(frame) > _OFFLOAD_BYTES:
                data = await asyncio.to_thread(ZstdCodec.decompress, frame, limit)
            else:
                data = ZstdCodec.decompress(frame, limit)
        except DecompressedTooLarge as exc:
            raise _too_large(str(exc), limit) from None
        except InvalidFrame:
            raise ApiError(
                400,
                "invalid_envelope",
                "envelope.payload: not a valid zstd frame",
                param="envelope.payload",
            ) from None
        if hashlib.sha256(data).hexdigest() != envelope.original.sha256:
            raise ApiError(
                422,
                "checksum_mismatch",
                "envelope.payload: decompressed data does not match envelope.original.sha256",
                param="envelope.payload",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(
                422,
                "invalid_utf8",
                "envelope.payload: decompressed data is not valid UTF-8",
                param="envelope.payload",
            ) from None
        name = envelope.backend if envelope.backend in self.codecs else next(iter(self.codecs))
        slot = self.router.slot(name)
        assert slot is not None
        attempt = Attempt(name, "ok", "ok", "", (time.perf_counter() - started) * 1000)
        return ReconstructOutcome(
            text, name, None, len(frame), [attempt], [_row(slot, "reconstruct", Usage(), True)]
        )

    async def _expand(self, envelope: Envelope) -> ReconstructOutcome:
        version = envelope.prompt_version or ""
        if version not in PROMPT_VERSIONS:
            raise ApiError(
                400,
                "unknown_prompt_version",
                f"envelope.prompt_version: unknown prompt version {version!r}; known: "
                + ", ".join(sorted(PROMPT_VERSIONS)),
                param="envelope.prompt_version",
            )
        known = self.router.slot(envelope.backend)
        chain = self.router.chain("reconstruct", "normal", envelope.backend if known else None)
        if known is None or not known.is_llm:
            chain.attempts.append(
                Attempt(envelope.backend, "skipped", "not_configured", "no such LLM backend here")
            )
        limit = self.max_decompressed_bytes
        if envelope.original.chars > limit:
            # The reconstruction's token budget follows from this number: bound it first.
            raise _too_large(f"envelope.original.chars is {envelope.original.chars}", limit)
        budget = reconstruct_budget(envelope.original.chars)
        messages = reconstruct_messages(version, envelope.payload)
        usage: list[UsageRow] = []
        for slot in chain:
            started = time.perf_counter()
            backend = self.llms[slot.name]
            try:
                done = await backend.complete(messages, budget)
            except BackendFailure as failure:
                chain.failed(slot, failure, started)
                continue
            if not done.text.strip():
                usage.append(_row(slot, "reconstruct", done.usage))
                chain.rejected(slot, EMPTY, "the model returned no text", started)
                continue
            usage.append(_row(slot, "reconstruct", done.usage, accepted=True))
            chain.succeeded(slot, started)
            return ReconstructOutcome(
                done.text.strip(),
                slot.name,
                backend.model,
                len(envelope.payload.encode("utf-8")),
                chain.attempts,
                usage,
            )
        raise chain.exhausted("reconstruct the envelope")


def _row(slot: Slot, call: str, usage: Usage, accepted: bool = False) -> UsageRow:
    return UsageRow(
        backend=slot.name,
        role=slot.cfg.role,
        call=call,
        accepted=accepted,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        price_per_1k_tokens=slot.cfg.price_per_1k_tokens,
        estimated=usage.estimated,
    )


async def _score(original: str, reconstruction: str) -> QualityScore:
    if len(original) + len(reconstruction) > _OFFLOAD_BYTES:
        return await asyncio.to_thread(similarity, original, reconstruction)
    return similarity(original, reconstruction)


def _too_large(what: str, limit: int) -> ApiError:
    return ApiError(
        413,
        "decompressed_too_large",
        f"envelope.payload: {what}; max_decompressed_bytes is {limit}",
        param="envelope.payload",
    )
