"""Errors the API returns to callers, in OpenAI's error shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """A request the router refuses or cannot serve; becomes a JSON error response.

    ``message`` is shown to the caller, so it must never hold a secret or a stack trace.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra or {}

    @property
    def error_type(self) -> str:
        if self.status in (401, 403):
            return "authentication_error"
        if self.status >= 500:
            return "service_unavailable" if self.status == 503 else "server_error"
        return "invalid_request_error"

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "param": self.param,
        }
        error.update(self.extra)
        return {"error": error}


def bad_request(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(400, code, message, param=param)


def key_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """``('backends', 1, 'timeout_s')`` -> ``backends[1].timeout_s``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_MESSAGES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "greater_than": lambda c: f"must be > {c.get('gt')}",
    "greater_than_equal": lambda c: f"must be >= {c.get('ge')}",
    "less_than": lambda c: f"must be < {c.get('lt')}",
    "less_than_equal": lambda c: f"must be <= {c.get('le')}",
    "missing": lambda c: "is required",
    "extra_forbidden": lambda c: "unknown key",
    "too_short": lambda c: "must not be empty",
    "string_too_short": lambda c: "must not be empty",
    "literal_error": lambda c: f"must be one of {c.get('expected')}",
    "int_parsing": lambda c: "must be an integer",
    "int_type": lambda c: "must be an integer",
    "float_parsing": lambda c: "must be a number",
    "float_type": lambda c: "must be a number",
    "bool_parsing": lambda c: "must be true or false",
    "bool_type": lambda c: "must be true or false",
    "string_type": lambda c: "must be a string",
    "model_type": lambda c: "must be a mapping",
    "model_attributes_type": lambda c: "must be a mapping",
    "dict_type": lambda c: "must be a mapping",
    "tuple_type": lambda c: "must be a list",
    "list_type": lambda c: "must be a list",
    "string_pattern_mismatch": lambda c: "has the wrong format",
}


def validation_problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(key path, short message) per error; never includes the offending value."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind in _MESSAGES:
            message = _MESSAGES[kind](ctx)
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        else:
            message = err["msg"]
        problems.append((key_path(err["loc"], prefix), message))
    return problems


def invalid_request(exc: ValidationError, prefix: str = "") -> ApiError:
    problems = validation_problems(exc, prefix)
    path = problems[0][0]
    text = "; ".join(f"{p}: {m}" for p, m in problems[:5])
    return ApiError(400, "invalid_request", text, param=path)
