"""A private git server over HTTP: ``git http-backend`` (the real one, as CGI) behind HTTP
basic auth on a loopback port, for tests of per-app git tokens (and the demo).

``serve_git_http(root, user, password)`` serves the bare repositories under ``root`` as
``http://127.0.0.1:PORT/<name>.git``; a request without the right Authorization header gets
401 (as GitHub and GitLab answer), and ``requests`` records each request's path and whether it
was let in.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
#: how long one git http-backend run may take
CGI_TIMEOUT_S = 60.0


@dataclass
class GitHttp:
    """A running server: ``url`` is its base, ``requests`` (path, let in) in order."""

    url: str
    root: Path
    requests: list[tuple[str, bool]] = field(default_factory=list)

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}"


def _handler(root: Path, expected: str, server: GitHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test reads ``requests``

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            allowed = self.headers.get("Authorization") == expected
            server.requests.append((self.path, allowed))
            if not allowed:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self._body()
            parts = urlsplit(self.path)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "REMOTE_USER": "deployq-test",
                "REMOTE_ADDR": self.client_address[0],
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
            }
            for header in ("Git-Protocol", "Content-Encoding"):
                if (value := self.headers.get(header)) is not None:
                    env["HTTP_" + header.upper().replace("-", "_")] = value
            result = subprocess.run(
                [HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=CGI_TIMEOUT_S
            )
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = result.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    return Handler


@contextmanager
def serve_git_http(root: Path, user: str, password: str) -> Iterator[GitHttp]:
    """Serve the bare repositories under ``root`` to ``user:password`` only; stopped on exit."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = GitHttp(f"http://127.0.0.1:{httpd.server_address[1]}", root)
    httpd.RequestHandlerClass = _handler(root, expected, server)
    thread = threading.Thread(target=httpd.serve_forever, name="git-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
