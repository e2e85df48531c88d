"""Concurrent reviewers never lose a review: threads and processes, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
from store_fixtures import lvidd_proposals

from echomeasure.store import open_store
from echomeasure.store.chain import verify

WORKER = textwrap.dedent(
    """
    import sys
    from echomeasure.store import open_store
    url, clip_id, worker, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    store = open_store(url, images_dir=sys.argv[5])
    for i in range(n):
        action = ("accepted", "corrected")[i % 2]
        points = None if action == "accepted" else [(20.0, 16.0 + i % 5), (20.0, 40.0)]
        value = None if action == "accepted" else 1.2 + i / 1000
        store.add_review(clip_id, "lvidd", action, f"reviewer-{worker}", points=points, value=value, seconds_spent=i)
    store.close()
    """
)


@pytest.fixture
def reviewed_clip(app_store_url, tmp_path, deidentified_clip):
    store = open_store(app_store_url, images_dir=tmp_path / "images")
    rec = store.add_clip(deidentified_clip)
    store.add_proposals(rec.id, lvidd_proposals())
    yield store, rec
    store.close()


def _assert_all_reviews_kept(store, clip_id, expected_by_reviewer):
    reviews = store.reviews(clip_id)
    counts: dict[str, int] = {}
    for r in reviews:
        counts[r.reviewer] = counts.get(r.reviewer, 0) + 1
    assert counts == expected_by_reviewer
    audit = [e for e in store.audit_events(clip_id) if e.entity_type == "review"]
    assert sorted(e.entity_id for e in audit) == sorted(r.id for r in reviews)
    assert store.current_measurements(clip_id)[1].n_reviews == sum(expected_by_reviewer.values())
    # Concurrent writers never fork or break the audit hash chain.
    report = verify(store.engine)
    assert report.ok, report.reason
    assert report.covered["review"] == len(reviews)


def test_concurrent_reviewer_threads_lose_no_review(reviewed_clip):
    store, clip = reviewed_clip
    n_threads, per_thread = 8, 25

    def work(t: int) -> None:
        for i in range(per_thread):
            store.add_review(clip.id, "lvidd", "accepted", f"thread-{t}", seconds_spent=i)

    with ThreadPoolExecutor(n_threads) as pool:
        list(pool.map(work, range(n_threads)))
    _assert_all_reviews_kept(store, clip.id, {f"thread-{t}": per_thread for t in range(n_threads)})


def test_concurrent_reviewer_processes_lose_no_review(reviewed_clip, app_store_url, tmp_path):
    store, clip = reviewed_clip
    n_procs, per_proc = 4, 50
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, app_store_url, str(clip.id), str(w), str(per_proc), str(tmp_path / "images")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(n_procs)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    _assert_all_reviews_kept(store, clip.id, {f"reviewer-{w}": per_proc for w in range(n_procs)})


def test_the_same_clip_added_by_two_threads_at_once_is_stored_once(app_store_url, tmp_path, deidentified_clip):
    store = open_store(app_store_url, images_dir=tmp_path / "images")
    try:
        with ThreadPoolExecutor(4) as pool:
            records = list(pool.map(lambda _: store.add_clip(deidentified_clip), range(4)))
        assert len({r.id for r in records}) == 1
        assert sum(r.created for r in records) == 1
        assert len(store.clips()) == 1
    finally:
        store.close()
