"""A deflated DICOM that inflates to hundreds of MiB from a small file (a decompression bomb) is
refused before the parser inflates it whole; an ordinary deflated ultrasound file is still read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

PATIENT = "Quenbyx^Xavierinne"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ECHOMEASURE_QUARANTINE": str(cwd / "q"), "ECHOMEASURE_DB": f"sqlite:///{cwd / 'db.sqlite'}"}
    return subprocess.run([sys.executable, "-m", "echomeasure.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _deflated_us(path: Path, *, padding_bytes: int = 0) -> Path:
    """A real Philips palette-colour ultrasound image (pydicom test data) written deflated, with
    ``padding_bytes`` zero bytes in a private element (what a bomb is made of)."""
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    ds.PatientName = PATIENT
    if padding_bytes:
        block = ds.private_block(0x0019, "ACME PADDING", create=True)
        block.add_new(0x01, "OB", np.zeros(padding_bytes, dtype=np.uint8).tobytes())
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_a_deflate_bomb_is_refused_with_one_line_and_nothing_written(tmp_path):
    src = _deflated_us(tmp_path / "bomb.dcm", padding_bytes=96 * 1024**2)
    assert src.stat().st_size < 1024**2  # 96 MiB of zeros deflate to ~100 KiB
    (tmp_path / "out").mkdir()
    proc = _cli("deid", src.name, "out/x.dcm", "--secret", "s", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: bomb.dcm: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "decompression bomb" in proc.stderr
    assert "Quenbyx" not in proc.stderr + proc.stdout
    assert list((tmp_path / "out").iterdir()) == []
    inspect = _cli("inspect", src.name, cwd=tmp_path)
    assert inspect.returncode == 2 and "decompression bomb" in inspect.stderr


def test_an_ordinary_deflated_ultrasound_file_is_admitted(tmp_path):
    src = _deflated_us(tmp_path / "deflated.dcm")
    proc = _cli("deid", src.name, "x.dcm", "--secret", "s", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = pydicom.dcmread(tmp_path / "x.dcm")
    assert str(out.PatientName) == "" and out.PatientIdentityRemoved == "YES"
    assert b"Quenbyx" not in (tmp_path / "x.dcm").read_bytes()


def test_a_dicomdir_or_a_report_is_refused_as_not_an_image_without_a_useless_hint(tmp_path):
    """--allow-non-us cannot make an index or a structured report measurable: say what it is."""
    for source, expected in ((get_testdata_file("DICOMDIR"), "a DICOMDIR"),
                             (get_testdata_file("test-SR.dcm"), "not an image")):
        given = tmp_path / f"given_{Path(source).name}"
        given.symlink_to(source)
        for args in (("deid", given.name, "x.dcm"), ("deid", "--allow-non-us", given.name, "x.dcm")):
            proc = _cli(*args, "--secret", "s", cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.startswith(f"error: {given.name}: ") and proc.stderr.count("\n") == 1, proc.stderr
            assert expected in proc.stderr and "--allow-non-us" not in proc.stderr, proc.stderr
            assert not (tmp_path / "x.dcm").exists()


def test_an_unverified_pixel_cleaning_never_claims_no_burned_in_annotation(tmp_path):
    """A vendor's BurnedInAnnotation NO on an image with text (GE's US1 still, no regions): the
    output says YES while the cleaning needs human confirmation, never the original's NO."""
    from echomeasure.ingest import deidentify_file
    from echomeasure.ingest.profile import DeidOptions

    ds = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"))
    ds.BurnedInAnnotation = "NO"
    src = tmp_path / "us1.dcm"
    pydicom.dcmwrite(src, ds)
    summary = deidentify_file(src, tmp_path / "out.dcm", secret=b"s", options=DeidOptions(find_text=False))
    pixels = summary["deid_record"]["pixels"]
    assert pixels["human_confirmation_needed"] and pixels["burned_in_annotation_original"] == "NO"
    assert pydicom.dcmread(tmp_path / "out.dcm").BurnedInAnnotation == "YES"
    assert pixels["burned_in_annotation_output"] == "YES"
