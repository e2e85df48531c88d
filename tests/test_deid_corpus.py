"""Real-file corpus: every ultrasound DICOM of the installed public test-data packages and files
fabricated the way GE, Siemens, Canon/Toshiba, SonoSite, Hitachi/Aloka, Samsung, Esaote and
Philips write them.  `deid` + `inspect` on each: admitted, no original identifying value kept,
calibration read wherever a calibrated region exists, nothing unlisted left."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest
from corpus.kept import kept_text
from corpus.vendors import VENDORS, real_ultrasound_files

from echomeasure.cli import main
from echomeasure.ingest import retention

REAL = real_ultrasound_files()
IDENTIFYING_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "InstitutionName", "InstitutionAddress",
                        "StationName", "DeviceSerialNumber", "StudyID", "PatientAddress", "PatientTelephoneNumbers",
                        "InstitutionalDepartmentName", "RequestingPhysician", "ContactDisplayName", "DeviceID",
                        "PatientComments", "ImageComments")


def original_identifiers(path: Path) -> set[str]:
    """Identifying values of an original, collected independently of the gate: person-name
    components, IDs/institution/addresses/free text, dates and non-registered UIDs."""
    ds = pydicom.dcmread(path, force=True)
    out: set[str] = set()
    for elem in ds.iterall():
        if elem.tag.is_private:
            continue
        values = elem.value if isinstance(elem.value, (list, pydicom.multival.MultiValue)) else [elem.value]
        for v in values:
            if v is None:
                continue
            s = str(v).strip()
            if elem.VR == "PN":
                out.update(p for p in re.split(r"[\^= ,]+", s) if len(p) >= 3)
            elif elem.VR == "UI" and s and not s.startswith("1.2.840.10008."):
                out.add(s)
            elif elem.VR in ("DA", "DT") and len(s) >= 8:
                out.add(s[:8])
            elif elem.keyword in IDENTIFYING_KEYWORDS and (len(s) >= 6 or (s and not s.isdigit())):
                out.add(s)
    return {v for v in out if v}


def _found(value: str, text: str) -> bool:
    return re.search(r"(?<![0-9A-Za-z.])" + re.escape(value) + r"(?![0-9A-Za-z])", text, re.IGNORECASE) is not None


def _calibrated_regions(path: Path) -> int:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    return sum(1 for r in ds.get("SequenceOfUltrasoundRegions", [])
               if int(r.get("RegionSpatialFormat", 0)) == 3
               or (int(r.get("PhysicalUnitsXDirection", 0)) == 3 and int(r.get("PhysicalUnitsYDirection", 0)) == 3))


def _deid_and_inspect(src: Path, out: Path, capsys) -> tuple[dict, dict]:
    assert main(["deid", str(src), str(out), "--secret", "corpus-secret"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(out)]) == 0
    return summary, json.loads(capsys.readouterr().out)


def _check(src: Path, out: Path, summary: dict, info: dict, extra_identifiers: list[str] = ()) -> None:
    text = kept_text(out)
    data = out.read_bytes().lower()
    for value in sorted(original_identifiers(src) | set(extra_identifiers)):
        assert not _found(value, text), f"an original identifying value is kept ({src.name})"
        if len(value) >= 6 and not value.isdigit():
            assert value.lower().encode("utf-8", "ignore") not in data, f"an original value is in the bytes ({src.name})"
    ds = pydicom.dcmread(out)
    assert not any(e.tag.is_private for e in ds.iterall())
    assert not any(0x5000 <= e.tag.group <= 0x60FF and e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in ds.iterall())
    assert "IconImageSequence" not in ds
    assert all(e.keyword in retention.TOP_LEVEL for e in ds)
    assert summary["deid_record"]["retention_table"] == retention.TABLE_VERSION
    assert info["deidentification"]["patient_identity_removed"] == "YES"
    assert info["deidentification"]["private_attributes"] == 0 and info["deidentification"]["preamble_zeroed"]
    calibrated = _calibrated_regions(src)
    if calibrated:
        assert info["calibration"] == "dicom"
        assert len(info["regions"]) == len(pydicom.dcmread(src, stop_before_pixels=True, force=True).SequenceOfUltrasoundRegions)


def test_the_corpus_holds_the_real_files_of_pydicom_and_pydicom_data():
    names = {p.name for p in REAL}
    assert {"examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm"} <= names
    assert len(REAL) >= 5


@pytest.mark.parametrize("src", REAL, ids=[p.name for p in REAL])
def test_every_real_ultrasound_file_is_admitted_and_keeps_nothing_identifying(src, tmp_path, capsys):
    summary, info = _deid_and_inspect(src, tmp_path / "out.dcm", capsys)
    _check(src, tmp_path / "out.dcm", summary, info)


@pytest.mark.parametrize("builder", VENDORS, ids=lambda b: getattr(b, "__name__", "builder"))
def test_every_fabricated_vendor_file_is_admitted_and_keeps_nothing_identifying(builder, tmp_path, capsys):
    vf = builder(tmp_path)
    summary, info = _deid_and_inspect(vf.path, tmp_path / "out.dcm", capsys)
    _check(vf.path, tmp_path / "out.dcm", summary, info, vf.identifiers)
    if vf.has_calibration:
        assert info["calibration"] == "dicom"
    original = pydicom.dcmread(vf.path, stop_before_pixels=True)
    assert original.IconImageSequence and any(e.tag.is_private for e in original.iterall())  # the file did carry them
