"""Enforced de-identification: Annex E actions, UID remap, dates, pixels, videos, the gate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from ingest_builders import (
    BANNER_ROWS,
    BIRTH_DATE,
    CANARIES,
    NESTED_CANARY,
    PREAMBLE_CANARY,
    PRIVATE_CANARY,
    REGION,
    STUDY_DATE,
    UIDS,
    VIDEO_CANARIES,
    canary_dataset,
    canary_frames,
    write_banner_video,
    write_canary_dicom,
)
from pydicom.data import get_testdata_file

from echomeasure.cli import main
from echomeasure.errors import DeidentificationError, InvalidInputError
from echomeasure.ingest import DeidentifiedClip, deid, deidentify_dataset, deidentify_file, gate, load, passes_gate
from echomeasure.ingest.profile import DeidOptions, annex_e, resolve, row_for

SECRET = b"test-site-secret"
ALL_CANARIES = [*CANARIES.values(), PRIVATE_CANARY, NESTED_CANARY, "CANARYAE", "CANARY CREATOR"]


def _canary_parts() -> list[bytes]:
    parts = set()
    for c in ALL_CANARIES:
        parts.add(c)
        parts.update(p for p in c.split("^") if len(p) >= 3)
    return [p.encode() for p in parts]


@pytest.fixture()
def deidentified(tmp_path):
    src = write_canary_dicom(tmp_path / "in.dcm", 10)
    out = tmp_path / "out.dcm"
    summary = deidentify_file(src, out, secret=SECRET)
    return src, out, summary


def test_deid_leaves_no_canary_uid_date_or_preamble_in_any_byte(deidentified):
    _, out, _ = deidentified
    data = out.read_bytes()
    for canary in _canary_parts():
        assert canary not in data, canary
    for uid in [*UIDS.values(), "1.2.3.4.5.6.7.999", "1.2.3.4.5.6.7.888"]:
        assert uid.encode() not in data
    assert BIRTH_DATE.encode() not in data and STUDY_DATE.encode() not in data
    assert data[:128] == b"\x00" * 128 and PREAMBLE_CANARY not in data


def test_deid_removes_burned_in_banner_and_keeps_region_pixels(deidentified):
    _, out, _ = deidentified
    ds = pydicom.dcmread(out)
    frames = ds.pixel_array
    original = canary_frames(10)
    x0, y0, x1, y1 = REGION
    assert frames[:, BANNER_ROWS].max() == 0
    assert np.array_equal(frames[:, y0 : y1 + 1, x0 : x1 + 1], original[:, y0 : y1 + 1, x0 : x1 + 1])
    assert frames[:, y1, x1].any() and frames[:, y0 - 1].max() == 0 and frames[:, :, x1 + 1].max() == 0
    assert ds.BurnedInAnnotation == "NO"


def test_deid_marks_the_object_and_records_what_was_done(deidentified):
    _, out, summary = deidentified
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod.startswith("echomeasure")
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", "113107"]
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert not any(e.tag.is_private for e in ds.iterall())
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    record = summary["deid_record"]
    json.dumps(record)
    assert record["pixels"]["method"] == "region-fan-mask" and record["pixels"]["burned_in_annotation_original"] == "YES"
    assert record["pixels"]["text"]["searched"] and record["pixels"]["status"] == "cleaned"
    assert record["gate"]["passed"] and record["table_edition"]
    assert ds.StudyInstanceUID.startswith("2.25.") and summary["instance_uid"] == ds.SOPInstanceUID


def test_dates_are_shifted_consistently_per_patient(tmp_path):
    a = canary_dataset(1)
    b = canary_dataset(1)
    b.StudyDate = "20240301"
    c = canary_dataset(1)
    c.PatientID = "ANOTHERPATIENT"
    out = [deidentify_dataset(x, secret=SECRET) for x in (a, b, c)]
    import datetime as dt

    def days(x):
        return (dt.datetime.strptime(x.StudyDate, "%Y%m%d") - dt.datetime.strptime(STUDY_DATE, "%Y%m%d")).days

    assert days(out[0]) != 0 and days(out[0]) < 0
    gap = (dt.date(2024, 3, 1) - dt.date(2024, 1, 15)).days
    assert days(out[1]) == days(out[0]) + gap  # same patient: intervals kept
    assert days(out[2]) != days(out[0])  # another patient: another offset
    assert out[0].PatientID == out[1].PatientID != out[2].PatientID
    assert "PatientBirthDate" not in out[0] or out[0].PatientBirthDate == ""


def test_dates_can_be_removed_instead_of_shifted():
    ds = deidentify_dataset(canary_dataset(1), secret=SECRET, options=DeidOptions(dates="remove"))
    assert ds.StudyDate == "" and "SeriesDate" not in ds
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"
    assert "113107" not in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]


def test_deidentify_dataset_leaves_its_input_untouched():
    ds = canary_dataset(2)
    before = ds.PatientName
    pixels = bytes(ds.PixelData)
    out = deidentify_dataset(ds, secret=SECRET)
    assert ds.PatientName == before and ds.PixelData == pixels and out.PatientName == ""


_UID_SCRIPT = "import sys; from echomeasure.ingest.deid import UidRemapper; print(UidRemapper(sys.argv[1].encode())(sys.argv[2]))"


def _remap_in_process(secret: str, uid: str) -> str:
    return subprocess.run([sys.executable, "-c", _UID_SCRIPT, secret, uid], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_uid_remap_is_stable_across_processes_and_keyed_by_secret():
    uid = "1.2.840.113619.2.55.3.1234"
    a, b = _remap_in_process("s1", uid), _remap_in_process("s1", uid)
    assert a == b and a.startswith("2.25.") and len(a) <= 64
    assert _remap_in_process("s2", uid) != a
    value = int(a[5:])
    assert (value >> 76) & 0xF == 4 and (value >> 62) & 0b11 == 0b10  # UUID v4 version/variant bits


def test_uid_remap_is_idempotent_and_keeps_registered_uids():
    remap = deid.UidRemapper(SECRET)
    once = remap("1.2.3.4")
    assert remap(once) == once and deid.UidRemapper(b"other")(once) != once
    assert remap("1.2.840.10008.5.1.4.1.1.6.1") == "1.2.840.10008.5.1.4.1.1.6.1"


def test_deid_of_deidentified_file_is_idempotent(deidentified, tmp_path):
    _, out, summary = deidentified
    again = tmp_path / "again.dcm"
    summary2 = deidentify_file(out, again, secret=SECRET)
    assert again.read_bytes() == out.read_bytes()
    assert summary2["instance_uid"] == summary["instance_uid"]
    assert summary2["deid_record"]["header"]["already_deidentified"] is True


def test_gate_refuses_output_with_a_canary_left(tmp_path):
    src = write_canary_dicom(tmp_path / "in.dcm", 2)
    original = pydicom.dcmread(src)
    ids = gate.collect_dicom_identifiers(original, secret=SECRET)
    result = deid.deidentify_dicom(pydicom.dcmread(src), canary_frames(2), (), secret=SECRET)
    good = deid.dicom_bytes(result.dataset)
    gate.check_dicom_bytes(ids, good)
    leaky = pydicom.dcmread(__import__("io").BytesIO(good))
    leaky.ImageComments = "note: " + CANARIES["StationName"]
    with pytest.raises(DeidentificationError, match="StationName"):
        gate.check_dicom_bytes(ids, deid.dicom_bytes(leaky))
    private = pydicom.dcmread(__import__("io").BytesIO(good))
    private.add_new(0x00111010, "LO", "harmless")
    with pytest.raises(DeidentificationError, match="private"):
        gate.check_dicom_bytes(ids, deid.dicom_bytes(private))
    preamble = bytearray(good)
    preamble[5] = 1
    with pytest.raises(DeidentificationError, match="preamble"):
        gate.check_dicom_bytes(ids, bytes(preamble))
    assert passes_gate(tmp_path / "in.dcm", src) is False


def test_deidentified_clip_cannot_be_built_outside_the_gate():
    with pytest.raises(TypeError, match="gate"):
        DeidentifiedClip(_token=object(), clip=None, study_uid="", series_uid="", instance_uid="",  # type: ignore[arg-type]
                         pixel_sha256="", deid_record={}, display_name="")


def test_load_returns_a_gated_clip_with_pseudonymous_identity(tmp_path):
    src = write_canary_dicom(tmp_path / "CANARYNAME_echo.dcm", 4)
    dc = load(src, secret=SECRET)
    assert isinstance(dc, DeidentifiedClip) and dc.kind == "2d" and dc.frame_time_ms == pytest.approx(20.0)
    assert dc.display_name.startswith("US 2.25.") and "CANARY" not in dc.display_name
    assert dc.clip.frames[:, BANNER_ROWS].max() == 0 and not dc.clip.frames.flags.writeable
    import hashlib

    assert dc.pixel_sha256 == hashlib.sha256(dc.clip.frames.tobytes()).hexdigest()
    assert dc.clip.regions and dc.clip.calibration_source == "dicom"
    assert dc.instance_uid == load(src, secret=SECRET).instance_uid
    json.dumps(dc.deid_record)


def test_quarantine_is_cleaned_up_even_when_reading_fails(tmp_path, monkeypatch):
    from echomeasure.ingest import quarantine

    monkeypatch.setattr(quarantine, "quarantine_root", lambda: tmp_path / "q")
    (tmp_path / "q").mkdir()
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 10)
    with pytest.raises(InvalidInputError):
        load(bad, secret=SECRET)
    load(write_canary_dicom(tmp_path / "ok.dcm", 1), secret=SECRET)
    assert quarantine.leftovers(tmp_path / "q") == []
    assert [p.name for p in (tmp_path / "q").iterdir()] == [quarantine.SWEEP_LOCK]


def test_deid_refuses_to_overwrite_its_input(tmp_path):
    src = write_canary_dicom(tmp_path / "in.dcm", 1)
    with pytest.raises(InvalidInputError, match="input"):
        deidentify_file(src, src, secret=SECRET)


@pytest.mark.parametrize("name", ["examples_ybr_color.dcm", "examples_palette.dcm", "examples_rgb_color.dcm",
                                  "examples_jpeg2k.dcm", "ExplVR_BigEnd.dcm"])
def test_every_bundled_us_file_deidentifies_and_passes_the_gate(tmp_path, name, capsys):
    src = get_testdata_file(name, download=False)
    out = tmp_path / "out.dcm"
    assert main(["deid", src, str(out), "--secret", "s"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert passes_gate(out, src)
    original = pydicom.dcmread(src, stop_before_pixels=True)
    data = out.read_bytes()
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert str(original.get(kw, "x" * 10)).encode() not in data
    if name == "examples_ybr_color.dcm":
        assert summary["frames"] == 30 and summary["deid_record"]["pixels"]["method"] == "region-fan-mask"
    if name == "examples_rgb_color.dcm":  # no regions: honest about it
        assert summary["deid_record"]["pixels"]["human_confirmation_needed"] is True


@pytest.mark.parametrize("container", ["mp4", "avi"])
def test_video_deid_drops_container_metadata_and_banner(tmp_path, container):
    src = tmp_path / f"in.{container}"
    write_banner_video(src, container)
    out = tmp_path / f"out.{container}"
    summary = deidentify_file(src, out, secret=SECRET)
    data = out.read_bytes()
    for v in VIDEO_CANARIES.values():
        assert v.encode() not in data
    assert b"2024-01-15" not in data
    from echomeasure.ingest import read_clip, video_io

    assert video_io.sniff(out)[1] == container
    assert set(k.split(":", 1)[1] for k in video_io.container_metadata(out)) <= video_io.TECHNICAL_METADATA_KEYS
    frames = read_clip(out).frames
    assert frames[:, 4:14, 8:120].max() <= 3  # banner blanked (H.264 may ring by a level or two)
    assert frames[:, 60:80, 55:75].std() > 20  # the sector is still there
    assert summary["deid_record"]["pixels"]["method"] == "motion-sector-mask"
    assert passes_gate(out, src)


def test_annex_e_table_is_edition_stamped_and_covers_each_action_class():
    table = annex_e()
    assert "PS3.15" in table.edition and len(table.rows) > 400
    opts = DeidOptions()
    assert resolve(row_for(0x00100010), opts) == "Z"  # Patient's Name
    assert resolve(row_for(0x00081070), opts) == "X"  # Operators' Name X/Z/D
    assert resolve(row_for(0x0040A075), opts) == "D"  # Verifying Observer Name
    assert resolve(row_for(0x0020000D), opts) == "U"  # Study Instance UID
    assert resolve(row_for(0x00081140), opts) == "U*"  # Referenced Image Sequence
    assert resolve(row_for(0x00080020), opts) == "C"  # Study Date, retain modified dates
    assert resolve(row_for(0x00080020), DeidOptions(dates="remove")) == "Z"
    assert resolve(row_for(0x00101010), DeidOptions(retain_patient_characteristics=True)) == "K"
    assert resolve(row_for(0x60003000), opts) == "X"  # Overlay Data (repeating group)
    assert row_for(0x00185010)["basic"] == "X"  # Transducer Data: device identity (local rule)


def test_gate_matches_names_case_insensitively_in_any_order_and_refuses_what_was_not_cleaned(tmp_path):
    ds = canary_dataset(1)
    ds.PatientName = "DOE^JONATHAN"
    ids = gate.collect_dicom_identifiers(ds, secret=SECRET)
    good = deid.dicom_bytes(deid.deidentify_dicom(canary_dataset(1), canary_frames(1), (), secret=SECRET).dataset)
    for value in ("Jonathan Doe", "doe, jonathan", "ＤＯＥ jonathan"):  # reordered, lower case, full-width (NFKC)
        leaky = pydicom.dcmread(__import__("io").BytesIO(good))
        leaky.ViewName = value  # a kept attribute
        with pytest.raises(DeidentificationError, match="PatientName"):
            gate.check_dicom_bytes(ids, deid.dicom_bytes(leaky))
    unlisted = pydicom.dcmread(__import__("io").BytesIO(good))
    unlisted.ContactURI = "https://example.org"  # harmless value, but not on the retention list
    with pytest.raises(DeidentificationError, match="retention"):
        gate.check_dicom_bytes(ids, deid.dicom_bytes(unlisted))


def test_kept_values_with_an_identifier_are_dropped_not_refused(tmp_path):
    ds = canary_dataset(2)
    ds.PatientName = "DOE^JONATHAN"
    ds.Manufacturer = "Doe Ultrasound"
    ds.ContactDisplayName = "Jonathan Doe"
    ds.DeviceID = "DEV-77"
    ds.add_new(0x00402006, "SH", "ORDER-998877")  # retired order number
    icon = pydicom.Dataset()
    icon.add_new(0x7FE00010, "OB", b"DOE^JONATHAN" * 8)  # nested pixel data in an unlisted sequence
    ds.IconImageSequence = pydicom.sequence.Sequence([icon])
    src = tmp_path / "in.dcm"
    ds.save_as(src, enforce_file_format=True)
    summary = deidentify_file(src, tmp_path / "out.dcm", secret=SECRET)
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert "Manufacturer" not in out
    assert summary["deid_record"]["dropped_values"] == [
        {"attribute": "(0008,0070) Manufacturer", "reason": "carries an identifier from the original (0010,0010) PatientName"}]
    for kw in ("ContactDisplayName", "DeviceID", "IconImageSequence", "PlacerOrderNumberImagingServiceRequestRetired"):
        assert kw not in out
    assert b"jonathan" not in (tmp_path / "out.dcm").read_bytes().lower()
    assert summary["deid_record"]["header"]["counts"]["attributes not on the retention list removed"] >= 4
