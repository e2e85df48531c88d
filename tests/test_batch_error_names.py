"""`echomeasure batch`'s ``error:`` lines name the failing file as the user gave it: the path typed,
or its path inside the folder typed (never only its base name, which two folders may share); the
JSON lines keep the base name, as ``ingest`` prints them.

The actor pool is replaced by the same worker run in this process (no Ray needed): what is
checked is how the driver reports the rows the workers return.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from echomeasure.batch import run
from echomeasure.batch.run import WORKER_LOST
from echomeasure.batch.worker import PreAnnotator

NOT_DICOM = b"\x00" * 300 + b"definitely not a DICOM file"


class _Rows:
    """The rows the pool would give: each item processed by one in-process worker, except the
    files named ``lost*`` (their worker died twice: no row comes back)."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def iter_rows(self):
        worker = PreAnnotator(run_models=False)
        for item in self.items:
            if Path(item["path"]).name.startswith("lost"):
                continue
            yield worker.process_file(item["index"], item["path"], item["source_key"])


def test_batch_error_lines_name_each_file_as_given(tmp_path, monkeypatch):
    archive = tmp_path / "archive"
    for folder in ("a", "b"):
        (archive / folder).mkdir(parents=True)
        (archive / folder / "broken.dcm").write_bytes(NOT_DICOM)  # one base name, two files
    (archive / "lost.dcm").write_bytes(NOT_DICOM)
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "bad.dcm").write_bytes(NOT_DICOM)
    typed = f"{tmp_path}/loose/./bad.dcm"  # a file named on the command line, kept as typed

    monkeypatch.setattr(run, "require_ray", lambda: None)
    monkeypatch.setattr(run, "_start_ray", lambda ray, address: False)
    monkeypatch.setattr(run, "_configure_data_context", lambda ray, n: None)
    monkeypatch.setattr(run, "_pool_dataset", lambda ray, items, summary, job: _Rows(items))
    lines: list[dict] = []
    stream = io.StringIO()
    summary = run.run_batch([str(archive), typed], db=f"sqlite:///{tmp_path / 'store.sqlite'}", run_models=False,
                            emit=lines.append, progress_stream=stream)

    assert (summary.ok, summary.failed) == (0, 4)
    assert sorted(ln["file"] for ln in lines) == ["bad.dcm", "broken.dcm", "broken.dcm", "lost.dcm"]
    reason = next(ln["error"] for ln in lines if ln["file"] == "bad.dcm")
    assert all(ln["error"] == reason for ln in lines if ln["file"] != "lost.dcm")
    errors = sorted(line for line in stream.getvalue().splitlines() if line.startswith("error: "))
    assert errors == sorted([
        f"error: a/broken.dcm: {reason}",
        f"error: b/broken.dcm: {reason}",
        f"error: lost.dcm: {WORKER_LOST}",
        f"error: {typed}: {reason}",
    ]), json.dumps(errors, indent=1)
