#!/usr/bin/env python3
"""How much latency does the router add, and how many requests per second does it carry?

Starts, all on loopback and as separate processes:

* an instant OpenAI-compatible stub (a few lines of asyncio, answers in microseconds),
* the router (``python -m llm_router serve``) with that stub as its local backend,

then measures in the same run, side by side:

1. latency, one request at a time, alternating "stub directly" and "through the router",
   for ``/v1/chat/completions`` and ``/v1/compress``: the router's added latency is the
   difference of the percentiles;
2. throughput: requests per second through the router with N concurrent keep-alive
   connections for a fixed time (and the stub alone, for reference), and the CPU time the
   router process spent per request, a figure that load from other processes on the machine
   does not inflate the way it inflates latency percentiles.

With ``MI50_LLAMA_SERVER`` and ``MI50_TEST_MODEL`` set it also starts llama.cpp's server with
that model and compares short chat completions directly and through the router.

Every loop is bounded by a request count and a time limit. This is a script that prints
figures, not a test: it asserts nothing. The client is a minimal HTTP/1.1 keep-alive client,
so that the load generator's own cost stays small next to what it measures; on a 2-core
machine the client, the stub and the router still share the cores, so throughput figures are
a lower bound for the router alone.

Run it with the Python that has llm-router installed (it starts ``python -m llm_router``):

    python benchmarks/router_overhead.py [--requests 2000] [--seconds 10] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

HOST = "127.0.0.1"
STUB_BODY = json.dumps(
    {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
).encode()
CHAT = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "ping"}]}).encode()
COMPRESS = json.dumps(
    {
        "text": "The quarterly report for 2024-03-15 shows 1,250 units shipped to 14 customers "
        "across Germany, with revenue of EUR 3.4 million and a margin of 12.5%. " * 3,
        "quality": "low",
    }
).encode()


# --- the instant stub --------------------------------------------------------------------------


class StubProtocol(asyncio.Protocol):
    """Answers every request with the same small chat completion, keep-alive, no parsing beyond
    what HTTP/1.1 framing needs."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower() + b"\r\n"
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 : head.find(b"\r\n", marker)])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(STUB_BODY)).encode()
                + b"\r\n\r\n"
                + STUB_BODY
            )


def run_stub(port: int) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(StubProtocol, HOST, port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- a minimal keep-alive client ---------------------------------------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._post(path, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            # The server closed the idle keep-alive connection (uvicorn does after 5 s,
            # which a slow engine on the other side can exceed): reconnect once.
            await self.close()
            await self.open()
            return await self._post(path, body)

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        marker = lower.find(b"content-length:")
        if marker < 0:
            raise RuntimeError("benchmark client needs a Content-Length response")
        length = int(lower[marker + 15 : lower.find(b"\r\n", marker)])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def latency(
    direct_port: int,
    router_port: int,
    path: str,
    body: bytes,
    direct_path: str,
    n: int,
    limit: float,
    warmup: int = 200,
) -> dict[str, Any]:
    """Alternate direct and routed requests, one at a time, so both see the same conditions."""
    direct, routed = Connection(direct_port), Connection(router_port)
    await direct.open()
    await routed.open()
    direct_body = body if path == direct_path else CHAT
    for _ in range(min(warmup, n)):  # warm-up: pools, caches, the ledger's first pages
        await direct.post(direct_path, direct_body)
        await routed.post(path, body)
    times: dict[str, list[float]] = {"direct": [], "router": []}
    deadline = time.monotonic() + limit
    errors = 0
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        await direct.post(direct_path, direct_body)
        t1 = time.perf_counter()
        status, _ = await routed.post(path, body)
        t2 = time.perf_counter()
        errors += status != 200
        times["direct"].append((t1 - t0) * 1000)
        times["router"].append((t2 - t1) * 1000)
    await direct.close()
    await routed.close()
    result: dict[str, Any] = {"requests": len(times["router"]), "errors": errors}
    for key, values in times.items():
        result[key] = {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}
    result["added"] = {
        "p50_ms": result["router"]["p50_ms"] - result["direct"]["p50_ms"],
        "p99_ms": result["router"]["p99_ms"] - result["direct"]["p99_ms"],
        "mean_ms": statistics.fmean(times["router"]) - statistics.fmean(times["direct"]),
    }
    return result


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux), all its threads included."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(
    port: int,
    path: str,
    body: bytes,
    concurrency: int,
    seconds: float,
    cap: int,
    pid: int | None = None,
) -> dict[str, Any]:
    """Requests per second with ``concurrency`` keep-alive connections; with ``pid``, also the
    CPU time that process spent per request, which CPU contention from elsewhere does not
    inflate the way it inflates latency."""
    cpu_before = cpu_seconds(pid)
    done = 0
    errors = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, errors
        conn = Connection(port)
        await conn.open()
        while time.monotonic() < stop_at and done < cap:
            status, _ = await conn.post(path, body)
            done += 1
            errors += status != 200
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    result = {"requests": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed}
    cpu_after = cpu_seconds(pid)
    if cpu_before is not None and cpu_after is not None and done:
        result["cpu_ms_per_request"] = (cpu_after - cpu_before) * 1000 / done
    return result


