"""Prompts for LLM compression, versioned.

An envelope records the prompt version that made it, so a later release can change the prompts
and still reconstruct old envelopes with the matching reconstruction prompt. Never edit a
published version in place: add a new one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSet:
    compress_system: str
    reconstruct_system: str


PROMPT_VERSIONS: dict[str, PromptSet] = {
    "v1": PromptSet(
        compress_system=(
            "You compress text so that it can be expanded again later. Rewrite the user's text "
            "as densely as possible: drop filler words, use abbreviations and terse notation. "
            "Keep every name, number, date, unit, identifier and negation exactly as written. "
            "Reply with the compressed text only, no preamble."
        ),
        reconstruct_system=(
            "The user's message is a densely compressed note. Expand it back into the full, "
            "natural text it was made from. Keep every name, number, date, unit, identifier and "
            "negation exactly as written and add no facts. Reply with the expanded text only."
        ),
    ),
}


def compress_messages(version: str, text: str) -> list[dict[str, str]]:
    prompts = PROMPT_VERSIONS[version]
    return [
        {"role": "system", "content": prompts.compress_system},
        {"role": "user", "content": text},
    ]


def reconstruct_messages(version: str, payload: str) -> list[dict[str, str]]:
    prompts = PROMPT_VERSIONS[version]
    return [
        {"role": "system", "content": prompts.reconstruct_system},
        {"role": "user", "content": payload},
    ]


def compress_budget(chars: int) -> int:
    """max_tokens for a compression: about as many tokens as the input has (4 characters per
    token). A longer answer could not pass the ratio check anyway, and without a bound a model
    that never stops (a base model, a broken template) runs to the end of its context."""
    return chars // 4 + 32


def reconstruct_budget(chars: int) -> int:
    """max_tokens for an expansion back to ``chars`` characters, with a third to spare."""
    return chars // 3 + 32
