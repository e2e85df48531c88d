"""`echomeasure batch` on a real local Ray: same results as sequential `ingest`, resume, failures.

The Ray tests share one local Ray session (module fixture, 2 CPUs); each batch run still starts
its actor pool and loads the models, so the number of runs is kept small.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from store_fixtures import CANARY_STRINGS, lvidd_proposals, write_us_dicom

from echomeasure import config
from echomeasure.batch import run_batch, sealed
from echomeasure.batch.run import WORKER_LOST
from echomeasure.batch.worker import PreAnnotator
from echomeasure.cli import main
from echomeasure.errors import DeidentificationError
from echomeasure.store import open_store
from echomeasure.store.contours import contour_proposals, volumes

TEST_SECRET = "test-secret-not-for-production"  # the one tests/conftest.py sets for every test
EXAMPLES = config.EXAMPLES_DIR


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module; its workers inherit the test secret from the environment."""
    import ray

    saved = os.environ.get("ECHOMEASURE_SECRET")
    os.environ["ECHOMEASURE_SECRET"] = TEST_SECRET
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()
    if saved is None:
        os.environ.pop("ECHOMEASURE_SECRET", None)
    else:
        os.environ["ECHOMEASURE_SECRET"] = saved


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """The shipped examples (two PLAX cines, two Doppler strips, an apical cine), three small identifiable
    DICOMs full of canaries in a sub-folder, a truth JSON and one unreadable file."""
    root = tmp_path / "CANARYSURNAME_archive"
    (root / "sub").mkdir(parents=True)
    for f in sorted(EXAMPLES.glob("case_*.dcm")):
        shutil.copy(f, root / f.name)
    for seed in (1, 2, 3):
        write_us_dicom(root / "sub" / f"small_{seed}.dcm", seed=seed, n_frames=3 + seed, study_suffix=str(seed % 2))
    (root / "case_0000.truth.json").write_text("{}")
    (root / "broken.dcm").write_bytes(b"\x00" * 300 + b"definitely not a DICOM file")
    return root


def _contours_and_volumes(store, clip_id: int) -> dict[str, list]:
    """The contour and volume proposals of a stored clip, with the name and version of their model."""
    models = {m.id: (m.name, m.version) for m in store.model_versions()}
    return {
        "contours": [(c.frame_index, c.structure, c.polygon, c.area_cm2, c.confidence, models.get(c.model_version_id))
                     for c in contour_proposals(store, clip_id)],
        "volumes": [(v.measurement, v.frame_index, v.value, v.unit, v.method, v.confidence, models.get(v.model_version_id))
                    for v in volumes(store, clip_id)],
    }


def _store_snapshot(url: str) -> dict[str, dict]:
    """Every clip of a store by instance UID, with its saved frames, proposals, contours and volumes."""
    out: dict[str, dict] = {}
    with open_store(url) as store:
        for c in store.clips():
            out[c.instance_uid] = {
                **_contours_and_volumes(store, c.id),
                "clip": (c.study_uid, c.series_uid, c.kind, c.n_frames, c.frame_time_ms, c.width_px, c.height_px,
                         c.regions, c.calibration_source, c.user_cm_per_px, c.pixel_sha256),
                "deid_record": c.deid_record,
                "frames": [(f.frame_index, f.sha256) for f in store.frame_images(c.id)],
                "proposals": {
                    p.measurement: (p.frame_index, p.points, p.value, p.unit, p.signed_value, p.pixel_length_px,
                                    p.confidence, p.model_name, p.model_version)
                    for p in store.proposals(c.id)
                },
            }
    return out


