"""Serve a web bundle on 127.0.0.1 with the standard library (`http.server` in a thread)."""

from __future__ import annotations

import functools
import http.server
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from agora_core.errors import AgoraError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".json": "application/json", ".bin": "application/octet-stream",
                      ".f16": "application/octet-stream", ".splat": "application/octet-stream"}

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # a re-export must not show stale files
        super().end_headers()


class BundleServer:
    """A threaded HTTP server of `directory` on 127.0.0.1:`port` (0 = a free port)."""

    def __init__(self, directory: str | Path, port: int = 0):
        directory = Path(directory)
        if not (directory / "index.html").is_file():
            raise AgoraError(f"{directory}: no index.html; export a bundle there first (agora export web)")
        handler = functools.partial(_QuietHandler, directory=str(directory))
        try:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise AgoraError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror}); choose another port") from None
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "BundleServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def serve_bundle(directory: str | Path, port: int = 0) -> Iterator[BundleServer]:
    """`with serve_bundle(site) as server: ... server.url ...`"""
    server = BundleServer(directory, port).start()
    try:
        yield server
    finally:
        server.stop()
