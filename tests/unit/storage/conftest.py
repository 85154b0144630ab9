"""A real S3 endpoint on loopback (moto's server mode) and a proxy in front of it that can fail on purpose."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

DUMMY_KEY_ID = "AKIAMLCORETESTKEY000"
DUMMY_SECRET = "mlcore-test-secret-never-written"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path, moto_endpoint: str) -> str:
    """Dummy credentials and the endpoint through the environment, as a user would set them; no ~/.aws read."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_endpoint


@pytest.fixture
def bucket(aws_env: str) -> str:
    """A fresh bucket per test (moto's state lives as long as the server)."""
    import boto3

    name = f"mlcore-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


class FlakyProxy:
    """Forwards HTTP to the real endpoint, except the requests it is told to fail.

    ``fail(count, after=n)`` lets n requests through, then fails the next `count`: with an S3 error status
    (``status=503, code="SlowDown"``) or, with ``status=None``, by dropping the connection without an answer.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.requests: list[str] = []
        self.failed: list[str] = []
        self._plan: list[tuple[int, int | None, str]] = []  # (request index, status, code)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail(self, count: int, *, after: int = 0, status: int | None = 503, code: str = "SlowDown") -> None:
        with self._lock:
            start = len(self.requests) + after
            self._plan.extend((start + i, status, code) for i in range(count))

    def heal(self) -> None:
        """Let every request through from now on."""
        with self._lock:
            self._plan.clear()

    def _next(self, line: str) -> tuple[bool, int | None, str]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(line)
            for planned in self._plan:
                if planned[0] == index:
                    self.failed.append(line)
                    return True, planned[1], planned[2]
        return False, None, ""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return body
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        proxy: FlakyProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._read_body()
        fail, status, code = proxy._next(f"{self.command} {self.path.split('?')[0]}")
        if fail and status is None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fail:
            payload = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
            data = b"" if self.command == "HEAD" else payload.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() in ("transfer-encoding", "connection", "date", "server"):
                    continue
                if name.lower() == "content-length" and self.command != "HEAD":
                    continue
                self.send_header(name, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class FakeClock:
    """The store's clock (``time`` in mlcore.storage.s3): a request takes no time, a wait passes at once. Retry
    windows are then checked exactly, and not against how busy the machine happens to be."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr("mlcore.storage.s3.time", clock)
    return clock


@pytest.fixture
def flaky_proxy(moto_endpoint: str) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(moto_endpoint)
    proxy._thread.start()
    try:
        yield proxy
    finally:
        proxy._server.shutdown()
        proxy._server.server_close()