def _assert_same_stores(expected: dict[str, dict], actual: dict[str, dict]) -> None:
    assert sorted(actual) == sorted(expected)
    for uid, exp in expected.items():
        got = actual[uid]
        assert got["clip"] == exp["clip"]
        assert got["deid_record"] == exp["deid_record"]
        assert got["frames"] == exp["frames"] and len(got["frames"]) == exp["clip"][3]
        assert sorted(got["proposals"]) == sorted(exp["proposals"])
        assert got["contours"] == exp["contours"] and got["volumes"] == exp["volumes"]
        for name, e in exp["proposals"].items():
            g = got["proposals"][name]
            assert g[0] == e[0] and g[3] == e[3] and g[7:] == e[7:], name
            np.testing.assert_allclose(np.array(g[1]), np.array(e[1]), atol=1e-6, err_msg=name)
            for gv, ev in zip(g[2:7], e[2:7], strict=True):
                if isinstance(ev, float):
                    assert gv == pytest.approx(ev, rel=1e-9, abs=1e-9), name
                elif not isinstance(ev, str):
                    assert gv == ev, name


# --------------------------------------------------------------------------- without a Ray session


def test_batch_without_ray_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["batch", str(EXAMPLES)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'echomeasure[ray]'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("address", ["auto", "ray://10.255.255.1:10001"])
def test_sqlite_with_a_cluster_address_is_refused_before_any_work(address, tmp_path, capsys):
    db = tmp_path / "local.sqlite"
    assert main(["batch", str(EXAMPLES), "--db", f"sqlite:///{db}", "--address", address]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and "server database" in captured.err and "postgresql" in captured.err
    assert captured.out == "" and not db.exists()


def test_a_sealed_row_opens_only_unchanged_and_with_the_same_secret():
    from echomeasure import ingest
    from echomeasure.propose import propose

    secret = TEST_SECRET.encode()
    dclip = ingest.load(EXAMPLES / "case_0003.dcm", secret=secret)
    proposals = propose(dclip.clip)
    row = sealed.ok_row(7, "case_0003.dcm", "k" * 64, dclip, proposals, [], secret)
    opened = sealed.open_row(row, secret)
    assert (opened.dclip.instance_uid, opened.dclip.pixel_sha256, opened.dclip.kind) == (
        dclip.instance_uid, dclip.pixel_sha256, dclip.kind)
    assert opened.dclip.deid_record == json.loads(json.dumps(dclip.deid_record))
    np.testing.assert_array_equal(opened.dclip.clip.frames, dclip.clip.frames)
    assert opened.dclip.clip.regions == dclip.clip.regions
    assert [(p.name, p.frame, p.points, p.value) for p in opened.proposals.measurements] == [
        (p.name, p.frame, tuple(tuple(float(v) for v in pt) for pt in p.points), p.value) for p in proposals.measurements]

    with pytest.raises(DeidentificationError, match="another site secret"):
        sealed.open_row(row, b"some other site")
    frames = bytearray(row["frames"])
    frames[100] ^= 0xFF
    with pytest.raises(DeidentificationError, match="seal"):
        sealed.open_row({**row, "frames": bytes(frames)}, secret)
    with pytest.raises(DeidentificationError, match="seal"):
        sealed.open_row({**row, "proposals": row["proposals"] + " "}, secret)


LV_ED = {"frame": 1, "structure": "lv", "polygon": [[20.0, 10.0], [30.0, 12.0], [28.0, 30.0], [18.0, 28.0]],
         "area_cm2": 0.62, "confidence": 0.93}
LV_ES = {"frame": 3, "structure": "lv", "polygon": [[21.0, 12.0], [28.0, 13.0], [26.0, 26.0]], "area_cm2": 0.4,
         "confidence": 0.88}
LV_VOLUMES = [
    {"name": "lvedv", "value": 120.5, "unit": "ml", "frame": 1, "method": "single-plane A4C", "confidence": 0.9},
    {"name": "lvesv", "value": 50.25, "unit": "ml", "frame": 3, "method": "single-plane A4C", "confidence": 0.85},
    {"name": "lvef", "value": 58.3, "unit": "%", "frame": 3, "method": "single-plane A4C", "confidence": 0.85},
]


def test_a_sealed_row_carries_contours_and_volumes_into_the_store_as_ingest_stores_them(tmp_path, monkeypatch):
    from echomeasure import ingest, pipeline
    from echomeasure.batch import store_opened

    proposed = lvidd_proposals()
    proposed.segmentations, proposed.volumes = [LV_ED, LV_ES], LV_VOLUMES
    dicom = write_us_dicom(tmp_path / "clip.dcm", seed=4)
    secret = TEST_SECRET.encode()
    row = sealed.ok_row(0, "clip.dcm", "k" * 64, ingest.load(dicom, secret=secret), proposed, [], secret)
    opened = sealed.open_row(row, secret)
    assert opened.proposals.segmentations == [LV_ED, LV_ES] and opened.proposals.volumes == LV_VOLUMES

    with open_store(f"sqlite:///{tmp_path / 'batch.sqlite'}") as store:
        batch = store_opened(store, opened)
        batch_stored = _contours_and_volumes(store, batch.clip.id)
    monkeypatch.setattr(pipeline, "_propose", lambda dclip, only, report: proposed)
    with open_store(f"sqlite:///{tmp_path / 'single.sqlite'}") as store:
        single = pipeline.ingest_path(dicom, store, secret=secret)
        single_stored = _contours_and_volumes(store, single.clip.id)
    assert batch.proposed and single.proposed and len(batch.proposals) == len(single.proposals) == 3
    assert [(c[0], c[1]) for c in batch_stored["contours"]] == [(1, "lv"), (3, "lv")]
    assert [v[0] for v in batch_stored["volumes"]] == ["lvedv", "lvesv", "lvef"]
    assert batch_stored == single_stored


def test_the_pool_is_sized_to_the_machine_or_the_cluster():
    from echomeasure.batch import plan_pool

    assert plan_pool(2, None, 100, local=True) == (2, 1, 1.0)  # one actor per core
    assert plan_pool(2, 1, 100, local=True) == (1, 2, 2.0)  # the spare core becomes a thread
    assert plan_pool(2, 4, 100, local=True) == (4, 1, 0.5)  # more actors than cores share them
    assert plan_pool(16, None, 3, local=True) == (3, 5, 5.0)  # never more actors than files
    assert plan_pool(64, None, 1000, local=False) == (64, 1, 1.0)  # a cluster: one per CPU it reports


def test_the_resume_ledger_counts_only_clips_still_in_the_store(tmp_path):
    from echomeasure.batch.run import append_ledger, ledger_path, read_ledger

    ledger = ledger_path(f"sqlite:///{tmp_path / 'store.sqlite'}")
    assert ledger == tmp_path / "store.sqlite.batch-done"
    append_ledger(ledger, "a" * 64, 1)
    append_ledger(ledger, "b" * 64, 2)
    assert read_ledger(ledger, {1, 2}) == {"a" * 64, "b" * 64}
    assert read_ledger(ledger, {2}) == {"b" * 64}  # clip 1 is gone (a new database): done again
    assert read_ledger(tmp_path / "none", {1}) == set()


# --------------------------------------------------------------------------- on a local Ray


def test_batch_gives_the_same_store_as_sequential_ingest_and_resumes(ray_session, archive, tmp_path, capsys):
    seq_url = f"sqlite:///{tmp_path / 'sequential.sqlite'}"
    batch_url = f"sqlite:///{tmp_path / 'batch.sqlite'}"
    assert main(["ingest", str(archive), "--db", seq_url]) == 2  # broken.dcm
    seq_lines = _lines(capsys.readouterr().out)

    assert main(["batch", str(archive), "--db", batch_url, "--workers", "2"]) == 2
    out, err = capsys.readouterr()
    lines = _lines(out)
    # One JSON line per file, as ingest prints them (in the order the workers finished).
    assert sorted(ln["file"] for ln in lines) == sorted(ln["file"] for ln in seq_lines)
    by_file = {ln["file"]: ln for ln in lines}
    assert by_file["broken.dcm"]["status"] == "error"
    assert by_file["broken.dcm"]["error"] == next(ln["error"] for ln in seq_lines if ln["file"] == "broken.dcm")
    assert f"error: broken.dcm: {by_file['broken.dcm']['error']}" in err
    for ln in seq_lines:
        if ln["status"] == "ok":
            got = {k: v for k, v in by_file[ln["file"]].items() if k != "clip_id"}
            assert got == {k: v for k, v in ln.items() if k != "clip_id"}
    assert "batch: 9/9 files done, 1 failed" in err and "files/min" in err
    assert not any(c in out + err for c in CANARY_STRINGS)
    assert "Traceback" not in err

    seq = _store_snapshot(seq_url)
    assert len(seq) == 8 and sum(len(c["proposals"]) for c in seq.values()) >= 16
    # plax-seg: 6 structures on ED and ES of each PLAX cine; apical-seg: LV, myocardium, LA on ED and ES
    assert sum(len(c["contours"]) for c in seq.values()) == 2 * 12 + 6
    apical = [c for c in seq.values() if any(v[0] == "lvef" for v in c["volumes"])]
    assert len(apical) == 1 and {v[4] for v in apical[0]["volumes"]} >= {"single-plane A4C"}
    _assert_same_stores(seq, _store_snapshot(batch_url))

    # Re-run with --resume: the finished files are skipped (same path and bytes), the broken one is tried again.
    assert main(["batch", str(archive), "--db", batch_url, "--resume"]) == 2
    out, err = capsys.readouterr()
    again = {ln["file"]: ln for ln in _lines(out)}
    assert {f for f, ln in again.items() if ln["status"] == "skipped"} == {f for f, ln in by_file.items() if ln["status"] == "ok"}
    assert again["broken.dcm"]["status"] == "error"
    assert "1 failed, 8 skipped of 9 files" in err
    _assert_same_stores(seq, _store_snapshot(batch_url))


def test_batch_stores_the_plax_contours_as_ingest_does(ray_session, tmp_path):
    from echomeasure.pipeline import ingest_path

    folder = tmp_path / "plax"
    folder.mkdir()
    shutil.copy(EXAMPLES / "case_0000.dcm", folder / "case_0000.dcm")
    single_url = f"sqlite:///{tmp_path / 'single.sqlite'}"
    with open_store(single_url) as store:
        single = ingest_path(folder / "case_0000.dcm", store, secret=config.secret())
    assert single.proposed

    batch_url = f"sqlite:///{tmp_path / 'batch.sqlite'}"
    reported: list[dict] = []
    summary = run_batch([folder], db=batch_url, workers=1, emit=reported.append)
    assert (summary.ok, summary.failed) == (1, 0) and reported[0]["warnings"] == list(single.warnings)
    expected, stored = _store_snapshot(single_url), _store_snapshot(batch_url)
    clip = next(iter(stored.values()))
    # plax-seg segments the ED and ES frames (those of the calipers): six structures on each
    assert len(clip["contours"]) == 12
    assert {c[0] for c in clip["contours"]} == {p[0] for p in clip["proposals"].values()}
    _assert_same_stores(expected, stored)
    for url in (single_url, batch_url):  # who drew the contours: plax-seg, not the caliper model
        with open_store(url) as store:
            from echomeasure.store.contours import contour_proposals

            versions = {m.id: m.name for m in store.model_versions()}
            drawn_by = {versions[c.model_version_id] for c in contour_proposals(store, store.clips()[0].id)}
        assert drawn_by == {"plax-seg"}


def test_batch_to_parquet_then_ingest_from_parquet(ray_session, archive, tmp_path, capsys):
    for f in ("case_0000.dcm", "case_0001.dcm", "case_0000_a4c.dcm"):  # 2D examples: covered above; keep this short
        (archive / f).unlink()
    seq_url = f"sqlite:///{tmp_path / 'sequential.sqlite'}"
    assert main(["ingest", str(archive), "--db", seq_url]) == 2
    capsys.readouterr()

    out_dir = tmp_path / "results"
    assert main(["batch", str(archive), "--out", "parquet", str(out_dir)]) == 2
    captured = capsys.readouterr()
    lines = _lines(captured.out)
    # nothing is stored with --out parquet: the summary says where the results went (it said "5 stored")
    assert f"batch: 5 written to {out_dir}, 1 failed" in captured.err and " stored," not in captured.err
    written = sorted(p.name for p in out_dir.glob("*.parquet"))
    assert len(written) == 5 and sorted(ln["parquet"] for ln in lines if ln["status"] == "ok") == written
    assert not any(c.encode() in p.read_bytes() for p in out_dir.glob("*.parquet") for c in CANARY_STRINGS)

    # --resume skips what the folder already holds; only the broken file is tried again.
    assert main(["batch", str(archive), "--out", "parquet", str(out_dir), "--resume"]) == 2
    again = _lines(capsys.readouterr().out)
    assert sorted(ln["status"] for ln in again) == ["error"] + ["skipped"] * 5
    assert sorted(p.name for p in out_dir.glob("*.parquet")) == written

    (out_dir / "zz-damaged.parquet").write_bytes(b"PAR1 not really")
    parquet_url = f"sqlite:///{tmp_path / 'from_parquet.sqlite'}"
    assert main(["ingest", "--from-parquet", str(out_dir), "--db", parquet_url]) == 2  # the damaged file
    stored = _lines(capsys.readouterr().out)
    assert [ln["status"] for ln in stored].count("ok") == 5
    assert next(ln for ln in stored if ln["file"] == "zz-damaged.parquet")["status"] == "error"
    _assert_same_stores(_store_snapshot(seq_url), _store_snapshot(parquet_url))

    # A result sealed with another site's secret is refused and nothing of it is stored.
    other_url = f"sqlite:///{tmp_path / 'other.sqlite'}"
    (out_dir / "zz-damaged.parquet").unlink()
    assert main(["ingest", "--from-parquet", str(out_dir), "--db", other_url, "--secret", "another site"]) == 2
    refused = _lines(capsys.readouterr().out)
    assert all(ln["status"] == "error" and "another site secret" in ln["error"] for ln in refused)
    assert _store_snapshot(other_url) == {}


class _KillingAnnotator(PreAnnotator):
    """Kills its own worker process on files named ``poison*`` (always) and ``flaky*`` (first try)."""

    def process_file(self, index, path, key):
        name = Path(path).name
        if name.startswith("poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        if name.startswith("flaky"):
            marker = Path(path).with_suffix(".died-once")
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().process_file(index, path, key)


def test_a_killed_worker_is_retried_once_then_the_file_is_reported(ray_session, tmp_path, monkeypatch):
    from ray import cloudpickle

    from echomeasure.errors import EchomeasureError

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    root = tmp_path / "archive"
    root.mkdir()
    for i, name in enumerate(("a_good.dcm", "flaky.dcm", "poison.dcm", "z_good.dcm")):
        write_us_dicom(root / name, seed=10 + i)

    # First: workers that hold another site secret than the writer are refused before anything
    # is stored (the workers inherited the session's secret; the writer now has its own).
    with monkeypatch.context() as m:
        m.setenv("ECHOMEASURE_SECRET", "the writer's own secret")
        other = f"sqlite:///{tmp_path / 'other.sqlite'}"
        with pytest.raises(EchomeasureError, match="another site secret"):
            run_batch([root / "a_good.dcm"], db=other, workers=1, run_models=False, emit=lambda obj: None)
        with open_store(other) as store:
            assert store.clips() == []

    # Kept last in the module: Ray Data may keep the restarted actor of this run until the
    # session ends (a CLI run stops its own Ray at the end).
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    reported: list[dict] = []
    summary = run_batch([root], db=url, workers=1, run_models=False, worker_class=_KillingAnnotator,
                        emit=reported.append)
    by_file = {r["file"]: r for r in reported}
    assert by_file["poison.dcm"] == {"file": "poison.dcm", "status": "error", "error": WORKER_LOST}
    assert {f for f, r in by_file.items() if r["status"] == "ok"} == {"a_good.dcm", "flaky.dcm", "z_good.dcm"}
    assert (summary.ok, summary.failed) == (3, 1)
    with open_store(url) as store:
        assert len(store.clips()) == 3
