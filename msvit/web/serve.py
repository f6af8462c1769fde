"""``msvit-web serve DIR``: a static server for a web folder on loopback, with the headers the
page needs: COOP/COEP (cross-origin isolation: SharedArrayBuffer, so WASM threads), CORP, the
WASM/ES-module MIME types, and no caching (a re-export is seen at once)."""
from __future__ import annotations

import functools
import ipaddress
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import UsageError

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".onnx": "application/octet-stream", ".tflite": "application/octet-stream",
         ".md": "text/markdown; charset=utf-8", ".css": "text/css"}


class Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def end_headers(self) -> None:
        for k, v in HEADERS.items():
            self.send_header(k, v)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # quiet: one line per error only
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            super().log_message(format, *args)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def make_server(folder: str | Path, port: int = 8000, host: str = "127.0.0.1",
                allow_remote: bool = False) -> ThreadingHTTPServer:
    """A server for ``folder`` (not started). Port 0 picks a free one (``server.server_port``)."""
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise UsageError(f"{folder}: not a web folder (no index.html); make one with msvit-export --target web")
    if not is_loopback(host) and not allow_remote:
        raise UsageError(f"--host {host} is not a loopback address: the page would be served to the network. "
                         "Pass --allow-remote to do that on purpose (camera access then needs HTTPS)")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: use 0..65535")
    handler = functools.partial(Handler, directory=str(folder))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve_in_thread(folder: str | Path, port: int = 0, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, str]:
    """Start a server in a daemon thread: (server, base URL). ``server.shutdown()`` stops it."""
    srv = make_server(folder, port, host)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://{host}:{srv.server_port}/"
