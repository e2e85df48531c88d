"""Web hardening, checked over HTTP against a running ``echomeasure demo`` on loopback.

Host/Origin checks (403, the Origin's port included), API body limit (413) and the server's
memory after oversized requests, JSON results of every API endpoint through
``/gradio_api/call/...``, removal of uploads after processing and at shutdown, ``open_upload``
refusing any path that is not an upload (a stored frame, ``..``, a symlink) and leaving it in
place, and the logged-in user as reviewer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from ui_fixtures import EXAMPLE_2D, UiStore, free_port, prepare_store

from echomeasure import config
from echomeasure.web_security import (
    API_BODY_LIMIT_BYTES,
    allowed_hosts,
    host_of_host_header,
    host_of_origin,
    origin_allowed,
    refusal,
    trusted_origins,
)

START_TIMEOUT_S = 180


@dataclass
class Demo:
    url: str
    port: int
    proc: subprocess.Popen
    store: UiStore
    tmpdir: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def upload_dirs(self) -> list[Path]:
        return sorted(self.tmpdir.glob("echomeasure-uploads-*"))


@contextmanager
def running_demo(folder: Path, *args: str) -> Iterator[Demo]:
    """``echomeasure demo`` in a child process on 127.0.0.1 and a free port (TMPDIR inside ``folder``)."""
    (folder / "store").mkdir(parents=True)
    info = prepare_store(folder / "store")
    tmpdir = folder / "tmp"
    tmpdir.mkdir()
    port = free_port()
    log = open(folder / "demo.log", "w")  # noqa: SIM115 - open as long as the server runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "echomeasure.cli", "demo", "--port", str(port), "--db", info.url, *args],
        # a Gradio app built earlier in this test process sets GRADIO_TEMP_DIR; the server must
        # choose its own private folder, as it does when started by a user
        env={**{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}, "TMPDIR": str(tmpdir)},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=config.PROJECT_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"demo exited: {(folder / 'demo.log').read_text()[-3000:]}")
            try:
                httpx.get(url + "/gradio_api/info", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError("demo did not start") from None
                time.sleep(0.5)
        yield Demo(url, port, proc, info, tmpdir)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        log.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("demo")) as d:
        yield d


def call(demo: Demo, name: str, data: list, headers: dict | None = None) -> tuple[str, object]:
    """POST /gradio_api/call/NAME then read its event stream: (last event, parsed data)."""
    r = httpx.post(f"{demo.url}/gradio_api/call/{name}", json={"data": data}, headers=headers or {}, timeout=60)
    assert r.status_code == 200, r.text
    stream = httpx.get(f"{demo.url}/gradio_api/call/{name}/{r.json()['event_id']}", timeout=300)
    assert stream.status_code == 200
    event, payload = None, None
    for line in stream.text.splitlines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event in ("complete", "error"):
            payload = json.loads(line[len("data: "):])  # must be valid JSON
    assert event in ("complete", "error"), stream.text[-500:]
    return event, payload


def upload(demo: Demo, path: Path) -> str:
    with path.open("rb") as fh:
        r = httpx.post(f"{demo.url}/gradio_api/upload", files={"files": (path.name, fh)}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()[0]


def reviews_by(store: UiStore, measurement: str) -> list:
    from echomeasure.store import open_store

    s = open_store(store.url)
    try:
        return [r for r in s.reviews() if r.measurement == measurement]
    finally:
        s.close()


# ----------------------------------------------------------------------------- Host / Origin (unit)


def test_host_and_origin_parsing():
    assert host_of_host_header("127.0.0.1:7860") == "127.0.0.1"
    assert host_of_host_header("[::1]:7860") == "::1"
    assert host_of_host_header("LOCALHOST") == "localhost"
    assert host_of_origin("http://localhost:7860") == "localhost"
    assert host_of_origin("null") is None and host_of_origin("file://x") is None
    allowed = allowed_hosts("127.0.0.1")
    assert {"localhost", "127.0.0.1", "::1"} <= allowed and "evil.example" not in allowed
    assert "10.1.2.3" in allowed_hosts("10.1.2.3")
    everywhere = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in everywhere and "evil.example" not in everywhere
    assert refusal({"host": "localhost:7860", "origin": "http://127.0.0.1:7860"}, allowed) is None
    assert refusal({"host": "localhost:7860"}, allowed) is None
    assert refusal({}, allowed) is not None
    assert refusal({"host": "evil.example"}, allowed) is not None
    assert refusal({"host": "localhost", "origin": "null"}, allowed) is not None
    assert refusal({"host": "localhost.evil.example"}, allowed) is not None


def test_the_origin_must_name_the_port_the_request_was_sent_to():
    allowed = allowed_hosts("127.0.0.1")
    host = "127.0.0.1:7897"
    for same in ("http://127.0.0.1:7897", "http://localhost:7897", "http://[::1]:7897"):
        assert origin_allowed(same, host, allowed), same
        assert refusal({"host": host, "origin": same}, allowed) is None
    # another local port, or no port (80) is another web site
    for other in ("http://localhost:9999", "http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:78970"):
        assert not origin_allowed(other, host, allowed), other
        assert refusal({"host": host, "origin": other}, allowed) is not None
    # default ports implied by the scheme, on either header
    assert origin_allowed("http://localhost", "localhost", allowed)
    assert origin_allowed("http://localhost:80", "localhost", allowed)
    assert origin_allowed("https://localhost", "localhost:443", allowed)
    assert not origin_allowed("http://localhost", "localhost:7897", allowed)


def test_configured_names_are_trusted_at_their_port(monkeypatch):
    monkeypatch.setenv("ECHOMEASURE_ALLOWED_HOSTS", "proxy.example, lab.example:8443, [fd00::1]:9000, fd00::2")
    monkeypatch.delenv("SPACE_HOST", raising=False)
    allowed, trusted = allowed_hosts("127.0.0.1"), trusted_origins()
    assert {"proxy.example", "lab.example", "fd00::1", "fd00::2"} <= allowed
    assert trusted == {("proxy.example", None), ("lab.example", 8443), ("fd00::1", 9000), ("fd00::2", None)}
    behind = "127.0.0.1:7860"  # a proxy that rewrites the Host header
    assert origin_allowed("https://proxy.example", behind, allowed, trusted)
    assert origin_allowed("http://proxy.example", behind, allowed, trusted)
    assert not origin_allowed("https://proxy.example:8080", behind, allowed, trusted)
    assert origin_allowed("https://lab.example:8443", behind, allowed, trusted)
    assert not origin_allowed("https://lab.example", behind, allowed, trusted)
    assert origin_allowed("http://[fd00::1]:9000", behind, allowed, trusted)
    # reached directly by a configured name: the port the request went to
    assert origin_allowed("http://proxy.example:7860", "proxy.example:7860", allowed, trusted)
    assert refusal({"host": "proxy.example", "origin": "https://proxy.example"}, allowed, trusted) is None
    assert refusal({"host": behind, "origin": "https://proxy.example:9999"}, allowed, trusted) is not None


# ----------------------------------------------------------------------------- Host / Origin (HTTP)

# Every route family of the app: pages, config, API calls, uploads, files, queue, login.
ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("POST", "/gradio_api/call/save_review"),
    ("POST", "/gradio_api/call/export_all_csv"),
    ("POST", "/gradio_api/call/export_study_csv"),
    ("POST", "/gradio_api/call/open_example"),
    ("POST", "/gradio_api/call/open_upload"),
    ("POST", "/gradio_api/call/measurements"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=x"),
    ("POST", "/gradio_api/upload"),
    ("GET", "/gradio_api/file=/etc/hostname"),
    ("POST", "/login"),
]
FOREIGN = [
    {"Host": "evil.example"},
    {"Host": "evil.example:7860", "Origin": "http://evil.example:7860"},
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:9999"},  # a page served from another local port
    {"Origin": "http://127.0.0.1"},  # port 80
]


@pytest.mark.parametrize(
    "headers", FOREIGN, ids=["host", "host+origin", "origin", "origin-null", "origin-port", "origin-no-port"]
)
def test_requests_naming_another_host_or_origin_are_refused_on_every_endpoint(demo, headers):
    for method, path in ENDPOINTS:
        body = {"data": [demo.store.clip_id, "lvids", "rejected", "Mallory", None, None, None]} if method == "POST" else None
        r = httpx.request(method, demo.url + path, json=body, headers=headers, timeout=30)
        assert r.status_code == 403, (method, path, r.status_code)
        assert r.json()["error"].startswith("forbidden")
    assert reviews_by(demo.store, "lvids") == []


def test_a_cors_preflight_from_another_site_is_refused_too(demo):
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(demo.url + "/gradio_api/call/save_review", headers=preflight, timeout=30)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = httpx.options(demo.url + "/gradio_api/call/save_review", headers={**preflight, "Host": "evil.example"}, timeout=30)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_loopback_names_are_accepted(demo):
    for host, origin in (("127.0.0.1", "http://127.0.0.1"), ("localhost", "http://localhost"), ("[::1]", None)):
        headers = {"Host": f"{host}:{demo.port}"}
        if origin:
            headers["Origin"] = f"{origin}:{demo.port}"
        r = httpx.get(demo.url + "/gradio_api/info", headers=headers, timeout=30)
        assert r.status_code == 200, (host, r.status_code)


def test_the_frameworks_schema_and_docs_pages_are_not_served(demo):
    """FastAPI's /openapi.json and /docs answered 200 without login under --auth: not the app's."""
    headers = {"Host": f"127.0.0.1:{demo.port}"}
    for path in ("/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"):
        assert httpx.get(demo.url + path, headers=headers, timeout=30).status_code == 404, path
    assert httpx.get(demo.url + "/gradio_api/info", headers=headers, timeout=30).status_code == 200


# ----------------------------------------------------------------------------- body limit and memory


@pytest.mark.slow
def test_oversized_api_bodies_are_refused_and_memory_stays_put(demo):
    small = httpx.post(demo.url + "/gradio_api/call/measurements", json={"data": [demo.store.clip_id]}, timeout=30)
    assert small.status_code == 200
    before_mb = demo.rss_mb()
    body = json.dumps({"data": [demo.store.clip_id, "lvidd", "accept", "x" * (36 * 1024 * 1024), None, None, None]}).encode()
    statuses = []
    for _ in range(10):
        try:
            r = httpx.post(
                demo.url + "/gradio_api/call/save_review", content=body,
                headers={"content-type": "application/json"}, timeout=60,
            )
            statuses.append(r.status_code)
        except httpx.TransportError:  # the server closed the connection while the body was still coming
            statuses.append("closed")
    assert 413 in statuses and set(statuses) <= {413, "closed"}, statuses

    # Without Content-Length (chunked): read only up to the limit.
    def chunks():
        for _ in range(3):
            yield b"x" * API_BODY_LIMIT_BYTES

    r = httpx.post(demo.url + "/gradio_api/call/save_review", content=chunks(), timeout=60)
    assert r.status_code == 413
    time.sleep(1.0)
    after_mb = demo.rss_mb()
    print(f"\nserver RSS before {before_mb:.0f} MB, after 10 x 36 MB requests {after_mb:.0f} MB")
    assert after_mb - before_mb < 50, (before_mb, after_mb)
    assert reviews_by(demo.store, "lvidd") == []


# ----------------------------------------------------------------------------- JSON results, uploads


def test_every_api_endpoint_returns_json_through_the_call_route(demo):
    info = httpx.get(demo.url + "/gradio_api/info", timeout=30).json()
    uploaded = upload(demo, config.EXAMPLES_DIR / EXAMPLE_2D)
    samples = {
        "name": EXAMPLE_2D,
        "reviewer_name": "API Reader",
        "reviewer": "API Reader",
        "status": "all",
        "clip_id": demo.store.clip_id,
        "measurement": "ivsd",
        "action": "accept",
        "file": {"path": uploaded, "meta": {"_type": "gradio.FileData"}},
    }
    results = {}
    for endpoint, spec in info["named_endpoints"].items():
        data = []
        for p in spec["parameters"]:
            if p["parameter_name"] in samples:
                data.append(samples[p["parameter_name"]])
            elif p.get("parameter_has_default"):
                data.append(p.get("parameter_default"))
            else:
                data.append(p.get("example_input"))
        results[endpoint] = call(demo, endpoint.lstrip("/"), data)
    for endpoint in ("/open_example", "/open_upload", "/save_review", "/measurements", "/export_all_csv"):
        assert results[endpoint][0] == "complete", (endpoint, results[endpoint])
    opened = results["/open_example"][1][0]["props"]["clip"]["id"]
    assert results["/open_upload"][1][0]["props"]["clip"]["id"] == opened  # the same example, uploaded
    # The uploaded original was removed once processed, with its folder.
    assert not Path(uploaded).exists() and not Path(uploaded).parent.exists()
    assert results["/save_review"][1][0]["reviewer"] == "API Reader"


def test_reviewer_names_are_checked_by_the_api(demo):
    for bad in ("x" * 100_000, "Dr. A\x00B", "   "):
        event, payload = call(demo, "save_review", [demo.store.clip_id, "lvpwd", "accept", bad, None, None, None])
        assert event == "error"
    assert reviews_by(demo.store, "lvpwd") == []
    event, payload = call(demo, "save_review", [demo.store.clip_id, "lvpwd", "accept", "  Reader Two  ", None, None, None])
    assert event == "complete", payload
    assert payload[0]["reviewer"] == "Reader Two"


def _open_upload(demo: Demo, path: str) -> tuple[str, object]:
    return call(demo, "open_upload", [{"path": path, "meta": {"_type": "gradio.FileData"}}, "API Reader", "all"])


def test_open_upload_opens_only_files_uploaded_to_this_app(demo):
    frames = sorted((demo.store.folder / "images").rglob("*.png"))  # the served image folder
    assert len(frames) >= 3
    (folder,) = demo.upload_dirs()
    link = folder / "frame-link.png"
    link.symlink_to(frames[2])
    named = {
        "stored frame": str(frames[0]),  # in the served image folder: Gradio lets it through
        "..": f"{folder}/../{os.path.relpath(frames[1], folder.parent)}",
        "symlink": str(link),
    }
    for how, path in named.items():
        event, payload = _open_upload(demo, path)
        assert event in ("complete", "error"), how
        if event == "complete":  # nothing opened: every output skipped, the clip state untouched
            assert "clip" not in payload[0].get("props", {}) and payload[2] is None, (how, payload)
    assert all(frame.is_file() for frame in frames[:3]) and link.is_symlink()
    log = (demo.tmpdir.parent / "demo.log").read_text()
    assert log.count("open_upload refused a path that is not an upload") >= 3
    # A real upload is still opened, then removed with its folder.
    uploaded = upload(demo, config.EXAMPLES_DIR / EXAMPLE_2D)
    event, payload = _open_upload(demo, uploaded)
    assert event == "complete" and payload[0]["props"]["clip"]["id"] >= 1
    assert not Path(uploaded).exists() and not Path(uploaded).parent.exists()


def test_received_upload_and_discard_upload_keep_to_the_upload_folder(tmp_path, monkeypatch):
    from echomeasure.web_security import DOWNLOAD_DIR_PREFIX, discard_upload, received_upload

    folder, outside = tmp_path / "uploads", tmp_path / "store"
    (folder / "abc").mkdir(parents=True)
    outside.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    upload_file = folder / "abc" / "case.dcm"
    upload_file.write_bytes(b"original")
    victim = outside / "frame.png"
    victim.write_bytes(b"png")
    (folder / "link.png").symlink_to(victim)
    (folder / f"{DOWNLOAD_DIR_PREFIX}x").mkdir()
    export = folder / f"{DOWNLOAD_DIR_PREFIX}x" / "all.csv"
    export.write_text("a,b\n")
    for not_upload in (victim, folder / ".." / "store" / "frame.png", folder / "link.png", export, folder, folder / "abc",
                       folder / "abc" / "missing.dcm", "bad\x00path"):
        assert received_upload(not_upload) is None, not_upload
        discard_upload(not_upload)
    assert victim.is_file() and export.is_file() and (folder / "link.png").is_symlink()
    assert received_upload(folder / "abc" / ".." / "abc" / "case.dcm") == upload_file.resolve()
    discard_upload(upload_file)
    assert not upload_file.exists() and not (folder / "abc").exists() and folder.is_dir()


@pytest.mark.slow
def test_uploads_never_opened_are_removed_at_shutdown(tmp_path):
    with running_demo(tmp_path) as d:
        (folder,) = d.upload_dirs()
        uploaded = Path(upload(d, config.EXAMPLES_DIR / EXAMPLE_2D))
        assert uploaded.is_file() and folder in uploaded.parents
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(60) is not None
        assert not uploaded.exists()
        assert d.upload_dirs() == []


@pytest.mark.slow
def test_uploads_never_opened_are_swept_from_the_cache_while_the_server_runs(tmp_path, monkeypatch):
    from echomeasure.ui import app as ui

    assert ui.CACHE_SWEEP[1] <= 3600  # an identifiable original stays an hour at most
    monkeypatch.setattr(ui, "CACHE_SWEEP", (1, 1))
    app = ui.build_app(f"sqlite:///{tmp_path / 'sweep.sqlite'}", examples_dir=tmp_path)
    port = free_port()
    ui.launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False)
    try:
        with (config.EXAMPLES_DIR / EXAMPLE_2D).open("rb") as fh:
            r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload", files={"files": (EXAMPLE_2D, fh)}, timeout=60)
        uploaded = Path(r.json()[0])
        assert uploaded.is_file()
        deadline = time.monotonic() + 30
        while uploaded.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not uploaded.exists()
    finally:
        app.close()
        app.echomeasure_store.close()  # type: ignore[attr-defined]


def test_upload_folders_of_killed_servers_are_removed_at_the_next_start(tmp_path):
    from echomeasure.web_security import remove_stale_upload_dirs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"echomeasure-uploads-{dead.stdout.strip()}-abc"
    (stale / "x").mkdir(parents=True)
    (stale / "x" / "original.dcm").write_bytes(b"identifiable")
    alive = tmp_path / f"echomeasure-uploads-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "echomeasure-uploads-notapid"
    other.mkdir()
    assert remove_stale_upload_dirs(tmp_path) == [stale]
    assert not stale.exists() and alive.is_dir() and other.is_dir()


# ----------------------------------------------------------------------------- login


@pytest.mark.slow
def test_with_a_login_the_reviewer_is_the_logged_in_user(tmp_path):
    from gradio_client import Client

    with running_demo(tmp_path, "--auth", "alice:s3cret-pw") as d:
        anonymous = httpx.post(d.url + "/gradio_api/call/save_review", json={"data": [1]}, timeout=30)
        assert anonymous.status_code in (401, 403)
        client = Client(d.url + "/", auth=("alice", "s3cret-pw"), verbose=False)
        state = client.predict(d.store.clip_id, "lvidd", "accept", "Dr. Bob (not alice)", api_name="/save_review")
        assert state["reviewer"] == "alice"
        (rev,) = reviews_by(d.store, "lvidd")
        assert (rev.reviewer, rev.reviewer_display_name) == ("alice", "Dr. Bob (not alice)")
        from echomeasure.store import open_store

        s = open_store(d.store.url)
        try:
            event = next(e for e in s.audit_events() if e.entity_type == "review")
        finally:
            s.close()
        assert event.actor == "alice"


# ----------------------------------------------------------------------------- the UI's save path


def test_the_ui_save_path_applies_the_same_reviewer_rules(tmp_path):
    from echomeasure.errors import StoreError
    from echomeasure.store import open_store
    from echomeasure.ui.review import ReviewRequest, save_reviews

    info = prepare_store(tmp_path)
    store = open_store(info.url)
    try:
        request = ReviewRequest.from_payload({"name": "ivsd", "action": "accept"})
        for bad in ("x" * 101, "Dr.\x00A", "Dr.\u200bA", ""):
            with pytest.raises(StoreError):
                save_reviews(store, info.clip_id, [request], bad)
        with pytest.raises(StoreError):  # a typed display name beside a login follows the rule too
            save_reviews(store, info.clip_id, [request], "Dr.\nA", logged_in_user="alice")
        assert store.reviews() == []
        (saved,) = save_reviews(store, info.clip_id, [request], "Dr. Bob (not alice)", logged_in_user="alice")
        assert (saved.reviewer, saved.reviewer_display_name) == ("alice", "Dr. Bob (not alice)")
        (saved,) = save_reviews(store, info.clip_id, [request], "  Reader One ")
        assert (saved.reviewer, saved.reviewer_display_name) == ("Reader One", None)
    finally:
        store.close()
