"""Configuration: one YAML file, validated at start.

Every error names the key path it is about (``backends[1].timeout_s: must be > 0``) and never
echoes a value, because a misplaced secret must not end up in a log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llm_router.errors import key_path, validation_problems
from llm_router.prompts import PROMPT_VERSIONS

BackendKind = Literal["openai", "zstd"]
BackendRole = Literal["local", "cloud", "fallback"]
Quality = Literal["low", "normal", "high"]

# Keys that would hold a secret. The config names environment variables instead.
_SECRET_KEYS = frozenset({"api_key", "apikey", "key", "token", "tokens", "password", "secret"})
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BACKEND_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    """A configuration problem; ``str()`` is one line per problem, each starting with a key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_decompressed_bytes: int = Field(default=8_388_608, gt=0)
    auth_tokens_env: str | None = None
    metrics_require_auth: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Host names (besides loopback and localhost) the router may be reached by; "*" for any.
    allowed_hosts: tuple[str, ...] = ()
    # Origins a browser page may call the router from (CORS); none by default.
    cors_origins: tuple[str, ...] = ()

    @field_validator("auth_tokens_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)


class BackendConfig(_Strict):
    name: str
    kind: BackendKind
    role: BackendRole
    base_url: str | None = None
    model: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    price_per_1k_tokens: float = Field(default=0.0, ge=0)
    api_key_env: str | None = None
    health_path: str = "/models"
    health_url: str | None = None  # a full URL instead, e.g. Ollama's /api/version
    level: int = Field(default=19, ge=1, le=22)
    max_connections: int = Field(default=100, gt=0)
    # An answer (streamed or not) larger than this is cut off and counts as a failure.
    max_response_bytes: int = Field(default=16_777_216, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _BACKEND_NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '.', '_' or '-' (at most 63)")
        return value

    @field_validator("base_url", "health_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("health_path")
    @classmethod
    def key_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return _check_env_name(value)

    @property
    def is_llm(self) -> bool:
        return self.kind == "openai"


class RoutingConfig(_Strict):
    quality_threshold: float = Field(default=0.85, ge=0, le=1)
    verify: bool = True
    min_llm_ratio: float = Field(default=1.0, ge=0)
    high_quality_skips: tuple[BackendRole, ...] = ("local",)
    failure_threshold: int = Field(default=3, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)
    health_interval_s: float = Field(default=10.0, gt=0)
    health_timeout_s: float = Field(default=2.0, gt=0)


class LedgerConfig(_Strict):
    path: str = "/var/lib/llm-router/ledger.sqlite3"
    synchronous: Literal["normal", "full"] = "normal"


class BaselineConfig(_Strict):
    price_per_1k_tokens: float = Field(default=0.001, ge=0)


class PromptsConfig(_Strict):
    version: str = "v1"

    @field_validator("version")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROMPT_VERSIONS:
            raise ValueError(
                f"unknown prompt version (known: {', '.join(sorted(PROMPT_VERSIONS))})"
            )
        return value


class RouterConfig(_Strict):
    server: ServerConfig = ServerConfig()
    backends: tuple[BackendConfig, ...] = Field(min_length=1)
    routing: RoutingConfig = RoutingConfig()
    ledger: LedgerConfig = LedgerConfig()
    baseline: BaselineConfig = BaselineConfig()
    prompts: PromptsConfig = PromptsConfig()

    def backend(self, name: str) -> BackendConfig | None:
        return next((b for b in self.backends if b.name == name), None)


@dataclass(frozen=True)
class Secrets:
    """Values read from the environment at start. Never logged, never returned."""

    api_keys: Mapping[str, str]  # backend name -> key
    auth_tokens: tuple[str, ...]

    def all_values(self) -> list[str]:
        return [v for v in (*self.api_keys.values(), *self.auth_tokens) if v]


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError("must be the name of an environment variable, e.g. CLOUD_API_KEY")
    return value


def _secret_key_problems(raw: Any) -> list[str]:
    """Find keys that look like inline secrets, before pydantic reports them as merely unknown."""
    problems: list[str] = []

    def walk(node: Any, loc: tuple[int | str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and key.lower() in _SECRET_KEYS:
                    problems.append(
                        f"{key_path((*loc, key))}: secrets must not be in the config file; "
                        "put the value in an environment variable and name that variable "
                        "(api_key_env for a backend, server.auth_tokens_env for tokens)"
                    )
                else:
                    walk(value, (*loc, key))
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, (*loc, i))

    walk(raw, ())
    return problems


def _semantic_problems(raw: Mapping[str, Any]) -> list[str]:
    """Rules across keys, read from the raw document so they are reported in the same pass as
    the type errors (an entry with a wrong type elsewhere is still checked here)."""
    problems: list[str] = []
    backends = raw.get("backends")
    if not isinstance(backends, list):
        return problems
    seen: dict[str, int] = {}
    for i, backend in enumerate(backends):
        if not isinstance(backend, Mapping):
            continue
        where = f"backends[{i}]"
        name = backend.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append(f"{where}.name: duplicate of backends[{seen[name]}].name")
            seen.setdefault(name, i)
        base_url = backend.get("base_url")
        kind = backend.get("kind")
        if kind == "openai":
            if base_url is None:
                problems.append(f"{where}.base_url: is required when kind is openai")
            elif (
                isinstance(base_url, str)
                and base_url.startswith(("http://", "https://"))
                and not base_url.rstrip("/").endswith("/v1")
            ):
                problems.append(
                    f"{where}.base_url: must end in /v1, the root of the OpenAI-compatible API "
                    "(e.g. http://127.0.0.1:11434/v1)"
                )
            if not backend.get("model"):
                problems.append(f"{where}.model: is required when kind is openai")
        elif kind == "zstd" and (base_url is not None or backend.get("api_key_env") is not None):
            problems.append(f"{where}: base_url and api_key_env only apply to kind openai")
    return problems


def _type_problems(raw: Mapping[str, Any], reported: set[str]) -> list[str]:
    try:
        RouterConfig.model_validate(raw)
    except ValidationError as exc:
        found = validation_problems(exc)
    else:
        return []
    paths = [path for path, _ in found]
    problems = []
    for path, message in found:
        if path in reported:
            continue  # already reported, better worded (an inline secret)
        if message == "must not be empty" and any(
            p != path and p.startswith((f"{path}[", f"{path}.")) for p in paths
        ):
            continue  # a list whose items failed is not empty: pydantic's echo of those errors
        problems.append(f"{path}: {message}")
    return problems


def parse_config(raw: Any) -> RouterConfig:
    """Validate an already-parsed YAML document; every problem is reported in one pass."""
    if not isinstance(raw, Mapping):
        raise ConfigError(["(top level): must be a mapping"])
    problems = _secret_key_problems(raw)
    reported = {p.split(": ", 1)[0] for p in problems}
    problems += _type_problems(raw, reported)
    problems += [p for p in _semantic_problems(raw) if p not in problems]
    if problems:
        raise ConfigError(problems)
    return with_zstd_fallback(RouterConfig.model_validate(raw))


def with_zstd_fallback(cfg: RouterConfig) -> RouterConfig:
    """Append a zstd backend when none is configured: compression must always have a last resort."""
    if any(b.kind == "zstd" for b in cfg.backends):
        return cfg
    name = "zstd" if cfg.backend("zstd") is None else "zstd-fallback"
    extra = BackendConfig(name=name, kind="zstd", role="fallback")
    return cfg.model_copy(update={"backends": (*cfg.backends, extra)})


def load_config(path: str | os.PathLike[str]) -> RouterConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"(file): {path} is not valid UTF-8"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): not valid YAML{where}"]) from None
    return parse_config(raw)


def read_secrets(cfg: RouterConfig, environ: Mapping[str, str]) -> Secrets:
    """Read keys and tokens from the environment; a named variable that is unset is an error."""
    problems: list[str] = []
    keys: dict[str, str] = {}
    for i, backend in enumerate(cfg.backends):
        if backend.api_key_env is None:
            continue
        value = environ.get(backend.api_key_env, "").strip()
        if not value:
            problems.append(
                f"backends[{i}].api_key_env: environment variable {backend.api_key_env} is not set"
            )
        keys[backend.name] = value
    tokens: tuple[str, ...] = ()
    env = cfg.server.auth_tokens_env
    if env is not None:
        tokens = tuple(t.strip() for t in environ.get(env, "").split(",") if t.strip())
        if not tokens:
            problems.append(
                f"server.auth_tokens_env: environment variable {env} is not set or holds no token"
            )
    if problems:
        raise ConfigError(problems)
    return Secrets(api_keys=keys, auth_tokens=tokens)
