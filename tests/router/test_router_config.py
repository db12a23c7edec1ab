"""Configuration: defaults, the example file, and errors that name the key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_router.cli import main
from llm_router.config import ConfigError, load_config, parse_config, read_secrets
from routerkit import EXAMPLE_CONFIG

MINIMAL: dict[str, Any] = {
    "backends": [
        {
            "name": "local",
            "kind": "openai",
            "role": "local",
            "base_url": "http://127.0.0.1:11434/v1/",
            "model": "qwen2.5:7b-instruct-q4_K_M",
        },
        {
            "name": "cloud",
            "kind": "openai",
            "role": "cloud",
            "base_url": "http://localhost:8045/v1",
            "model": "gpt-4o-mini",
            "api_key_env": "CLOUD_API_KEY",
            "price_per_1k_tokens": 0.001,
        },
        {"name": "zstd", "kind": "zstd", "role": "fallback"},
    ]
}


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(MINIMAL)
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
    node[path[-1]] = value
    return raw


def problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_defaults_follow_the_plan() -> None:
    cfg = parse_config(MINIMAL)
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8090)
    assert cfg.routing.quality_threshold == 0.85
    assert cfg.routing.high_quality_skips == ("local",)
    assert cfg.baseline.price_per_1k_tokens == 0.001
    assert cfg.ledger.synchronous == "normal"
    assert cfg.prompts.version == "v1"
    assert cfg.backends[0].base_url == "http://127.0.0.1:11434/v1"  # trailing slash dropped


def test_example_config_is_valid_and_matches_the_plan() -> None:
    cfg = load_config(EXAMPLE_CONFIG)
    local, cloud, fallback = cfg.backends
    assert (local.role, local.base_url, local.model) == (
        "local",
        "http://127.0.0.1:11434/v1",
        "qwen2.5:7b-instruct-q4_K_M",
    )
    assert local.price_per_1k_tokens == 0.0001
    assert (cloud.role, cloud.base_url, cloud.price_per_1k_tokens) == (
        "cloud",
        "http://localhost:8045/v1",
        0.001,
    )
    assert (fallback.kind, fallback.price_per_1k_tokens) == ("zstd", 0)
    assert cfg.server.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["backends", 1, "timeout_s"], 0, "backends[1].timeout_s: must be > 0"),
        (["backends", 0, "kind"], "grpc", "backends[0].kind: must be one of 'openai' or 'zstd'"),
        (["backends", 0, "role"], "primary", "backends[0].role: must be one of"),
        (["backends", 0, "base_url"], "localhost:11434", "backends[0].base_url: must start with"),
        (["backends", 0, "name"], "Local GPU", "backends[0].name: must be lower-case"),
        (
            ["backends", 1, "price_per_1k_tokens"],
            -1,
            "backends[1].price_per_1k_tokens: must be >= 0",
        ),
        (["backends", 2, "level"], 23, "backends[2].level: must be <= 22"),
        (["backends", 1, "api_key_env"], "not a name", "backends[1].api_key_env: must be the name"),
        (["server", "port"], 70000, "server.port: must be <= 65535"),
        (["server", "port"], "http", "server.port: must be an integer"),
        (["server", "max_body_bytes"], 0, "server.max_body_bytes: must be > 0"),
        (["routing", "quality_threshold"], 1.5, "routing.quality_threshold: must be <= 1"),
        (["routing", "failure_threshold"], 0, "routing.failure_threshold: must be >= 1"),
        (["routing", "cooldown_s"], -5, "routing.cooldown_s: must be > 0"),
        (["routing", "verfy"], True, "routing.verfy: unknown key"),
        (["ledger", "synchronous"], "off", "ledger.synchronous: must be one of"),
        (["prompts", "version"], "v0", "prompts.version: unknown prompt version"),
        (["backends"], [], "backends: must not be empty"),
    ],
)
def test_errors_name_the_key(path: list[Any], value: Any, expected: str) -> None:
    found = problems(with_change(path, value))
    assert any(p.startswith(expected) for p in found), found


def test_semantic_errors_name_the_key() -> None:
    raw = copy.deepcopy(MINIMAL)
    del raw["backends"][0]["base_url"]
    raw["backends"][1]["name"] = "local"
    found = problems(raw)
    assert "backends[0].base_url: is required when kind is openai" in found
    assert "backends[1].name: duplicate of backends[0].name" in found


def test_missing_required_key() -> None:
    raw = copy.deepcopy(MINIMAL)
    del raw["backends"][0]["kind"]
    assert "backends[0].kind: is required" in problems(raw)
    assert problems({}) == ["backends: is required"]
    assert problems(["not", "a", "mapping"]) == ["(top level): must be a mapping"]


@pytest.mark.parametrize("key", ["api_key", "API_KEY", "token", "password"])
def test_inline_secrets_are_refused_without_echoing_them(key: str) -> None:
    secret = "sk-live-THIS-MUST-NOT-BE-PRINTED"
    found = problems(with_change(["backends", 1, key], secret))
    assert len(found) == 1
    assert found[0].startswith(f"backends[1].{key}: secrets must not be in the config file")
    assert "api_key_env" in found[0]
    assert secret not in found[0]


def test_no_value_is_echoed_in_any_error() -> None:
    value = "sk-live-LOOKS-LIKE-A-KEY"
    for path in (["backends", 0, "timeout_s"], ["server", "port"], ["routing", "verify"]):
        for problem in problems(with_change(path, value)):
            assert value not in problem


def test_zstd_is_added_when_missing() -> None:
    raw = copy.deepcopy(MINIMAL)
    raw["backends"] = raw["backends"][:2]
    cfg = parse_config(raw)
    assert [(b.name, b.kind) for b in cfg.backends][-1] == ("zstd", "zstd")


def test_secrets_come_from_the_environment() -> None:
    raw = with_change(["server", "auth_tokens_env"], "LLM_ROUTER_TOKENS")
    cfg = parse_config(raw)
    secrets = read_secrets(cfg, {"CLOUD_API_KEY": "k1", "LLM_ROUTER_TOKENS": "a, b,,c "})
    assert secrets.api_keys == {"cloud": "k1"}
    assert secrets.auth_tokens == ("a", "b", "c")
    with pytest.raises(ConfigError) as info:
        read_secrets(cfg, {})
    assert info.value.problems == [
        "backends[1].api_key_env: environment variable CLOUD_API_KEY is not set",
        "server.auth_tokens_env: environment variable LLM_ROUTER_TOKENS is not set or holds"
        " no token",
    ]


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("backends: [\n  - name: x\n  kind")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml")


# --- the CLI ---------------------------------------------------------------------------------


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ")
    assert "local (openai, local), cloud (openai, cloud), zstd (zstd, fallback)" in out


def test_check_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "router.yml"
    path.write_text(yaml.safe_dump(with_change(["backends", 1, "timeout_s"], -1)))
    assert main(["check-config", str(path)]) != 0
    err = capsys.readouterr().err
    assert "backends[1].timeout_s: must be > 0" in err


def test_serve_refuses_a_bad_config_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "router.yml"
    raw = with_change(["backends", 1, "api_key"], "sk-secret-value-123")
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "llm_router", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "backends[1].api_key: secrets must not be in the config file" in proc.stderr
    assert "sk-secret-value-123" not in proc.stderr + proc.stdout


def test_serve_refuses_when_a_named_secret_is_unset(tmp_path: Path) -> None:
    path = tmp_path / "router.yml"
    path.write_text(yaml.safe_dump(MINIMAL))
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "llm_router", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode != 0
    assert "CLOUD_API_KEY is not set" in proc.stderr


def test_serve_refuses_a_ledger_it_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the ledger's directory should be")
    raw = copy.deepcopy(MINIMAL)
    raw["backends"] = raw["backends"][2:]  # zstd only: no secrets needed
    raw["ledger"] = {"path": str(blocker / "ledger.sqlite3")}
    path = tmp_path / "router.yml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "llm_router", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ledger.path: cannot open ledger")
