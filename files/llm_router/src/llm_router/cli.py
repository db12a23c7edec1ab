"""``llm-router``: serve, check a config, and talk to a running router."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from llm_router import __version__
from llm_router.config import ConfigError, load_config, read_secrets
from llm_router.ledger import Ledger, LedgerError
from llm_router.quality import similarity
from llm_router.redact import RedactingFilter, Redactor

DEFAULT_URL = "http://127.0.0.1:8090"
TOKEN_ENV = "LLM_ROUTER_TOKEN"  # noqa: S105 - the name of a variable, not a secret
EXIT_CONFIG = 2
EXIT_REQUEST = 1


def _read_input(path: str | None) -> str:
    data = sys.stdin.buffer.read() if path in (None, "-") else Path(str(path)).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SystemExit(f"error: input is not valid UTF-8 (byte {exc.start})") from None


def _post(url: str, path: str, body: dict[str, Any], timeout: float) -> int:
    headers = {"content-type": "application/json"}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        response = httpx.post(
            url.rstrip("/") + path, json=body, headers=headers, timeout=timeout, trust_env=False
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the router at {url}: {exc}", file=sys.stderr)
        return EXIT_REQUEST
    try:
        parsed = response.json()
    except ValueError:
        print(f"error: HTTP {response.status_code}, body is not JSON", file=sys.stderr)
        return EXIT_REQUEST
    print(json.dumps(parsed, indent=2, ensure_ascii=False))
    if response.status_code >= 400:
        message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) else None
        print(f"error: HTTP {response.status_code}: {message}", file=sys.stderr)
        return EXIT_REQUEST
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
        secrets = read_secrets(cfg, os.environ)
    except ConfigError as exc:
        print(f"error: {args.config}: invalid configuration", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG

    try:  # fail here, with one clear line, rather than in the middle of uvicorn's start
        ledger = Ledger(cfg.ledger.path, synchronous=cfg.ledger.synchronous, baseline_price=0)
        ledger.open()
        ledger.close()
    except LedgerError as exc:
        print(f"error: ledger.path: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    import uvicorn  # only the server needs it; keeps the client commands quick to start

    from llm_router.app import create_app

    host = args.host or cfg.server.host
    port = args.port or cfg.server.port
    _setup_logging(cfg.server.log_level, Redactor(secrets.all_values()))
    app = create_app(cfg, secrets)
    # Everything allocated so far lives as long as the process: keep the garbage collector
    # from walking it again on every full collection (those pauses show up in p99 latency).
    gc.collect()
    gc.freeze()
    logging.getLogger(__name__).info(
        "llm-router %s on %s:%d with backends %s",
        __version__,
        host,
        port,
        ", ".join(b.name for b in cfg.backends),
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,  # keep our handlers, which redact secrets
        access_log=args.access_log,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _setup_logging(level: str, redactor: Redactor) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; the router reports what matters itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {args.path}: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    names = ", ".join(f"{b.name} ({b.kind}, {b.role})" for b in cfg.backends)
    print(f"OK: {args.path}: backends {names}")
    try:
        read_secrets(cfg, os.environ)
    except ConfigError as exc:  # the service's environment may differ from this shell's
        for problem in exc.problems:
            print(f"warning: {problem} (in this shell)", file=sys.stderr)
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"text": _read_input(args.file), "quality": args.quality}
    if args.verify is not None:
        body["verify"] = args.verify
    if args.backend:
        body["backend"] = args.backend
    return _post(args.url, "/v1/compress", body, args.timeout)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    try:
        data = json.loads(_read_input(args.file))
    except json.JSONDecodeError as exc:
        print(f"error: input is not JSON: {exc}", file=sys.stderr)
        return EXIT_REQUEST
    # Accept a whole compress response as well as a bare envelope.
    envelope = data.get("envelope", data) if isinstance(data, dict) else data
    return _post(args.url, "/v1/reconstruct", {"envelope": envelope}, args.timeout)


def cmd_score(args: argparse.Namespace) -> int:
    original = Path(args.original).read_text(encoding="utf-8")
    candidate = Path(args.reconstruction).read_text(encoding="utf-8")
    print(json.dumps(similarity(original, candidate).as_dict(), indent=2, ensure_ascii=False))
    return 0


def cmd_openapi(args: argparse.Namespace) -> int:
    from llm_router.api import openapi_text

    sys.stdout.write(openapi_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-router", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the router")
    serve.add_argument("--config", required=True, help="path to the YAML configuration")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path")
    check.set_defaults(func=cmd_check_config)

    url_help = f"router URL (default: $LLM_ROUTER_URL or {DEFAULT_URL}); token from ${TOKEN_ENV}"
    for name, func, file_help in (
        ("compress", cmd_compress, "text file to compress (default: stdin)"),
        ("reconstruct", cmd_reconstruct, "envelope or compress response JSON (default: stdin)"),
    ):
        p = sub.add_parser(name, help=f"{name} through a running router")
        p.add_argument("file", nargs="?", help=file_help)
        p.add_argument(
            "--url", default=os.environ.get("LLM_ROUTER_URL", DEFAULT_URL), help=url_help
        )
        p.add_argument("--timeout", type=float, default=300.0, help="seconds (default: 300)")
        p.set_defaults(func=func)
        if name == "compress":
            p.add_argument("--quality", choices=["low", "normal", "high"], default="normal")
            p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None)
            p.add_argument("--backend", help="try this backend first")

    spec = sub.add_parser("openapi", help="print the API's OpenAPI 3.1 document")
    spec.set_defaults(func=cmd_openapi)

    score = sub.add_parser("score", help="quality score of a reconstruction, offline")
    score.add_argument("original")
    score.add_argument("reconstruction")
    score.set_defaults(func=cmd_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
