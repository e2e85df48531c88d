"""Timings and memory figures of the store and web hardening (recorded in store_security.md).

    .venv/bin/python benchmarks/store_security.py audit [--events 100000] [--db URL]
    .venv/bin/python benchmarks/store_security.py web [--requests 10] [--mb 36]

``audit``: fills a fresh store with EVENTS audit events, half of them recording a review (so
verification also re-hashes that many review rows), then times ``chain.verify`` (median of 3)
and the whole ``echomeasure audit verify`` command (process start included).

``web``: starts ``echomeasure demo`` on loopback with the examples store of the UI tests, reads
the server's RSS, sends REQUESTS API calls with a body of MB megabytes, and reads it again; then
does the same with the app launched without :class:`echomeasure.web_security.RequestGuard`
(Gradio alone) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def bench_audit(n_events: int, url: str | None) -> dict:
    from store_fixtures import lvidd_proposals, make_deidentified

    from echomeasure.store import audit, chain, open_store
    from echomeasure.store import schema as db
    from echomeasure.store.mapping import audit_payload

    folder = Path(tempfile.mkdtemp(prefix="echomeasure-bench-"))
    url = url or f"sqlite:///{folder / 'bench.sqlite'}"
    os.environ.setdefault("ECHOMEASURE_SECRET", "bench-secret")
    store = open_store(url, images_dir=folder / "images")
    clip = store.add_clip(make_deidentified(folder, 1))
    store.add_proposals(clip.id, lvidd_proposals())
    proposal_id = store.proposals(clip.id)[1].id
    n_reviews = n_events // 2
    per_tx = 2000

    def fill(s, count: int) -> None:
        for i in range(count):
            row = db.Review(
                proposal_id=proposal_id, clip_id=clip.id, frame_index=1, measurement="lvidd",
                points=[[20.0, 16.0 + (i % 7) * 0.25], [20.0, 40.0]], value=1.2 + (i % 7) * 0.0125, unit="cm",
                action="corrected", reviewer=f"reader-{i % 13}", seconds_spent=3.5, model_version_id=None,
                created_at=db.utcnow(),
            )
            s.add(row)
            s.flush()
            audit.append(s, row.reviewer, "review.corrected", "review", row.id, clip.id, None, audit_payload(row),
                         content=audit.content_hash([row], chain.REVIEW_CONTENT))
            audit.append(s, "system", "bench.note", "clip", clip.id, clip.id, None, {"i": i})

    started = time.perf_counter()
    done = 0
    while done < n_reviews:
        count = min(per_tx, n_reviews - done)
        store._write(lambda s, c=count: fill(s, c))
        done += count
    fill_s = time.perf_counter() - started
    times = []
    for _ in range(3):
        report = chain.verify(store.engine)
        assert report.ok, report
        times.append(report.seconds)
    store.close()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "echomeasure.cli", "audit", "verify", "--db", url],
                          capture_output=True, text=True)
    cli_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    return {
        "backend": url.split(":", 1)[0],
        "events": report.n_events,
        "reviews_rehashed": report.covered["review"],
        "fill_s": round(fill_s, 1),
        "verify_s_median": round(statistics.median(times), 3),
        "verify_s_runs": [round(t, 3) for t in times],
        "cli_audit_verify_s": round(cli_s, 2),
    }


UNGUARDED = """
import sys
sys.path[:0] = {paths!r}
from echomeasure.ui.app import build_app
app = build_app({url!r})
options = dict(app.echomeasure_launch)
app.launch(server_name="127.0.0.1", server_port={port}, **options)
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _serve(cmd: list[str], port: int, env: dict) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5)
            return proc
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def _flood(port: int, clip_id: int, n: int, mb: int) -> list:
    import httpx

    body = json.dumps({"data": [clip_id, "lvidd", "accept", "x" * (mb * 1024 * 1024), None, None, None]}).encode()
    statuses = []
    for _ in range(n):
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/call/save_review", content=body,
                           headers={"content-type": "application/json"}, timeout=120)
            statuses.append(r.status_code)
        except httpx.TransportError:
            statuses.append("closed")
    return statuses


def bench_web(n: int, mb: int) -> dict:
    import httpx
    from ui_fixtures import free_port, prepare_store

    os.environ.setdefault("ECHOMEASURE_SECRET", "test-secret-not-for-production")
    out = {}
    for mode in ("guarded", "unguarded"):
        folder = Path(tempfile.mkdtemp(prefix=f"echomeasure-web-{mode}-"))
        info = prepare_store(folder)
        port = free_port()
        env = {**os.environ}
        if mode == "guarded":
            cmd = [sys.executable, "-m", "echomeasure.cli", "demo", "--port", str(port), "--db", info.url]
        else:
            code = UNGUARDED.format(paths=[str(ROOT)], url=info.url, port=port)
            cmd = [sys.executable, "-c", code]
        proc = _serve(cmd, port, env)
        try:
            httpx.post(f"http://127.0.0.1:{port}/gradio_api/call/measurements", json={"data": [info.clip_id]}, timeout=30)
            time.sleep(1)
            before = _rss_mb(proc.pid)
            statuses = _flood(port, info.clip_id, n, mb)
            time.sleep(3)
            after = _rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
        out[mode] = {"rss_before_mb": round(before), "rss_after_mb": round(after),
                     "statuses": sorted({str(s) for s in statuses})}
    out["requests"], out["body_mb"] = n, mb
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="part", required=True)
    a = sub.add_parser("audit")
    a.add_argument("--events", type=int, default=100_000)
    a.add_argument("--db")
    w = sub.add_parser("web")
    w.add_argument("--requests", type=int, default=10)
    w.add_argument("--mb", type=int, default=36)
    args = p.parse_args()
    result = bench_audit(args.events, args.db) if args.part == "audit" else bench_web(args.requests, args.mb)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
