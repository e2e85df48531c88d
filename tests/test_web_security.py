"""Web hardening, checked over HTTP against a running ``echomeasure demo`` on loopback.

Host/Origin checks (403), API body limit (413) and the server's memory after oversized
requests, JSON results of every API endpoint through ``/gradio_api/call/...``, removal of
uploads after processing and at shutdown, and the logged-in user as reviewer.
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
    refusal,
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
]


@pytest.mark.parametrize("headers", FOREIGN, ids=["host", "host+origin", "origin", "origin-null"])
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
