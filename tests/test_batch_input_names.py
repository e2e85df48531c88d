"""Every input of `echomeasure batch` has its own name, also across several input folders.

Two files with the same path inside two folders given (``in1/a.dcm``, ``in2/a.dcm``), or equal
bytes in two places (``in1/x/d.dcm``, ``in1/y/d.dcm``), are two inputs: each gets its own Parquet
result and resume record (keyed by its path and bytes, whatever way the folder was typed), and an
``error:`` line names each by the folder as typed in front of its path there.

The actor pool is replaced by the same worker run in this process (no Ray needed): what is
checked is how the driver names, skips and writes the rows the workers return.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from store_fixtures import write_us_dicom

from echomeasure.batch import ingest_from_parquet, run
from echomeasure.batch.worker import PreAnnotator
from echomeasure.config import secret
from echomeasure.store import open_store

NOT_DICOM = b"\x00" * 300 + b"definitely not a DICOM file"


class _Rows:
    """The rows the pool would give: each item processed by one in-process worker."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def iter_rows(self):
        worker = PreAnnotator(run_models=False)
        for item in self.items:
            yield worker.process_file(item["index"], item["path"], item["source_key"])


@pytest.fixture
def two_folders(tmp_path: Path, monkeypatch) -> Path:
    """in1 and in2 with the same names inside: a.dcm (other bytes), b.dcm (unreadable, both), c.dcm
    (the same bytes in both); in1 also holds the same bytes as x/d.dcm and y/d.dcm."""
    for folder in ("in1", "in2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "b.dcm").write_bytes(NOT_DICOM)
    write_us_dicom(tmp_path / "in1" / "a.dcm", seed=1)
    write_us_dicom(tmp_path / "in2" / "a.dcm", seed=2)
    write_us_dicom(tmp_path / "in1" / "c.dcm", seed=3)
    shutil.copy(tmp_path / "in1" / "c.dcm", tmp_path / "in2" / "c.dcm")
    for sub in ("x", "y"):
        (tmp_path / "in1" / sub).mkdir()
    write_us_dicom(tmp_path / "in1" / "x" / "d.dcm", seed=4)
    shutil.copy(tmp_path / "in1" / "x" / "d.dcm", tmp_path / "in1" / "y" / "d.dcm")

    monkeypatch.setattr(run, "require_ray", lambda: None)
    monkeypatch.setattr(run, "_start_ray", lambda ray, address: False)
    monkeypatch.setattr(run, "_configure_data_context", lambda ray, n: None)
    monkeypatch.setattr(run, "_pool_dataset", lambda ray, items, summary, job: _Rows(items))
    return tmp_path


def _batch(paths: list[str], **kwargs) -> tuple[run.BatchSummary, list[dict], list[str]]:
    lines: list[dict] = []
    stream = io.StringIO()
    summary = run.run_batch(paths, run_models=False, resume=True, emit=lines.append, progress_stream=stream, **kwargs)
    return summary, lines, sorted(ln for ln in stream.getvalue().splitlines() if ln.startswith("error: "))


def _status(lines: list[dict]) -> list[tuple[str, str]]:
    return sorted((ln["file"], ln["status"]) for ln in lines)


def test_each_input_of_several_folders_gets_its_own_parquet_result_and_resume(two_folders, tmp_path, monkeypatch):
    out = tmp_path / "results"
    summary, lines, errors = _batch([str(two_folders / "in1")], out_parquet=out)
    assert (summary.ok, summary.failed, summary.skipped) == (4, 1, 0)
    assert errors == [f"error: b.dcm: {next(ln['error'] for ln in lines if ln['status'] == 'error')}"]
    # x/d.dcm and y/d.dcm hold the same bytes: two inputs, two results (one overwrote the other)
    assert len({ln["parquet"] for ln in lines if ln["status"] == "ok"}) == 4
    assert len(list(out.glob("*.parquet"))) == 4

    # Resumed with both folders, typed another way (relative, from another working folder): in1's
    # files are found finished; in2's are not, not even c.dcm, whose bytes in1/c.dcm holds.
    monkeypatch.chdir(two_folders)
    summary, lines, errors = _batch(["./in1/", "in2"], out_parquet=out)
    assert (summary.ok, summary.failed, summary.skipped) == (2, 2, 4)
    assert _status(lines) == [("a.dcm", "ok"), ("a.dcm", "skipped"), ("b.dcm", "error"), ("b.dcm", "error"),
                              ("c.dcm", "ok"), ("c.dcm", "skipped"), ("d.dcm", "skipped"), ("d.dcm", "skipped")]
    reason = next(ln["error"] for ln in lines if ln["status"] == "error")
    assert errors == [f"error: ./in1/b.dcm: {reason}", f"error: in2/b.dcm: {reason}"]
    assert len(list(out.glob("*.parquet"))) == 6  # one per input that passed the gate

    # every result goes into the store: six inputs, four different contents
    with open_store(f"sqlite:///{tmp_path / 'review.sqlite'}") as store:
        stored: list[dict] = []
        assert ingest_from_parquet(out, store, secret=secret(), emit=stored.append) == 0
        assert len(stored) == 6 and len(store.clips()) == 4


def test_each_input_of_several_folders_gets_its_own_resume_record_in_the_store(two_folders, tmp_path):
    url = f"sqlite:///{tmp_path / 'review.sqlite'}"
    summary, first, _ = _batch([str(two_folders / "in1")], db=url)
    assert (summary.ok, summary.failed) == (4, 1)
    clip_of_c = next(ln["clip_id"] for ln in first if ln["file"] == "c.dcm")

    summary, lines, errors = _batch([str(two_folders / "in1"), str(two_folders / "in2")], db=url)
    assert (summary.ok, summary.failed, summary.skipped) == (2, 2, 4)
    assert _status(lines) == [("a.dcm", "ok"), ("a.dcm", "skipped"), ("b.dcm", "error"), ("b.dcm", "error"),
                              ("c.dcm", "ok"), ("c.dcm", "skipped"), ("d.dcm", "skipped"), ("d.dcm", "skipped")]
    # in2/c.dcm was processed (not taken for in1/c.dcm) and is the clip in1/c.dcm stored
    assert next(ln["clip_id"] for ln in lines if ln["file"] == "c.dcm" and ln["status"] == "ok") == clip_of_c
    assert [e.split(": ")[1] for e in errors] == [f"{two_folders}/in1/b.dcm", f"{two_folders}/in2/b.dcm"]

    summary, lines, _ = _batch([str(two_folders / "in2"), str(two_folders / "in1")], db=url)  # in another order
    assert (summary.ok, summary.failed, summary.skipped) == (0, 2, 6)


def test_a_file_reached_through_overlapping_inputs_is_one_input(tmp_path, monkeypatch):
    """`batch in in/x/a.dcm in` reached in/x/a.dcm three times: three Parquet writes of one key and
    a summary counting it thrice.  Each file is now one input, where it is first reached."""
    from echomeasure.pipeline import input_files_as_given

    root = tmp_path / "in"
    (root / "x").mkdir(parents=True)
    (root / "x" / "a.dcm").write_bytes(b"a")
    (root / "b.dcm").write_bytes(b"b")
    (tmp_path / "link.dcm").symlink_to(root / "b.dcm")
    monkeypatch.chdir(tmp_path)
    files = input_files_as_given(["in", "in/x/a.dcm", "in", "link.dcm", "missing.dcm", "missing.dcm"])
    assert [label for _, label in files] == ["b.dcm", "x/a.dcm", "missing.dcm"]
