"""STAND-IN for vLLM's `vllm serve`, for tests only. It is not vLLM, runs no model
and never ships.

vLLM cannot run here (no AMD GPU, and upstream has no gfx906 build), so the `vllm`
Molecule scenario installs this module, packaged as the wheel `vllm-standin` by
tests/lab/fixtures/vllm_standin.py, with pip from a local wheelhouse. It puts a
`vllm` command on the PATH that parses the `vllm serve` flags the role uses (an
unknown flag or a bad value fails as vLLM's argument parser would) and answers
the part of vLLM's OpenAI-compatible HTTP API the role and the router use:

    GET  /health                 200, empty body, once the "model" is loaded
    GET  /version                {"version": ...}
    GET  /v1/models              the served model names (bearer key required if set)
    POST /v1/chat/completions    a chat.completion whose text is the stand-in's, not a model's
    POST /v1/completions         likewise

As in vLLM, the key comes from --api-key or the VLLM_API_KEY environment variable,
and only /v1 paths require it. The port opens only after "loading", which takes
VLLM_STANDIN_LOAD_SECONDS (default 0), so a caller's wait for /health is exercised.
At start it writes a marker into the Hugging Face cache layout under HF_HOME,
where vLLM would download the model, so tests can see the service may write there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "0.1.0+standin"
QUANTIZATIONS = ["awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors", "fp8", "gguf", "bitsandbytes"]
DTYPES = ["auto", "half", "float16", "bfloat16", "float", "float32"]


def log(msg: str) -> None:
    print(f"INFO vllm-standin: {msg}", flush=True)


def fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("must be in (0, 1]")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vllm", description="stand-in for the vLLM CLI (tests only)")
    top.add_argument("-v", "--version", action="version", version=VERSION)
    sub = top.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the OpenAI-compatible API (stand-in)")
    serve.add_argument("model")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", nargs="+", default=None)
    serve.add_argument("--gpu-memory-utilization", type=fraction, default=0.9)
    serve.add_argument("--max-model-len", type=int, default=None)
    serve.add_argument("--quantization", "-q", choices=QUANTIZATIONS, default=None)
    serve.add_argument("--dtype", choices=DTYPES, default="auto")
    serve.add_argument("--api-key", default=None)
    serve.add_argument("--enforce-eager", action="store_true")
    serve.add_argument("--max-num-seqs", type=int, default=None)
    serve.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    return top


def make_handler(args: argparse.Namespace, names: list[str], key: str | None):
    created = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: object) -> None:  # noqa: A002 (stdlib signature)
            log(f"{self.address_string()} {format % a}")

        def reply(self, status: int, body: object | None = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def authorised(self) -> bool:
            if key is None or not self.path.startswith("/v1"):
                return True
            if self.headers.get("Authorization", "") == f"Bearer {key}":
                return True
            self.reply(HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized"})
            return False

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            if not self.authorised():
                return
            if self.path == "/health":
                self.reply(HTTPStatus.OK)
            elif self.path == "/version":
                self.reply(HTTPStatus.OK, {"version": VERSION})
            elif self.path == "/v1/models":
                self.reply(HTTPStatus.OK, {"object": "list", "data": [
                    {"id": name, "object": "model", "created": created, "owned_by": "vllm",
                     "root": args.model, "parent": None, "max_model_len": args.max_model_len}
                    for name in names]})
            else:
                self.reply(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})

        def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
            if not self.authorised():
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError as exc:
                self.reply(HTTPStatus.BAD_REQUEST, {"object": "error", "message": str(exc), "code": 400})
                return
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self.reply(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
                return
            model = request.get("model", names[0])
            if model not in names:
                self.reply(HTTPStatus.NOT_FOUND, {"object": "error", "type": "NotFoundError", "code": 404,
                                                  "message": f"The model `{model}` does not exist."})
                return
            if self.path == "/v1/chat/completions":
                messages = request.get("messages") or []
                prompt = str(messages[-1].get("content", "")) if messages else ""
            else:
                prompt = str(request.get("prompt", ""))
            text = f"[vllm stand-in, no model ran] {prompt}"
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                     "total_tokens": len(prompt.split()) + len(text.split())}
            if self.path == "/v1/chat/completions":
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                kind, prefix = "chat.completion", "chatcmpl"
            else:
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
                kind, prefix = "text_completion", "cmpl"
            self.reply(HTTPStatus.OK, {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind,
                                       "created": int(time.time()), "model": model,
                                       "choices": [choice], "usage": usage})

    return Handler


def serve(args: argparse.Namespace) -> None:
    names = args.served_model_name or [args.model]
    key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    log(f"stand-in for vLLM, not vLLM: model={args.model} served as {names} "
        f"quantization={args.quantization} dtype={args.dtype} max_model_len={args.max_model_len} "
        f"gpu_memory_utilization={args.gpu_memory_utilization} auth={'bearer' if key else 'none'}")
    # Where vLLM would download the model: the Hugging Face cache layout.
    if not args.model.startswith("/"):
        hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
        marker = hub / ("models--" + args.model.replace("/", "--")) / "STANDIN"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by the vLLM stand-in; no model was downloaded\n")
    time.sleep(float(os.environ.get("VLLM_STANDIN_LOAD_SECONDS", "0")))
    server = ThreadingHTTPServer((args.host or "0.0.0.0", args.port), make_handler(args, names, key))
    log(f"listening on {args.host or '0.0.0.0'}:{args.port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "serve":
        serve(args)


if __name__ == "__main__":
    main(sys.argv[1:])