# --- processes ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def start_router(
    workdir: Path, backend_url: str, model: str, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = workdir / f"router-{port}.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"port": port, "log_level": "warning"},
                "backends": [
                    {
                        "name": "local",
                        "kind": "openai",
                        "role": "local",
                        "base_url": backend_url,
                        "model": model,
                        "timeout_s": 300,
                        "price_per_1k_tokens": 0.0001,
                    },
                    {"name": "zstd", "kind": "zstd", "role": "fallback", "level": 3},
                ],
                "routing": {"min_llm_ratio": 0.0},
                "ledger": {"path": str(workdir / f"ledger-{port}.sqlite3")},
            }
        )
    )
    out = log.open("ab")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and package
        [sys.executable, "-m", "llm_router", "serve", "--config", str(config)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def show(title: str, result: dict[str, Any]) -> None:
    d, r, a = result["direct"], result["router"], result["added"]
    print(
        f"{title:<34} direct p50 {d['p50_ms']:7.3f} ms  p99 {d['p99_ms']:7.3f} ms | router p50 "
        f"{r['p50_ms']:7.3f} ms  p99 {r['p99_ms']:7.3f} ms | added p50 {a['p50_ms']:6.3f} ms  "
        f"p99 {a['p99_ms']:6.3f} ms  (n={result['requests']}, errors={result['errors']})"
    )


async def measure_stub(
    args: argparse.Namespace, stub_port: int, router_port: int, router_pid: int
) -> dict[str, Any]:
    chat = await latency(
        stub_port, router_port, "/v1/chat/completions", CHAT, "/v1/chat/completions",
        args.requests, args.seconds * 3,
    )  # fmt: skip
    show("chat/completions, sequential", chat)
    comp = await latency(
        stub_port, router_port, "/v1/compress", COMPRESS, "/v1/chat/completions",
        args.requests, args.seconds * 3,
    )  # fmt: skip
    show("compress (quality low), sequential", comp)
    cap = args.requests * 50
    direct = await throughput(
        stub_port, "/v1/chat/completions", CHAT, args.concurrency, args.seconds, cap
    )
    routed = await throughput(
        router_port, "/v1/chat/completions", CHAT, args.concurrency, args.seconds, cap, router_pid
    )
    routed_c = await throughput(
        router_port, "/v1/compress", COMPRESS, args.concurrency, args.seconds, cap, router_pid
    )
    print(
        f"throughput, {args.concurrency} connections, {args.seconds:g} s: "
        f"stub alone {direct['rps']:8.0f} req/s | router chat {routed['rps']:6.0f} req/s "
        f"(errors {routed['errors']}) | router compress {routed_c['rps']:6.0f} req/s "
        f"(errors {routed_c['errors']})"
    )
    for name, figures in (("chat", routed), ("compress", routed_c)):
        if "cpu_ms_per_request" in figures:
            per = figures["cpu_ms_per_request"]
            print(
                f"router CPU per {name} request: {per:.3f} ms "
                f"(so at most {1000 / per:.0f} req/s on one core)"
            )
    return {
        "chat_latency": chat,
        "compress_latency": comp,
        "throughput": {"stub": direct, "router_chat": routed, "router_compress": routed_c},
    }


def bench_stub(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    stub_port = free_port()
    stub = subprocess.Popen([sys.executable, __file__, "--stub", str(stub_port)])  # noqa: S603
    try:
        wait_for_port(stub_port, stub)
        url = f"http://{HOST}:{stub_port}/v1"
        router, router_port = start_router(workdir, url, "stub", workdir / "router.log")
        try:
            print(f"instant stub on :{stub_port}, router on :{router_port}")
            return asyncio.run(measure_stub(args, stub_port, router_port, router.pid))
        finally:
            stop(router)
    finally:
        stop(stub)


def bench_llama(args: argparse.Namespace, workdir: Path) -> dict[str, Any] | None:
    server, model = os.environ.get("MI50_LLAMA_SERVER"), os.environ.get("MI50_TEST_MODEL")
    if not (server and model):
        print("llama.cpp: skipped (set MI50_LLAMA_SERVER and MI50_TEST_MODEL to include it)")
        return None
    port = free_port()
    with (workdir / "llama-server.log").open("ab") as log:
        engine = subprocess.Popen(  # noqa: S603 - the binary the user pointed us at
            [server, "-m", model, "--host", HOST, "--port", str(port), "-c", "2048", "-np", "1",
             "--no-webui", "-a", "test-model"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # the port opens before the model has loaded; /health says when it has
            if engine.poll() is not None:
                raise SystemExit("llama-server exited; see its log")
            try:
                if httpx.get(f"http://{HOST}:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("llama-server did not load the model in 120 s")
            time.sleep(0.25)
        url = f"http://{HOST}:{port}/v1"
        router, router_port = start_router(workdir, url, "test-model", workdir / "router.log")
        try:
            body = json.dumps(
                {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
            ).encode()
            n = max(5, min(args.llama_requests, 200))
            result = asyncio.run(
                latency(
                    port, router_port, "/v1/chat/completions", body, "/v1/chat/completions",
                    n, args.seconds * 6, warmup=2,
                )
            )  # fmt: skip
            show("llama.cpp chat, max_tokens 8", result)
            return result
        finally:
            stop(router)
    finally:
        stop(engine)


def run(args: argparse.Namespace) -> None:
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="router-bench-") as tmp:
        workdir = Path(tmp)
        report["stub"] = bench_stub(args, workdir)
        report["llama"] = bench_llama(args, workdir)
    report["load_average_after"] = os.getloadavg()
    print(
        "load average (1 min) before/after: "
        f"{report['load_average_before'][0]:.2f} / {report['load_average_after'][0]:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"figures written to {args.json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per side")
    parser.add_argument("--seconds", type=float, default=10, help="throughput phase length")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--llama-requests", type=int, default=20)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)  # internal: run the stub
    args = parser.parse_args()
    if args.stub:
        run_stub(args.stub)
        return
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    run(args)


if __name__ == "__main__":
    main()
