"""Attacks on the review UI's request guard found by trying them against a running server.

Each test sends what an attacker sent (raw bytes on a socket where the framing matters) to a
small app behind :class:`echomeasure.web_security.RequestGuard` served by uvicorn, the server
Gradio runs on.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from ui_fixtures import free_port

from echomeasure.web_security import (
    API_BODY_LIMIT_BYTES,
    LOGIN_FAILURE_WINDOW_S,
    LOGIN_FAILURES_ALLOWED,
    UPLOAD_FRAMING_BYTES,
    RequestGuard,
    allowed_hosts,
    harden_launch_options,
    refusal,
)


async def _echo_length(request: Request) -> JSONResponse:
    body = await request.body()
    request.app.state.read_bytes.append(len(body))
    return JSONResponse({"read": len(body)})


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[int, list[int]]]:
    """A guarded app on a free loopback port; yields the port and the body sizes the app read."""
    app = Starlette(routes=[Route("/gradio_api/call/{name}", _echo_length, methods=["POST"])])
    app.state.read_bytes = []
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        RequestGuard(app, allowed=allowed_hosts("127.0.0.1")), host="127.0.0.1", port=port,
        log_level="error", http="h11",
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port, app.state.read_bytes
    server.should_exit = True
    thread.join(10)


def _send(port: int, head: bytes, body_chunks: Iterator[bytes]) -> bytes:
    """Send a request, then its body as far as the server lets it; the response's status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed while the body was still coming
            pass
        reply = b""
        try:
            while b"\r\n" not in reply:
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        except OSError:
            pass
    return reply.split(b"\r\n", 1)[0]


def _chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b"%x\r\n" % n + b"x" * n + b"\r\n"
        sent += n
    yield b"0\r\n\r\n"


def test_a_chunked_body_with_a_small_content_length_beside_it_is_still_limited(guarded):
    port, read_bytes = guarded
    read_bytes.clear()
    head = (
        b"POST /gradio_api/call/save_review HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    status = _send(port, head, _chunked(3 * API_BODY_LIMIT_BYTES))
    assert b" 413 " in status, status
    assert read_bytes == []  # the app never received the body


def test_bodies_within_the_limit_still_reach_the_app_whatever_their_framing(guarded):
    port, read_bytes = guarded
    read_bytes.clear()
    body = b"{}" * 1000
    plain = (
        b"POST /gradio_api/call/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % len(body)
    )
    assert b" 200 " in _send(port, plain, iter([body]))
    chunked = (
        b"POST /gradio_api/call/x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    assert b" 200 " in _send(port, chunked, _chunked(len(body), size=700))
    assert read_bytes == [len(body), len(body)]


@pytest.mark.parametrize("host", ["localhost..", "localhost../x", "localhost/evil", "localhost:7860/evil",
                                  "localhost?x", "localhost#x", "user@localhost"])
def test_a_host_header_that_is_not_a_plain_name_and_port_is_refused(host):
    # A browser sends ``name[:port]`` only; a path, query, user or an empty label beside a
    # loopback name is a crafted header and names no server.
    assert refusal({"host": host}, allowed_hosts("127.0.0.1")) is not None


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:7860", "localhost.:7860", "[::1]:7860", "127.0.0.1"])
def test_plain_loopback_host_headers_are_still_accepted(host):
    assert refusal({"host": host}, allowed_hosts("127.0.0.1")) is None


# ----------------------------------------------------------------------------- password guessing


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _login(request: Request) -> JSONResponse:
    form = await request.form()
    if form.get("password") == "right":
        return JSONResponse({"success": True})
    return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)


def _login_clients(clock: _Clock):
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/login", _login, methods=["POST"]), Route("/login/", _login, methods=["POST"])])
    guard = RequestGuard(app, allowed=frozenset({"testserver"}), clock=clock)
    return (TestClient(guard, client=("192.0.2.7", 5000)), TestClient(guard, client=("192.0.2.8", 5000)))


def test_password_guessing_is_slowed_per_client_address():
    clock = _Clock()
    guesser, other = _login_clients(clock)
    statuses = [guesser.post("/login", data={"username": "alice", "password": f"guess{i}"}).status_code
                for i in range(LOGIN_FAILURES_ALLOWED)]
    assert statuses == [400] * LOGIN_FAILURES_ALLOWED
    refused = guesser.post("/login/", data={"username": "alice", "password": "right"})
    assert refused.status_code == 429 and "too many failed logins" in refused.json()["error"]
    # another address is not affected; successful logins are not counted
    for _ in range(LOGIN_FAILURES_ALLOWED + 1):
        assert other.post("/login", data={"username": "bob", "password": "right"}).status_code == 200
    clock.now += LOGIN_FAILURE_WINDOW_S
    assert guesser.post("/login", data={"username": "alice", "password": "right"}).status_code == 200


# ----------------------------------------------------------------------------- filling the disk with uploads


async def _received_upload(request: Request) -> JSONResponse:
    body = await request.body()
    request.app.state.uploaded.append(len(body))
    return JSONResponse(["/tmp/x"])


def _upload_client(**guard_options):
    from starlette.testclient import TestClient

    app = Starlette(routes=[Route("/gradio_api/upload", _received_upload, methods=["POST"])])
    app.state.uploaded = []
    return TestClient(RequestGuard(app, allowed=frozenset({"testserver"}), **guard_options)), app.state.uploaded


def test_one_upload_request_holds_at_most_the_upload_limit(tmp_path, monkeypatch):
    # Gradio applies max_file_size to each file and takes 1,000 files a request.
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    client, uploaded = _upload_client(upload_limit_bytes=10_000)
    files = [("files", (f"f{i}.dcm", b"\0" * 4_000)) for i in range(3)]
    assert client.post("/gradio_api/upload", files=files).status_code == 413
    assert client.post("/gradio_api/upload", files=files[:2]).status_code == 200
    assert len(uploaded) == 1


def test_an_upload_without_its_length_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    client, uploaded = _upload_client(upload_limit_bytes=10_000)

    def chunks():
        for _ in range(5):
            yield b"\0" * 4_000

    reply = client.post("/gradio_api/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert reply.status_code == 411
    assert uploaded == []


def test_uploads_are_refused_while_waiting_uploads_fill_the_quota(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    waiting = tmp_path / "0123abcd" / "earlier.dcm"
    waiting.parent.mkdir()
    waiting.write_bytes(b"\0" * 50_000)
    client, uploaded = _upload_client(upload_quota_bytes=60_000)
    big = [("files", ("next.dcm", b"\0" * 20_000))]
    reply = client.post("/gradio_api/upload", files=big)
    assert reply.status_code == 507 and "upload space" in reply.json()["error"]
    waiting.unlink()  # opened (and removed) meanwhile
    assert client.post("/gradio_api/upload", files=big).status_code == 200
    assert len(uploaded) == 1


def test_the_launched_guard_takes_the_apps_upload_limit():
    options = harden_launch_options({"max_file_size": "200mb", "server_name": "127.0.0.1"})
    (guard,) = [m for m in options["app_kwargs"]["middleware"] if m.cls is RequestGuard]
    assert guard.kwargs["upload_limit_bytes"] == 200 * 1024**2 + UPLOAD_FRAMING_BYTES
