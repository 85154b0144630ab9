"""A TCP proxy in front of an HTTP endpoint (here moto's S3 server) that fails on purpose, for a while.

    proxy = FaultProxy("http://127.0.0.1:9000").start()
    proxy.schedule("refuse", seconds=30, after=12)   # after 12 more requests: the port is closed for 30 s
    ...                                              # point the client at proxy.url
    proxy.resent_objects()                           # objects PUT again after a PUT of them had succeeded

Faults, for `seconds` from the request that starts them:
- ``refuse``: the listening socket is closed (new connections are refused by the kernel) and every request on a
  connection already open is answered with a reset;
- ``reset``: connections are accepted, and each request is answered by resetting the connection (RST);
- ``503``: each request is answered ``503 ServiceUnavailable`` with an S3 error body;
- ``403``: each request is answered ``403 InvalidAccessKeyId``, as S3 answers a key it does not know (moto's server
  accepts any key).

It reads just enough HTTP to count requests and to keep them apart on a kept-alive connection (request head, then a
body by Content-Length or chunked framing, trailers included); bytes are forwarded as they came, each request on a
fresh upstream connection. Every request is recorded with what happened to it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

MODES = ("refuse", "reset", "503", "403")
HOP_HEADERS = (b"connection", b"keep-alive", b"expect", b"proxy-connection")


@dataclass
class Request:
    at: float  # time.monotonic() when its head arrived
    method: str
    path: str  # without the query
    query: str
    outcome: str  # the upstream's status ("200", ...), "503" (injected), "reset", or "error"


@dataclass
class _Fault:
    mode: str
    seconds: float
    trigger: int  # the index of the request that starts it
    started: float | None = None
    ended: float | None = None  # when heal() ended it early

    def active(self, now: float) -> bool:
        return self.started is not None and self.ended is None and now < self.started + self.seconds


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
        self.upstream = (host, int(port))
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = self._listen(0)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)

    # -- control --------------------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _close(connection)

    def schedule(self, mode: str, *, seconds: float, after: int = 0) -> None:
        """Fail in MODE for SECONDS, starting with the request that comes after AFTER more requests."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self._lock:
            self._fault = _Fault(mode, seconds, trigger=len(self.requests) + after)

    def heal(self) -> None:
        """End the fault now."""
        with self._lock:
            if self._fault is not None:
                self._fault.ended = time.monotonic()

    def fault_started(self) -> float | None:
        with self._lock:
            return None if self._fault is None else self._fault.started

    # -- what happened ----------------------------------------------------------------------------------------------

    def stored_puts(self) -> list[Request]:
        """Whole-object PUTs the upstream accepted (multipart parts aside)."""
        with self._lock:
            return [r for r in self.requests if r.method == "PUT" and r.outcome.startswith("2")
                    and "partNumber=" not in r.query]

    def resent_objects(self, since: int = 0) -> list[str]:
        """Paths PUT again, successfully, after an earlier successful PUT of the same path (from request SINCE on)."""
        seen: set[str] = set()
        again = []
        for request in self.stored_puts():
            if request.path in seen and self.requests.index(request) >= since:
                again.append(request.path)
            seen.add(request.path)
        return again

    def outcomes(self) -> dict[str, int]:
        with self._lock:
            counts: dict[str, int] = {}
            for request in self.requests:
                counts[request.outcome] = counts.get(request.outcome, 0) + 1
            return counts

    # -- serving ------------------------------------------------------------------------------------------------------

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(0.05)
        return listener

    def _refusing(self) -> bool:
        with self._lock:
            fault = self._fault
            return fault is not None and fault.mode == "refuse" and fault.active(time.monotonic())

    def _serve(self) -> None:
        # Only this thread opens and closes the listening socket.
        while not self._stopped.is_set():
            if self._refusing():
                if self._listener is not None:
                    _close(self._listener)  # connections waiting in its backlog are reset too
                    self._listener = None
                time.sleep(0.02)
                continue
            if self._listener is None:
                self._listener = self._listen(self.port)
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                continue
            client.settimeout(120)
            with self._lock:
                self._connections.add(client)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()
        if self._listener is not None:
            _close(self._listener)

    def _fault_for(self, method: str, target: str) -> tuple[str | None, Request]:
        path, _, query = target.partition("?")
        now = time.monotonic()
        with self._lock:
            index = len(self.requests)
            request = Request(now, method, path, query, "error")
            self.requests.append(request)
            fault = self._fault
            if fault is None:
                return None, request
            if fault.started is None and index >= fault.trigger:
                fault.started = now
            return (fault.mode if fault.active(now) else None), request

    def _handle(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        try:
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
                headers = _headers(head)
                mode, request = self._fault_for(method, target)
                if mode in ("refuse", "reset"):
                    request.outcome = "reset"
                    reader.close()  # the socket's descriptor closes only once its file objects are closed too
                    _reset(client)
                    return
                if headers.get(b"expect", b"").lower() == b"100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = _read_body(reader, headers)
                if mode in ("503", "403"):
                    request.outcome = mode
                    client.sendall(_error_answer(mode, method))
                    continue
                response, close_after = self._forward(head, body, method)
                request.outcome = response.split(b" ", 2)[1].decode("latin-1")
                client.sendall(response)
                if close_after:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(client)
            reader.close()
            _close(client)

    def _forward(self, head: bytes, body: bytes, method: str) -> tuple[bytes, bool]:
        """The upstream's answer to one request, framed for the client, and whether to close the client after."""
        lines = head.rstrip(b"\r\n").split(b"\r\n")
        kept = [lines[0]] + [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
        request = b"\r\n".join(kept + [b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.create_connection(self.upstream, timeout=120) as upstream:
            upstream.sendall(request)
            reader = upstream.makefile("rb")
            try:
                response_head, response_body, until_eof = _response(reader, method)
            finally:
                reader.close()
        lines = response_head.rstrip(b"\r\n").split(b"\r\n")
        kept = [lines[0]] + [line for line in lines[1:] if line.split(b":", 1)[0].strip().lower() not in HOP_HEADERS]
        if until_eof:
            kept += [b"Content-Length: " + str(len(response_body)).encode(), b"Connection: close"]
        return b"\r\n".join(kept) + b"\r\n\r\n" + response_body, until_eof


def _response(reader: BinaryIO, method: str) -> tuple[bytes, bytes, bool]:
    """One response's head and body, and whether the body ran to the end of the connection."""
    while True:
        head = _read_head(reader)
        if head is None:
            raise OSError("the upstream closed without an answer")
        status = int(head.split(b" ", 2)[1])
        if status >= 200:
            break  # 1xx: interim answers the client never asked this proxy for
    headers = _headers(head)
    if method == "HEAD" or status in (204, 304):
        return head, b"", False
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower() or b"content-length" in headers:
        return head, _read_body(reader, headers), False
    return head, reader.read(), True


def _read_head(reader: BinaryIO) -> bytes | None:
    lines = []
    while True:
        line = reader.readline(65536)
        if not line:
            return None if not lines else b"".join(lines)
        if not lines and line in (b"\r\n", b"\n"):
            continue  # stray blank line between requests
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _headers(head: bytes) -> dict[bytes, bytes]:
    found = {}
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _read_body(reader: BinaryIO, headers: dict[bytes, bytes]) -> bytes:
    """The body's bytes exactly as sent (chunk framing and trailers kept)."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        while True:
            line = reader.readline(65536)
            if not line:
                raise OSError("connection closed inside a chunked body")
            parts.append(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = reader.readline(65536)
                    parts.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            parts.append(_read_exactly(reader, size + 2))
    length = int(headers.get(b"content-length", b"0") or 0)
    return _read_exactly(reader, length)


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise OSError("connection closed inside a body")
    return data


_ANSWERS = {
    "503": (b"503 Service Unavailable", b"ServiceUnavailable", b"Please reduce your request rate (injected outage)."),
    "403": (b"403 Forbidden", b"InvalidAccessKeyId",
            b"The AWS Access Key Id you provided does not exist in our records."),
}


def _error_answer(mode: str, method: str) -> bytes:
    status, code, message = _ANSWERS[mode]
    body = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>" + code + b"</Code><Message>" + message
            + b"</Message></Error>")
    head = (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + (b"" if method == "HEAD" else body)


def _reset(connection: socket.socket) -> None:
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    _close(connection)


def _close(connection: socket.socket) -> None:
    try:
        connection.close()
    except OSError:
        pass


__all__ = ["MODES", "FaultProxy", "Request"]
