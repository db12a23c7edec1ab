#!/usr/bin/env python3
"""Static HTTP server for test fixtures (mirrors, archives, models), test-only.

Serves one directory on the Docker bridge so lab containers reach it and
nothing else does. Unlike `python -m http.server` it is threaded, honours
single byte ranges (so resumable downloads can be tested) and can be told to
cut a response short (`?truncate=N`), which is how the tests simulate an
interrupted download.
"""

from __future__ import annotations

import argparse
import os
import re
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FixtureHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        print(f"{self.address_string()} {format % args}", flush=True)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        query = parse_qs(urlsplit(self.path).query)
        path = self.translate_path(self.path)
        header = self.headers.get("Range")
        if not os.path.isfile(path) or (header is None and "truncate" not in query):
            super().do_GET()
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        status = HTTPStatus.OK
        if header:
            match = RANGE.match(header.strip())
            if not match or int(match.group(1)) >= size:
                self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return
            start = int(match.group(1))
            end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1
        cut = int(query["truncate"][0]) if "truncate" in query else None
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        with open(path, "rb") as handle:
            handle.seek(start)
            remaining = length if cut is None else min(length, cut)
            while remaining > 0:
                chunk = handle.read(min(1 << 16, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)
        if cut is not None:
            self.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", required=True)
    args = parser.parse_args()
    handler = partial(FixtureHandler, directory=args.directory)
    ThreadingHTTPServer((args.bind, args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
