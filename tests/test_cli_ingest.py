"""`echomeasure ingest` and `echomeasure export` from the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_fixtures import write_us_dicom

from echomeasure.cli import main


@pytest.fixture
def study_folder(tmp_path: Path) -> Path:
    """Two good DICOMs (one in a sub-folder), a truth JSON, a README, a hidden and a broken file."""
    root = tmp_path / "CANARYSURNAME_study"
    (root / "sub").mkdir(parents=True)
    write_us_dicom(root / "case_0001.dcm", seed=1)
    write_us_dicom(root / "sub" / "case_0002.dcm", seed=2)
    (root / "case_0001.truth.json").write_text("{}")
    (root / "README.md").write_text("# notes")
    (root / ".hidden.dcm").write_bytes(b"not dicom")
    (root / "broken.dcm").write_bytes(b"\x00" * 300 + b"definitely not a DICOM file")
    return root


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_ingest_folder_prints_one_json_line_per_file_and_reports_bad_ones(study_folder, capsys):
    rc = main(["ingest", str(study_folder), "--no-propose"])
    out, err = capsys.readouterr()
    lines = _lines(out)
    assert rc == 2  # one file failed
    assert [ln["file"] for ln in lines] == ["broken.dcm", "case_0001.dcm", "case_0002.dcm"]  # sorted; no hidden, JSON or README
    bad, good = lines[0], lines[1:]
    assert bad["status"] == "error" and bad["error"]
    assert f"error: {study_folder / 'broken.dcm'}: {bad['error']}" in err  # named as found in the folder given
    assert str(study_folder) not in bad["error"]  # stdout carries the base name only
    for ln in good:
        assert ln["status"] == "ok" and ln["new"] is True
        assert ln["instance_uid"].startswith("2.25.") and ln["kind"] == "2d" and ln["frames"] == 4
        assert ln["proposals"] == 0
    assert "CANARY" not in out  # no directory names, no identifying values
    assert "Traceback" not in err


def test_reingesting_the_same_files_is_idempotent(study_folder, capsys):
    good = [str(study_folder / "case_0001.dcm"), str(study_folder / "sub" / "case_0002.dcm")]
    assert main(["ingest", *good, "--no-propose"]) == 0
    first = _lines(capsys.readouterr().out)
    assert main(["ingest", *good, "--no-propose"]) == 0
    second = _lines(capsys.readouterr().out)
    assert [ln["clip_id"] for ln in first] == [ln["clip_id"] for ln in second]
    assert [ln["new"] for ln in second] == [False, False]
    assert main(["export"]) == 0
    assert capsys.readouterr().out.startswith("study_uid,")


def test_ingest_of_a_missing_path_reports_it_and_goes_on(study_folder, capsys, monkeypatch):
    monkeypatch.chdir(study_folder)
    rc = main(["ingest", "./nope.dcm", "case_0001.dcm", "--no-propose"])
    out, err = capsys.readouterr()
    lines = _lines(out)
    assert rc == 2
    assert [ln["status"] for ln in lines] == ["error", "ok"]
    assert err == "error: ./nope.dcm: no such file; check the path\n"  # the path exactly as typed


def test_ingest_with_a_bad_database_url_is_a_one_line_error(study_folder, capsys):
    rc = main(["ingest", str(study_folder / "case_0001.dcm"), "--db", "nosuchdriver://x/y"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1


def test_export_writes_csv_to_a_file_and_refuses_a_missing_folder(study_folder, tmp_path, capsys):
    assert main(["ingest", str(study_folder / "case_0001.dcm"), "--no-propose"]) == 0
    capsys.readouterr()
    out = tmp_path / "out.csv"
    assert main(["export", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows == []  # no proposals were made: nothing to measure yet
    missing = tmp_path / "missing" / "out.csv"
    assert main(["export", "-o", str(missing)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not missing.parent.exists()
    assert main(["export", "--clip", "999"]) == 2
    assert "no clip 999" in capsys.readouterr().err


def test_export_without_a_database_says_to_ingest_first(tmp_path, capsys):
    assert main(["export", "--db", f"sqlite:///{tmp_path / 'none.sqlite'}"]) == 2
    assert "ingest" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def test_ingest_without_weights_stores_the_clip_with_a_warning(study_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECHOMEASURE_WEIGHTS", str(tmp_path / "no-weights"))
    rc = main(["ingest", str(study_folder / "case_0001.dcm")])
    (line,) = _lines(capsys.readouterr().out)
    assert rc == 0 and line["status"] == "ok" and line["proposals"] == 0
    assert any("no proposals" in w for w in line["warnings"])


def test_console_script_ingest_then_export(study_folder, tmp_path):
    exe = Path(sys.executable).with_name("echomeasure")
    if not exe.exists():
        pytest.skip("echomeasure console script not installed beside this python")
    env = {**os.environ, "ECHOMEASURE_DB": f"sqlite:///{tmp_path / 'cli.sqlite'}"}
    ingest = subprocess.run(
        [str(exe), "ingest", str(study_folder / "case_0001.dcm"), "--no-propose"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert ingest.returncode == 0, ingest.stderr
    assert _lines(ingest.stdout)[0]["status"] == "ok"
    export = subprocess.run(
        [str(exe), "export", "--format", "json", "-o", str(tmp_path / "all.json")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert export.returncode == 0, export.stderr
    assert json.loads((tmp_path / "all.json").read_text())["clips"][0]["n_frames"] == 4
